"""The BLCF index: one object to train, fill, search, save, load and merge (FAISS-like).

    index = BLCFIndex.pretrained()             # the shipped generic codebook, no k-means
    index.add(photos, work_dir="idx/work")     # chunked, resumable, SIGKILL-safe
    index.save("idx")
    hits = BLCFIndex.load("idx").search("query.jpg", box=(40, 60, 200, 300), k=0)

    index = BLCFIndex(IndexConfig(codebook_size=4096))
    index.train(photos)                        # PCA-whitening + k-means on the collection

Layout of an index folder::

    manifest.json   format version, feature config, backbone, vocabulary, counts (written last)
    model.npz       PCA-whitening (mean, projection) and codebook centroids
    maps.npz        all assignment maps, flattened (uint16/uint32), offsets, shapes, image sizes
    postings.npz    word-major CSR term frequencies (a cache of the maps' BoWs)
    images.json     indexed image paths, in id order, and the photos skipped with the reason
    work/           chunks of a build in progress (removed when the index is saved)

The codebook ("model") is fitted once, or shipped; ``add`` and shard builds reuse it, so an
index grows without re-clustering. ``postings.npz`` stores the inverted index's term frequencies
so that a search does not rebuild them from the maps (about 1 s per 10k images); the maps stay
the representation and the postings are rebuilt from them when missing or stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from beyondvis.errors import FormatError
from beyondvis.io import ImageLoadError, load_image
from beyondvis.retrieval.bow import bow_matrix, map_dtype
from beyondvis.retrieval.codebook import Codebook
from beyondvis.retrieval.features import (
    AssignmentEncoder,
    BackboneMismatchError,
    FeatureConfig,
    LocalFeatureExtractor,
)
from beyondvis.retrieval.inverted import InvertedIndex
from beyondvis.retrieval.pooling import PCAWhitening
from beyondvis.retrieval.search import (
    BLCFSearcher,
    QueryView,
    SearchConfig,
    augment_query,
    make_view,
)
from beyondvis.utils import atomic_write, atomic_write_json
from beyondvis.utils.atomic import file_sha256
from beyondvis.utils.versioned import read_versioned_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECKED_FILES = ("maps.npz", "images.json", "postings.npz")  # model.npz: its fingerprint
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "assets" / "retrieval"
SHIPPED = ("generic",)  # codebooks under assets/retrieval/<name>/
log = logging.getLogger(__name__)


class IndexFormatError(FormatError, ValueError):
    """Missing, incomplete, corrupt or incompatible index files."""


@dataclass
class IndexConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    codebook_size: int = 8192
    pca_dim: int | None = None  # None keeps every dimension
    kmeans_iterations: int = 10
    # Word assignment: None = exact (thesis); k = IVF over the words visiting k of ~sqrt(K)
    # cells. Exact assignment to 25k words costs ~5x the backbone per photo on a CPU core, IVF
    # with k = 8 about half of it at 95% agreement (benchmarks/retrieval.py); codebooks under
    # 1,024 words are always assigned exactly.
    assign_nprobe: int | None = 8
    sample_images: int = 500  # images whose features fit PCA and k-means
    sample_features: int = 400_000
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
    """What turns pixels into words: feature config, PCA-whitening and codebook.

    ``half`` models store their arrays as float16 (the shipped codebook; rounding the centroids
    to float16 changes no word of the benchmark maps we checked, at half the bytes); the arrays
    in memory are float32 either way and the fingerprint is taken on them.
    """

    config: IndexConfig
    pca: PCAWhitening
    codebook: Codebook
    half: bool = False
    name: str | None = None  # the shipped codebook's name, None for a fitted one

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(asdict(self.config.features), sort_keys=True).encode())
        h.update(self.pca.projection.tobytes())
        h.update(self.codebook.centroids.tobytes())
        return h.hexdigest()[:16]

    def to_half(self) -> Model:
        """The same model rounded to float16 (what ``save`` then stores)."""

        def r(a: np.ndarray) -> np.ndarray:
            return a.astype(np.float16).astype(np.float32)

        pca = PCAWhitening(r(self.pca.mean), r(self.pca.projection))
        codebook = Codebook(r(self.codebook.centroids), self.config.assign_nprobe)
        return Model(self.config, pca, codebook, half=True, name=self.name)

    def with_config(self, config: IndexConfig) -> Model:
        """This PCA + codebook under other search/feature settings (same backbone and level)."""
        a, b = config.features, self.config.features
        if (a.backbone, a.level) != (b.backbone, b.level):
            raise IndexFormatError(
                f"this codebook was trained on {b.backbone!r} level {b.level} features; for "
                f"{a.backbone!r} level {a.level} fit one on the collection (--fit-codebook)"
            )
        config = replace(config, codebook_size=self.codebook.size, pca_dim=self.pca.dim)
        codebook = Codebook(self.codebook.centroids, config.assign_nprobe)
        return Model(config, self.pca, codebook, self.half, self.name)

    def save(self, folder: Path) -> None:
        dtype = np.float16 if self.half else np.float32
        arrays = {"centroids": self.codebook.centroids, **self.pca.state()}
        _save_npz(folder / "model.npz", **{k: v.astype(dtype) for k, v in arrays.items()})

    @classmethod
    def load(cls, folder: Path, config: IndexConfig, name: str | None = None) -> Model:
        d = _load_npz(Path(folder) / "model.npz")
        half = d["centroids"].dtype == np.float16
        f32 = {k: v.astype(np.float32) for k, v in d.items()}
        codebook = Codebook(f32["centroids"], config.assign_nprobe)
        return cls(config, PCAWhitening(f32["mean"], f32["projection"]), codebook, half, name)

    def encoder(self, extractor) -> AssignmentEncoder:
        return AssignmentEncoder(extractor, self.pca, self.codebook)


def save_model_only(folder: Path, model: Model) -> None:
    """A model folder (config + PCA + codebook, no images): for sharded builds, and the format
    of the shipped codebooks."""
    folder = Path(folder)
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


def load_model_only(folder: Path, name: str | None = None) -> Model:
    """The model of a model folder (``index train``) or of an index."""
    folder = Path(folder)
    if (folder / MANIFEST).exists():  # an index works as a model source too
        return BLCFIndex.load(folder).model
    meta_path = folder / "model.json"
    if not meta_path.exists():
        raise IndexFormatError(f"{folder} holds neither a model (model.json) nor an index")
    meta = read_versioned_json(
        meta_path, None, FORMAT_VERSION, IndexFormatError, what="BLCF model", exact=True,
        fix="refit the model with this version",
    )  # fmt: skip
    model = Model.load(folder, IndexConfig.from_dict(meta["config"]), name=name)
    if model.fingerprint() != meta["model_fingerprint"]:
        raise IndexFormatError(f"{folder}: model.npz does not match model.json")
    return model


def shipped_model(name: str = "generic") -> Model:
    """A codebook shipped inside the package (see assets/retrieval/README.md)."""
    if name not in SHIPPED:
        raise IndexFormatError(f"no shipped codebook {name!r}; shipped: {', '.join(SHIPPED)}")
    return load_model_only(SHIPPED_DIR / name, name=name)


# ----------------------------------------------------------------------------- photo stream
def _stream(
    paths: Sequence[Path], extractor, workers: int
) -> Iterator[tuple[Path, tuple[int, int] | None, object]]:
    """(path, original size, prepared input | ImageLoadError) in order, decoded ahead.

    ``workers`` threads decode and resize the next photos (PIL and torch release the GIL)
    while the caller runs the backbone on the current one. Extractors without ``prepare``
    (test doubles) get the decoded image.
    """
    prepare = getattr(extractor, "prepare", None)

    def load(p: Path):
        try:
            image = load_image(p)
        except ImageLoadError as exc:
            return p, None, exc
        return p, image.size, (prepare(image) if prepare is not None else image)

    if workers <= 0:
        yield from map(load, paths)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="blcf-decode") as pool:
        ahead = 2 * workers
        futures = [pool.submit(load, p) for p in paths[:ahead]]
        for i in range(len(paths)):
            item = futures[i].result()
            futures[i] = None  # free the decoded photo
            if i + ahead < len(paths):
                futures.append(pool.submit(load, paths[i + ahead]))
            yield item


def _features(extractor, x) -> np.ndarray:
    fn = getattr(extractor, "features", None)
    return fn(x) if fn is not None and hasattr(extractor, "prepare") else extractor(x)


# ----------------------------------------------------------------------------- index
@dataclass
class SearchHit:
    id: int
    image: str
    score: float
    box: list[float] | None  # localisation box (pixels) for reranked hits

    def as_dict(self) -> dict:
        box = None if self.box is None else [round(float(v), 1) for v in self.box]
        return {"image": self.image, "score": float(self.score), "box": box}


class BLCFIndex:
    """Assignment maps of a photo collection, their inverted index and the model behind them.

    ``BLCFIndex(config)`` is untrained (``train`` fits PCA-whitening and the codebook on
    photos or on an (n, D) array of local features); ``BLCFIndex.pretrained()`` starts from
    the shipped codebook; ``BLCFIndex(model=...)`` from any model (shards share one).
    """

    def __init__(
        self,
        config: IndexConfig | None = None,
        model: Model | None = None,
        extractor=None,
        device: str = "cpu",
    ) -> None:
        if model is not None and config is not None:
            model = model.with_config(config)
        self.model = model
        self._config = config or (model.config if model is not None else IndexConfig())
        self.paths: list[str] = []
        self.maps: list[np.ndarray] = []
        self.image_sizes = np.zeros((0, 2), np.int32)  # (n, 2) width, height
        self.skipped: list[dict] = []
        self.already_indexed = 0  # photos the last add() found in the index already
        self._inverted: InvertedIndex | None = None
        self._extractor = extractor
        self.device = device

    @classmethod
    def pretrained(
        cls, name: str = "generic", config: IndexConfig | None = None, **kw
    ) -> BLCFIndex:
        """An empty index on a shipped codebook; ``config`` may change the input size, the
        centre prior, tf-idf, chunking and assignment, not the backbone or level."""
        return cls(config or IndexConfig(), model=shipped_model(name), **kw)

    # -- properties
    @property
    def config(self) -> IndexConfig:
        return self.model.config if self.model is not None else self._config

    @property
    def is_trained(self) -> bool:
        return self.model is not None

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        words = self.model.codebook.size if self.model else "untrained"
        return f"BLCFIndex({len(self)} images, {words} words, {self.config.features.backbone})"

    @property
    def extractor(self):
        if self._extractor is None:
            self._extractor = LocalFeatureExtractor(self.config.features, device=self.device)
        return self._extractor

    def _require_model(self) -> Model:
        if self.model is None:
            raise IndexFormatError("the index is not trained: call train() or use pretrained()")
        return self.model

    @property
    def inverted(self) -> InvertedIndex:
        if self._inverted is None:
            model = self._require_model()
            bows = bow_matrix(self.maps, model.codebook.size, centre=self.config.centre_prior)
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

    # -- training
    def train(
        self,
        data: Sequence[str | os.PathLike] | np.ndarray,
        work_dir: str | os.PathLike | None = None,
        progress: bool = False,
        workers: int = 2,
    ) -> BLCFIndex:
        """Fit PCA-whitening and the codebook on photos (a random ``sample_images`` of them) or
        on an (n, D) array of raw local features. A fitted model is checkpointed in
        ``work_dir`` and reused by a rerun after a kill."""
        if self.paths:
            raise IndexFormatError("train() an empty index: its maps use the current codebook")
        cfg = self._config
        work = Path(work_dir) if work_dir is not None else None
        if work is not None and (work / "model.npz").exists():
            log.info("resuming: reusing the codebook fitted by the interrupted build")
            model = Model.load(work, cfg)
            self._config = replace(cfg, codebook_size=model.codebook.size)
            self.model = Model(self._config, model.pca, model.codebook)
            return self
        self._check_pca_dim(data)
        if isinstance(data, np.ndarray):
            x = np.asarray(data, np.float32).reshape(-1, data.shape[-1])
        else:
            x = self._sample_features([Path(p) for p in data], progress, workers)
        rng = np.random.default_rng(cfg.seed)
        if x.shape[0] > cfg.sample_features:
            x = x[rng.choice(x.shape[0], cfg.sample_features, replace=False)]
        pca = PCAWhitening.fit(x, cfg.pca_dim)
        codebook = Codebook.fit(
            pca(x), cfg.codebook_size, cfg.kmeans_iterations, cfg.seed, progress=progress
        )
        if codebook.size != cfg.codebook_size:
            cfg = replace(cfg, codebook_size=codebook.size)
        self._config = cfg
        self.model = Model(cfg, pca, Codebook(codebook.centroids, cfg.assign_nprobe))
        self._inverted = None
        if work is not None:
            work.mkdir(parents=True, exist_ok=True)
            self.model.save(work)
        return self

    def _check_pca_dim(self, data: Sequence[str | os.PathLike] | np.ndarray) -> None:
        """Refuse a ``pca_dim`` above the feature size before any photo is read.

        PCA silently kept min(pca_dim, D) dimensions, so ``--pca-dim 5000`` ran the whole
        build with a setting that meant nothing (the manifest then disagreed with the flag).
        """
        wanted = self._config.pca_dim
        if wanted is None:
            return
        if isinstance(data, np.ndarray):
            size = int(data.shape[-1])
        else:  # one tiny forward tells the backbone level's channel count
            from PIL import Image

            size = int(self.extractor(Image.new("RGB", (64, 64))).shape[-1])
        if wanted > size:
            from beyondvis.validation import ValidationError

            feats = self._config.features
            raise ValidationError(
                f"pca_dim {wanted} is above the feature size {size} of {feats.backbone} "
                f"level {feats.level}; use {size} or less (or leave it unset to keep them all)"
            )

    def _sample_features(self, paths: list[Path], progress: bool, workers: int) -> np.ndarray:
        cfg = self._config
        rng = np.random.default_rng(cfg.seed)
        order = sorted(rng.permutation(len(paths))[: cfg.sample_images])
        # keep a random share of each photo's cells so memory stays ~sample_features vectors
        per_image = max(1, -(-2 * cfg.sample_features // max(len(order), 1)))
        feats = []
        bar = _bar(len(order), "codebook features") if progress else None
        for p, _, x in _stream([paths[i] for i in order], self.extractor, workers):
            if bar is not None:
                bar.update(1)
            if isinstance(x, ImageLoadError):
                self.skipped.append({"path": str(p), "reason": x.reason})
                continue
            f = _features(self.extractor, x)
            f = f.reshape(-1, f.shape[-1])
            if f.shape[0] > per_image:
                f = f[rng.choice(f.shape[0], per_image, replace=False)]
            feats.append(f)
        if bar is not None:
            bar.close()
        if not feats:
            raise IndexFormatError("no readable image to fit the codebook on")
        return np.concatenate(feats)

    # -- adding
    def add(
        self,
        photos: Sequence[str | os.PathLike],
        work_dir: str | os.PathLike | None = None,
        progress: bool = False,
        workers: int = 2,
    ) -> list[dict]:
        """Encode photos with the index's codebook and append them; returns the skipped ones.

        Photos already in the index are not added twice. With ``work_dir`` every chunk of
        ``chunk_size`` photos is checkpointed there atomically, and a rerun after a kill
        reloads the finished chunks and encodes only the rest (``save`` removes them).
        Decoding runs ``workers`` threads ahead and word assignment overlaps the backbone of
        the next photo. Unreadable photos are skipped and reported, never fatal.
        """
        model = self._require_model()
        # by the spelling and by the absolute path: `index add IDX photos` then
        # `index add IDX ./photos` (or from another folder) indexed every photo twice
        known = set(self.paths) | {os.path.abspath(p) for p in self.paths}
        new = []
        self.already_indexed = 0
        for p in map(Path, photos):
            absolute = os.path.abspath(p)
            if str(p) in known or absolute in known:
                self.already_indexed += 1
                continue
            known.update((str(p), absolute))
            new.append(p)
        encoder = model.encoder(self.extractor)
        bar = _bar(len(new), "encoding") if progress else None
        try:
            paths, maps, sizes, skipped = encode_images(
                new,
                encoder,
                None if work_dir is None else Path(work_dir) / "chunks",
                self.config.chunk_size,
                bar.update if bar is not None else None,
                workers,
            )
        finally:
            if bar is not None:
                bar.close()
        self.add_maps(paths, maps, sizes)
        self.skipped += skipped
        for s in skipped:
            log.warning("skipped %s: %s", s["path"], s["reason"])
        return skipped

    def add_maps(self, paths: Sequence[str], maps: Sequence[np.ndarray], sizes: np.ndarray) -> None:
        """Append already computed assignment maps (with this index's codebook)."""
        self.paths.extend(str(p) for p in paths)
        self.maps.extend(maps)
        self.image_sizes = np.concatenate(
            [self.image_sizes.reshape(-1, 2), np.asarray(sizes, np.int32).reshape(-1, 2)]
        )
        self._inverted = None

    def merge(self, other: BLCFIndex) -> BLCFIndex:
        """Append the images of ``other`` (built with the same model); returns self."""
        model = self._require_model()
        if other.model is None or other.model.fingerprint() != model.fingerprint():
            raise IndexFormatError(
                "shards must share one model: this one was built with another codebook/backbone "
                "(build them with --model MODEL_DIR)"
            )
        known = set(self.paths)
        keep = [i for i, p in enumerate(other.paths) if p not in known]
        self.add_maps(
            [other.paths[i] for i in keep], [other.maps[i] for i in keep], other.image_sizes[keep]
        )
        self.skipped += other.skipped
        return self

    # -- search
    def views(
        self,
        image,
        box: Sequence[float] | None = None,
        mask: np.ndarray | None = None,
        augment: bool = False,
    ) -> list[QueryView]:
        """The query's views encoded exactly as the indexed photos (same backbone, codebook)."""
        if isinstance(image, np.ndarray):
            from PIL import Image

            image = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
        elif isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        encoder = self._require_model().encoder(self.extractor)
        variants = augment_query(image, box, mask) if augment else [(image, box, mask)]
        return [make_view(encoder(im), im.size, b, m) for im, b, m in variants]

    def search(
        self,
        image,
        box: Sequence[float] | None = None,
        mask: np.ndarray | None = None,
        k: int | None = 20,
        config: SearchConfig | None = None,
        augment: bool = False,
        unmatched: bool = False,
    ) -> list[SearchHit]:
        """The best ``k`` photos for a query photo (path or PIL image), optionally restricted
        to a box (x0, y0, x1, y1 pixels) or a mask; ``k`` = 0 or None returns the whole
        ranking. Photos sharing no visual word with the query are not returned unless
        ``unmatched``: their score says nothing about them."""
        return self.search_views(self.views(image, box, mask, augment), k, config, unmatched)

    def search_views(
        self,
        views: Sequence[QueryView],
        k: int | None = 20,
        config: SearchConfig | None = None,
        unmatched: bool = False,
    ) -> list[SearchHit]:
        cfg = config or SearchConfig(centre_prior=self.config.centre_prior)
        # unmatched photos score 0 and rank last, so the top k matched ones are in the top k
        ranking = self.searcher().search(views, cfg, k=k or None)
        ids = ranking.ids
        scores = ranking.scores
        if not unmatched:
            keep = ranking.matched[ids]
            ids, scores = ids[keep], scores[keep]
        if k:
            ids, scores = ids[:k], scores[:k]
        return [
            SearchHit(int(i), self.paths[int(i)], float(s), ranking.boxes.get(int(i)))
            for i, s in zip(ids, scores)
        ]

    # -- persistence
    def save(self, folder: str | os.PathLike) -> None:
        """Write the index folder atomically file by file, manifest last; then remove the
        folder's ``work/`` checkpoints, which the saved index supersedes."""
        model = self._require_model()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # the manifest is removed first and written last: its presence marks a complete index
        (folder / MANIFEST).unlink(missing_ok=True)
        model.save(folder)
        _save_maps(folder / "maps.npz", self.maps, self.image_sizes, model.codebook.size)
        atomic_write_json(folder / "images.json", {"paths": self.paths, "skipped": self.skipped})
        _save_npz(folder / "postings.npz", **self.inverted.disk_arrays())
        atomic_write_json(
            folder / MANIFEST,
            {
                "format": "beyondvis-blcf-index",
                "format_version": FORMAT_VERSION,
                "backbone": self.config.features.backbone,
                "model_fingerprint": model.fingerprint(),
                "codebook": model.name or "fitted",
                "num_images": len(self.paths),
                "vocab_size": model.codebook.size,
                "config": asdict(self.config),
                # checked on load: a flipped byte in the image list or the maps is an error
                # naming the file, not a search over other photos' words
                "sha256": {name: file_sha256(folder / name) for name in CHECKED_FILES},
            },
        )
        shutil.rmtree(folder / "work", ignore_errors=True)

    @classmethod
    def load(cls, folder: str | os.PathLike, extractor=None, device: str = "cpu") -> BLCFIndex:
        folder = Path(folder)
        manifest = read_manifest(folder)
        postings_ok = True
        for name, expected in (manifest.get("sha256") or {}).items():  # none in older indexes
            path = folder / name
            if name == "postings.npz":  # derived from the maps: rebuilt when missing or changed
                postings_ok = path.is_file() and file_sha256(path) == expected
                continue
            if not path.is_file() or file_sha256(path) != expected:
                raise IndexFormatError(
                    f"{path}: missing or checksum mismatch (the file changed or is corrupt "
                    "since the index was saved); rebuild the index"
                )
        config = IndexConfig.from_dict(manifest["config"])
        codebook = manifest.get("codebook", "fitted")
        model = Model.load(folder, config, name=None if codebook == "fitted" else codebook)
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
        index = cls(model=model, extractor=extractor, device=device)
        index.paths, index.maps, index.image_sizes = list(images["paths"]), maps, sizes
        index.skipped = images.get("skipped", [])
        if not postings_ok:
            log.warning("%s/postings.npz is missing or changed: rebuilt from the maps", folder)
        index._inverted = (
            _load_postings(folder / "postings.npz", model.codebook.size, len(maps), config)
            if postings_ok
            else None
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
    return read_versioned_json(
        path, "beyondvis-blcf-index", FORMAT_VERSION, IndexFormatError,
        what="BLCF index", kind_key="format", exact=True,
        fix="rebuild the index with this version",
    )  # fmt: skip


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Refuse a second writer on an index folder (``work/lock`` names the writer).

    The project's one lock (:func:`beyondvis.utils.locks.folder_lock`, an ``flock`` the kernel
    drops when its process dies): a SIGKILLed build leaves no lock to clean up, and a pid
    reused by another process cannot keep a stale pid file alive, as the old O_EXCL pid file
    could. A refusal is an :class:`IndexFormatError`, as before."""
    from beyondvis.utils.locks import FolderLockedError
    from beyondvis.utils.locks import folder_lock as hold_folder

    work = Path(folder) / "work"
    held = hold_folder(work, "lock")
    try:
        held.__enter__()
    except FolderLockedError as exc:
        raise IndexFormatError(str(exc)) from None
    try:
        yield
    finally:
        held.__exit__(None, None, None)
        with contextlib.suppress(OSError):
            work.rmdir()  # only if empty: checkpoints of an unfinished build stay


def _load_postings(path: Path, vocab: int, n: int, config: IndexConfig) -> InvertedIndex | None:
    """The saved postings, or None (rebuilt lazily from the maps) if absent or inconsistent."""
    if not path.exists():
        return None
    try:
        d = _load_npz(path)
        indptr, indices, data = d["indptr"], d["indices"], d["data"]
        if (
            indptr.size != vocab + 1
            or indptr[-1] != indices.size
            or indices.size != data.size
            or (indices.size and indices.max() >= n)
        ):
            return None
    except (IndexFormatError, KeyError, ValueError):
        return None
    return InvertedIndex.from_arrays(indptr, indices, data, n, tfidf=config.tfidf)


def _save_maps(path: Path, maps: Sequence[np.ndarray], sizes: np.ndarray, vocab: int) -> None:
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


# ----------------------------------------------------------------------------- encoding
def encode_images(
    paths: Sequence[Path],
    encoder: AssignmentEncoder,
    work: Path | None,
    chunk_size: int,
    progress: Callable[[int], None] | None = None,
    workers: int = 2,
) -> tuple[list[str], list[np.ndarray], np.ndarray, list[dict]]:
    """Assignment maps of every photo, checkpointed chunk by chunk under ``work``.

    A chunk is written atomically once all its images are encoded; a rerun after a kill
    reloads finished chunks and recomputes only the rest. Three stages overlap: decoding and
    resizing (``workers`` threads), the backbone (this thread) and PCA + word assignment (one
    more thread; FAISS releases the GIL), so two cores are busy on a two-core CPU.
    """
    paths = [Path(p) for p in paths]
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    extractor = encoder.extractor
    vocab = encoder.codebook.size
    out_paths, out_maps, out_sizes, skipped = [], [], [], []
    with ThreadPoolExecutor(1, thread_name_prefix="blcf-assign") as assign:
        for start in range(0, len(paths), chunk_size):
            chunk = paths[start : start + chunk_size]
            cfile = None if work is None else work / f"chunk_{start // chunk_size:06d}.npz"
            meta_file = None if cfile is None else cfile.with_suffix(".json")
            if cfile is not None and cfile.exists() and meta_file.exists():
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
            c_paths, c_futures, c_sizes, c_skipped = [], [], [], []
            for p, size, x in _stream(chunk, extractor, workers):
                if isinstance(x, ImageLoadError):
                    c_skipped.append({"path": str(p), "reason": x.reason})
                else:
                    c_futures.append(
                        assign.submit(encoder.encode_features, _features(extractor, x))
                    )
                    c_paths.append(str(p))
                    c_sizes.append(size)
                if progress:
                    progress(1)
            c_maps = [f.result() for f in c_futures]
            sizes = np.array(c_sizes, dtype=np.int32).reshape(-1, 2)
            if cfile is not None:
                _save_maps(cfile, c_maps, sizes, vocab)
                atomic_write_json(
                    meta_file,
                    {"paths_in": [str(p) for p in chunk], "paths": c_paths, "skipped": c_skipped},
                )
            out_paths += c_paths
            out_maps += c_maps
            out_sizes.append(sizes)
            skipped += c_skipped
    sizes = np.concatenate(out_sizes) if out_sizes else np.zeros((0, 2), np.int32)
    return out_paths, out_maps, sizes, skipped


def _bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False)
