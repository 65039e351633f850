"""On-disk BLCF index: versioned, written atomically, resumable, extendable and mergeable.

Layout of an index folder::

    manifest.json   format version, feature config, backbone, vocabulary, counts (written last)
    model.npz       PCA-whitening (mean, projection) and codebook centroids
    maps.npz        all assignment maps, flattened (uint16/uint32), offsets, shapes, image sizes
    postings.npz    word-major CSR term frequencies (a cache of the maps' BoWs)
    images.json     indexed image paths, in id order, and the photos skipped with the reason
    work/           chunks of a build in progress (removed when the build completes)

The codebook ("model") is fitted once; ``add`` and shard builds reuse it, so an index grows
without re-clustering. ``postings.npz`` stores the inverted index's term frequencies so that a
search does not rebuild them from the maps (about 1 s per 10k images); the maps stay the
representation and the postings are rebuilt from them when missing or stale.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from beyondvis.io import ImageLoadError, load_image
from beyondvis.retrieval.bow import bow_matrix
from beyondvis.retrieval.codebook import Codebook
from beyondvis.retrieval.features import (
    AssignmentEncoder,
    BackboneMismatchError,
    FeatureConfig,
    LocalFeatureExtractor,
)
from beyondvis.retrieval.inverted import InvertedIndex
from beyondvis.retrieval.pooling import PCAWhitening
from beyondvis.retrieval.search import BLCFSearcher
from beyondvis.utils import atomic_write, atomic_write_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


class IndexFormatError(ValueError):
    """Missing, incomplete, corrupt or incompatible index files."""


@dataclass
class IndexConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    codebook_size: int = 25000
    pca_dim: int | None = None  # None keeps every dimension
    kmeans_iterations: int = 20
    # Word assignment: None = exact (thesis); k = IVF over the words visiting k of ~sqrt(K)
    # cells. Exact assignment to 25k words costs ~5x the backbone per photo on a CPU core, IVF
    # with k = 8 about half of it at 95% agreement (benchmarks/retrieval.py); codebooks under
    # 1,024 words are always assigned exactly.
    assign_nprobe: int | None = 8
    sample_images: int = 500  # images whose features fit PCA and k-means
    sample_features: int = 500_000
    centre_prior: bool = True
    tfidf: bool = True
    chunk_size: int = 64  # images per checkpointed chunk of a build
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> IndexConfig:
        d = dict(d)
        feats = FeatureConfig(**d.pop("features", {}))
        return cls(features=feats, **d)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise IndexFormatError(f"missing index file {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise IndexFormatError(f"corrupt index file {path}: {exc}") from None


# ----------------------------------------------------------------------------- model
@dataclass
class Model:
    """What turns pixels into words: feature config, PCA-whitening and codebook."""

    config: IndexConfig
    pca: PCAWhitening
    codebook: Codebook

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(asdict(self.config.features), sort_keys=True).encode())
        h.update(self.pca.projection.tobytes())
        h.update(self.codebook.centroids.tobytes())
        return h.hexdigest()[:16]

    def save(self, folder: Path) -> None:
        _save_npz(folder / "model.npz", centroids=self.codebook.centroids, **self.pca.state())

    @classmethod
    def load(cls, folder: Path, config: IndexConfig) -> Model:
        d = _load_npz(Path(folder) / "model.npz")
        codebook = Codebook(d["centroids"], config.assign_nprobe)
        return cls(config, PCAWhitening(d["mean"], d["projection"]), codebook)


def fit_model(
    paths: Sequence[Path],
    config: IndexConfig,
    extractor: LocalFeatureExtractor,
    bad: list[dict] | None = None,
) -> Model:
    """Fit PCA-whitening and the codebook on the features of a random sample of images."""
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(paths))[: config.sample_images]
    feats = []
    for i in sorted(order):
        try:
            f = extractor(load_image(paths[i]))
        except ImageLoadError as exc:
            if bad is not None:
                bad.append({"path": str(paths[i]), "reason": exc.reason})
            continue
        feats.append(f.reshape(-1, f.shape[-1]))
    if not feats:
        raise IndexFormatError("no readable image to fit the codebook on")
    x = np.concatenate(feats)
    if x.shape[0] > config.sample_features:
        x = x[rng.choice(x.shape[0], config.sample_features, replace=False)]
    pca = PCAWhitening.fit(x, config.pca_dim)
    codebook = Codebook.fit(pca(x), config.codebook_size, config.kmeans_iterations, config.seed)
    return Model(config, pca, Codebook(codebook.centroids, config.assign_nprobe))


# ----------------------------------------------------------------------------- index
@dataclass
class BLCFIndex:
    model: Model
    paths: list[str]
    maps: list[np.ndarray]
    image_sizes: np.ndarray  # (n, 2) width, height
    skipped: list[dict] = field(default_factory=list)
    _inverted: InvertedIndex | None = None

    @property
    def config(self) -> IndexConfig:
        return self.model.config

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def inverted(self) -> InvertedIndex:
        if self._inverted is None:
            bows = bow_matrix(self.maps, self.model.codebook.size, centre=self.config.centre_prior)
            self._inverted = InvertedIndex.from_bows(bows, tfidf=self.config.tfidf)
        return self._inverted

    def searcher(self) -> BLCFSearcher:
        return BLCFSearcher(self.maps, self.image_sizes, self.inverted, self.config.centre_prior)

    def check_backbone(self, backbone: str) -> None:
        if backbone != self.config.features.backbone:
            raise BackboneMismatchError(
                f"this index was built with backbone {self.config.features.backbone!r}; a query "
                f"encoded with {backbone!r} lives in another feature space. Search with the "
                "index's own backbone or rebuild the index."
            )

    def add(self, paths: Sequence[str], maps: Sequence[np.ndarray], sizes: np.ndarray) -> None:
        self.paths.extend(str(p) for p in paths)
        self.maps.extend(maps)
        self.image_sizes = np.concatenate(
            [self.image_sizes.reshape(-1, 2), np.asarray(sizes).reshape(-1, 2)]
        )
        self._inverted = None

    # -- persistence
    def save(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # the manifest is removed first and written last: its presence marks a complete index
        (folder / MANIFEST).unlink(missing_ok=True)
        self.model.save(folder)
        _save_maps(folder / "maps.npz", self.maps, self.image_sizes, self.model.codebook.size)
        atomic_write_json(folder / "images.json", {"paths": self.paths, "skipped": self.skipped})
        post = self.inverted.postings
        _save_npz(folder / "postings.npz", data=post.data, indices=post.indices, indptr=post.indptr)
        atomic_write_json(
            folder / MANIFEST,
            {
                "format": "beyondvis-blcf-index",
                "format_version": FORMAT_VERSION,
                "backbone": self.config.features.backbone,
                "model_fingerprint": self.model.fingerprint(),
                "num_images": len(self.paths),
                "vocab_size": self.model.codebook.size,
                "config": asdict(self.config),
            },
        )

    @classmethod
    def load(cls, folder: str | os.PathLike) -> BLCFIndex:
        folder = Path(folder)
        manifest = read_manifest(folder)
        config = IndexConfig.from_dict(manifest["config"])
        model = Model.load(folder, config)
        if model.fingerprint() != manifest["model_fingerprint"]:
            raise IndexFormatError(
                f"{folder}: model.npz does not match the manifest (mixed files?)"
            )
        maps, sizes = _load_maps(folder / "maps.npz")
        try:
            images = json.loads((folder / "images.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise IndexFormatError(f"{folder}/images.json unreadable: {exc}") from None
        if len(images["paths"]) != len(maps) or len(maps) != manifest["num_images"]:
            raise IndexFormatError(f"{folder}: image list and maps disagree in length")
        index = cls(model, images["paths"], maps, sizes, images.get("skipped", []))
        index._inverted = _load_postings(
            folder / "postings.npz", model.codebook.size, len(maps), config
        )
        return index


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        hint = (
            " (an interrupted build? run `index build` again to resume)"
            if (Path(folder) / "work").exists()
            else ""
        )
        raise IndexFormatError(f"{folder} is not a complete BLCF index: no {MANIFEST}{hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexFormatError(f"{path}: malformed JSON ({exc})") from None
    if manifest.get("format") != "beyondvis-blcf-index":
        raise IndexFormatError(f"{path}: not a beyondvis BLCF index manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexFormatError(
            f"{folder}: index format version {version}, this beyondvis reads version "
            f"{FORMAT_VERSION}; rebuild the index with this version"
        )
    return manifest


def _load_postings(path: Path, vocab: int, n: int, config: IndexConfig) -> InvertedIndex | None:
    """The saved postings, or None (rebuilt lazily from the maps) if absent or inconsistent."""
    if not path.exists():
        return None
    try:
        d = _load_npz(path)
        indptr = d["indptr"]
        if indptr.size != vocab + 1 or (d["indices"].size and d["indices"].max() >= n):
            return None
        postings = sp.csr_matrix((d["data"], d["indices"], indptr), shape=(vocab, n))
    except (IndexFormatError, KeyError, ValueError):
        return None
    return InvertedIndex(postings, tfidf=config.tfidf)


def _save_maps(path: Path, maps: Sequence[np.ndarray], sizes: np.ndarray, vocab: int) -> None:
    from beyondvis.retrieval.bow import map_dtype

    shapes = np.array([m.shape for m in maps], dtype=np.int32).reshape(-1, 2)
    flat = (
        np.concatenate([m.ravel() for m in maps]).astype(map_dtype(vocab))
        if maps
        else np.zeros(0, map_dtype(vocab))
    )
    _save_npz(path, words=flat, shapes=shapes, sizes=np.asarray(sizes, np.int32).reshape(-1, 2))


def _load_maps(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    d = _load_npz(path)
    try:
        words, shapes, sizes = d["words"], d["shapes"], d["sizes"]
    except KeyError as exc:
        raise IndexFormatError(f"{path}: missing array {exc}") from None
    counts = shapes.prod(axis=1)
    if counts.sum() != words.size or len(sizes) != len(shapes):
        raise IndexFormatError(f"{path}: map sizes do not add up (truncated file?)")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    maps = [words[offsets[i] : offsets[i + 1]].reshape(shapes[i]) for i in range(len(shapes))]
    return maps, sizes


# ----------------------------------------------------------------------------- building
def encode_images(
    paths: Iterable[Path],
    encoder: Callable,
    work: Path,
    chunk_size: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], list[np.ndarray], np.ndarray, list[dict]]:
    """Assignment maps of every photo, checkpointed chunk by chunk under ``work``.

    A chunk is written atomically once all its images are encoded; a rerun after a kill
    reloads finished chunks and recomputes only the rest. Unreadable photos are skipped and
    reported, never fatal.
    """
    paths = [Path(p) for p in paths]
    work.mkdir(parents=True, exist_ok=True)
    out_paths, out_maps, out_sizes, skipped = [], [], [], []
    for start in range(0, len(paths), chunk_size):
        chunk = paths[start : start + chunk_size]
        cfile = work / f"chunk_{start // chunk_size:06d}.npz"
        meta_file = cfile.with_suffix(".json")
        if cfile.exists() and meta_file.exists():
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            if meta.get("paths_in") == [str(p) for p in chunk]:
                maps, sizes = _load_maps(cfile)
                out_paths += meta["paths"]
                out_maps += maps
                out_sizes.append(sizes)
                skipped += meta["skipped"]
                if progress:
                    progress(len(chunk))
                continue
        c_paths, c_maps, c_sizes, c_skipped = [], [], [], []
        for p in chunk:
            try:
                image = load_image(p)
            except ImageLoadError as exc:
                log.warning("skipped %s: %s", p, exc.reason)
                c_skipped.append({"path": str(p), "reason": exc.reason})
            else:
                c_maps.append(encoder(image))
                c_paths.append(str(p))
                c_sizes.append(image.size)
            if progress:
                progress(1)
        sizes = np.array(c_sizes, dtype=np.int32).reshape(-1, 2)
        _save_maps(
            cfile, c_maps, sizes, encoder.codebook.size if hasattr(encoder, "codebook") else 2**32
        )
        atomic_write_json(
            meta_file, {"paths_in": [str(p) for p in chunk], "paths": c_paths, "skipped": c_skipped}
        )
        out_paths += c_paths
        out_maps += c_maps
        out_sizes.append(sizes)
        skipped += c_skipped
    sizes = np.concatenate(out_sizes) if out_sizes else np.zeros((0, 2), np.int32)
    return out_paths, out_maps, sizes, skipped


def _progress_bar(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None, None
    bar = tqdm(total=total, desc=desc, unit="img", leave=False)
    return bar, bar.update


def load_or_fit_model(
    paths: Sequence[Path], config: IndexConfig, extractor: LocalFeatureExtractor, work: Path
) -> Model:
    """The model checkpoint under ``work`` if a previous run fitted it, else fit and save it."""
    if (work / "model.npz").exists():
        log.info("resuming: reusing the codebook fitted by the interrupted build")
        return Model.load(work, config)
    model = fit_model(paths, config, extractor)
    work.mkdir(parents=True, exist_ok=True)
    model.save(work)
    return model


def build_index(
    photos: Sequence[Path],
    out: Path,
    config: IndexConfig,
    device: str = "cpu",
    model: Model | None = None,
    extractor: LocalFeatureExtractor | None = None,
    show_progress: bool = False,
) -> BLCFIndex:
    """Build (or resume building) an index of ``photos`` in ``out``."""
    out = Path(out)
    if (out / MANIFEST).exists():
        raise IndexFormatError(f"{out} already holds an index; use `index add` or another --out")
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(work / "config.json", asdict(config))
    extractor = extractor or LocalFeatureExtractor(config.features, device=device)
    if model is None:
        model = load_or_fit_model(photos, config, extractor, work)
    encoder = AssignmentEncoder(extractor, model.pca, model.codebook)
    bar, update = _progress_bar(len(photos), "encoding") if show_progress else (None, None)
    paths, maps, sizes, skipped = encode_images(
        photos, encoder, work / "chunks", config.chunk_size, update
    )
    if bar is not None:
        bar.close()
    index = BLCFIndex(model, paths, maps, sizes, skipped)
    index.save(out)
    for f in sorted((work / "chunks").glob("*")):
        f.unlink()
    (work / "chunks").rmdir()
    for f in work.glob("*"):
        f.unlink()
    work.rmdir()
    return index


def add_to_index(
    folder: Path,
    photos: Sequence[Path],
    device: str = "cpu",
    extractor: LocalFeatureExtractor | None = None,
) -> tuple[BLCFIndex, int, list[dict]]:
    """Encode new photos with the index's own codebook and append them.

    Returns the index, the number of images added and the photos skipped as unreadable."""
    index = BLCFIndex.load(folder)
    known = set(index.paths)
    new = [p for p in photos if str(p) not in known]
    extractor = extractor or LocalFeatureExtractor(index.config.features, device=device)
    encoder = AssignmentEncoder(extractor, index.model.pca, index.model.codebook)
    paths, maps, sizes, skipped = encode_images(
        new, encoder, Path(folder) / "work" / "add", index.config.chunk_size
    )
    index.add(paths, maps, sizes)
    index.skipped += skipped
    index.save(folder)
    work = Path(folder) / "work"
    for f in (work / "add").glob("*"):
        f.unlink()
    (work / "add").rmdir()
    work.rmdir()
    return index, len(paths), skipped


def merge_indexes(shards: Sequence[Path], out: Path) -> BLCFIndex:
    """Concatenate shards built with the same model (``index build --model``) into one index."""
    if not shards:
        raise IndexFormatError("nothing to merge")
    loaded = [BLCFIndex.load(s) for s in shards]
    first = loaded[0]
    fp = first.model.fingerprint()
    for s, idx in zip(shards, loaded):
        if idx.model.fingerprint() != fp:
            raise IndexFormatError(
                f"shard {s} was built with another codebook/backbone than {shards[0]}; shards "
                "must share one model (build them with --model MODEL_DIR)"
            )
    merged = BLCFIndex(first.model, [], [], np.zeros((0, 2), np.int32), [])
    seen = set()
    for idx in loaded:
        keep = [i for i, p in enumerate(idx.paths) if p not in seen]
        seen.update(idx.paths)
        merged.add([idx.paths[i] for i in keep], [idx.maps[i] for i in keep], idx.image_sizes[keep])
        merged.skipped += idx.skipped
    merged.save(out)
    return merged


def save_model_only(folder: Path, model: Model) -> None:
    """A model folder for sharded builds: config + PCA + codebook, no images."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder)
    atomic_write_json(
        folder / "model.json",
        {
            "format": "beyondvis-blcf-model",
            "format_version": FORMAT_VERSION,
            "model_fingerprint": model.fingerprint(),
            "config": asdict(model.config),
        },
    )


def load_model_only(folder: Path) -> Model:
    folder = Path(folder)
    if (folder / MANIFEST).exists():  # an index works as a model source too
        return BLCFIndex.load(folder).model
    meta_path = folder / "model.json"
    if not meta_path.exists():
        raise IndexFormatError(f"{folder} holds neither a model (model.json) nor an index")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{folder}: model format version {meta.get('format_version')}, expected {FORMAT_VERSION}"
        )
    model = Model.load(folder, IndexConfig.from_dict(meta["config"]))
    if model.fingerprint() != meta["model_fingerprint"]:
        raise IndexFormatError(f"{folder}: model.npz does not match model.json")
    return model
