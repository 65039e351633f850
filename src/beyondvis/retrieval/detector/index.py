"""The detector index: Faster R-CNN features of a photo collection, searched in three stages.

Same methods as :class:`~beyondvis.retrieval.BLCFIndex` (``train``, ``add``, ``search``,
``save``, ``load``, ``merge``, ``len``)::

    index = DetectorIndex(DetectorConfig(max_side=320))
    index.train(photos, queries=queries_from_gt("bench"), finetune="all")   # optional FT
    index.add(photos)
    index.save("idx")
    hits = DetectorIndex.load("idx").search("query.jpg", box=(40, 60, 200, 300))

Per photo the index keeps its IPA vectors (sum and max, post-processed) for the filtering
stage, the last conv map (float16) from which the RPA of its proposals are pooled at search
time, the top RPN proposals and, after fine-tuning, their class probabilities (CS-SR). Keeping
the map instead of 300 pooled proposal vectors is exact (a proposal's RPA is the pooling of
its warped cells of that map) and smaller (a 10 x 8 x 1280 map at 320 px against 300 x 1280).

Search (thesis Sec. 3.4): IPA filtering by cosine similarity; spatial reranking of the top K
by the best proposal of each photo, either class-agnostic (CA-SR: cosine of its RPA with the
query box's) or class-specific (CS-SR: the fine-tuned net's probability of the query's class),
which also gives the object's box; then query expansion with the IPA of the top N.

Folder layout::

    manifest.json   format, version, configs, counts, sha256 of every file (written last)
    detector.pt     the network's weights (state dict; torch.load(weights_only=True))
    model.npz       whitening of the sum-pooled IPA and RPA
    vectors.npz     IPA vectors, maps, proposals, class probabilities, photo sizes
    images.json     indexed photo paths and the skipped ones with the reason
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from beyondvis.io import ImageLoadError, load_image
from beyondvis.retrieval.detector.finetune import FinetuneConfig, QueryObject, finetune
from beyondvis.retrieval.detector.model import DetectorConfig, DetectorNet, to_tensor
from beyondvis.retrieval.detector.pooling import KINDS, Postprocess, pool_box, pool_map
from beyondvis.retrieval.index import IndexFormatError, SearchHit
from beyondvis.retrieval.pooling import l2n
from beyondvis.utils import atomic_write, atomic_write_json
from beyondvis.utils.atomic import file_sha256 as _sha256
from beyondvis.utils.versioned import read_versioned_json

FORMAT = "beyondvis-frcnn-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = ("detector.pt", "model.npz", "vectors.npz", "images.json")
RERANKS = (None, "ca", "cs")
log = logging.getLogger(__name__)


@dataclass
class DetectorSearchConfig:
    """One search: filtering pooling, reranking (None, ``ca`` = CA-SR, ``cs`` = CS-SR) of the
    top ``top_k`` with ``rpa`` pooling for CA-SR, and query expansion with the top ``qe_top``
    (0 = none; thesis N = 5). ``qe_rerank`` reranks the expanded ranking's top K again, so the
    final order is spatial; without it the expanded IPA ranking is final."""

    ipa: str = "sum"
    rpa: str = "max"
    rerank: str | None = "ca"
    top_k: int = 100
    qe_top: int = 0
    qe_rerank: bool = True

    def __post_init__(self) -> None:
        if self.ipa not in KINDS or self.rpa not in KINDS:
            raise ValueError(f"ipa and rpa pooling must be one of {KINDS}")
        if self.rerank not in RERANKS:
            raise ValueError(f"unknown reranking {self.rerank!r}; choose from {RERANKS}")
        if self.top_k < 0 or self.qe_top < 0:
            raise ValueError("top_k and qe_top must be >= 0")


@dataclass
class Encoded:
    """What the index keeps of one photo (raw pooled IPA; processed at add time)."""

    size: tuple[int, int]
    fmap: np.ndarray  # (C, h, w) float16
    boxes: np.ndarray  # (P, 4) float32, photo pixels
    scores: np.ndarray | None  # (P, K) float16 class probabilities, background first

    def ipa(self, kind: str) -> np.ndarray:
        return pool_map(self.fmap.astype(np.float32), kind)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as d:
            return {k: d[k] for k in d.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise IndexFormatError(f"corrupt index file {path}: {exc}") from None


def is_detector_index(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a detector (``--method frcnn``) index."""
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def read_detector_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise IndexFormatError(f"{folder} is not a complete detector index: no {MANIFEST}")
    return read_versioned_json(
        path, FORMAT, FORMAT_VERSION, IndexFormatError, what="detector index",
        kind_key="format", exact=True, fix="rebuild the index",
    )  # fmt: skip


class DetectorIndex:
    """Faster R-CNN IPA/RPA features of a photo collection (see the module docstring)."""

    def __init__(
        self,
        config: DetectorConfig | None = None,
        device: str = "cpu",
        net: DetectorNet | None = None,
    ) -> None:
        self.config = config or (net.config if net is not None else DetectorConfig())
        self.device = torch.device(device)
        self._net = net
        self.post: dict[str, Postprocess] = {}  # "ipa.sum", "rpa.sum", ... once trained
        self.paths: list[str] = []
        self.skipped: list[dict] = []
        self.sizes = np.zeros((0, 2), np.int32)
        self.ipa: dict[str, np.ndarray] = {k: np.zeros((0, 0), np.float16) for k in KINDS}
        self.fmaps: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.scores: list[np.ndarray] | None = None
        self.train_seconds = 0.0
        self._cache: dict[str, Encoded] = {}  # photos encoded by train, reused by add
        self._ipa_matrix: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ basics
    @property
    def net(self) -> DetectorNet:
        if self._net is None:
            from beyondvis.retrieval.detector.model import build_detector

            self._net = build_detector(self.config).to(self.device)
        return self._net

    @property
    def is_trained(self) -> bool:
        return all(k in self.post and self.post[k].fitted for k in self._post_keys())

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    def __len__(self) -> int:
        return len(self.paths)

    @staticmethod
    def _post_keys() -> list[str]:
        return [f"{stage}.{k}" for stage in ("ipa", "rpa") for k in KINDS]

    def encode(self, image) -> Encoded:
        """One photo (path, PIL image or HxWx3 uint8 array) -> what the index keeps of it."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        elif isinstance(image, np.ndarray):
            from PIL import Image

            image = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
        out = self.net.encode(to_tensor(image).to(self.device))
        scores = out["scores"].astype(np.float16) if self.config.classes else None
        return Encoded(image.size, out["fmap"].astype(np.float16), out["boxes"], scores)

    def _encode_paths(self, paths: Sequence[Path], progress: bool, desc: str):
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), desc=desc, unit="img", leave=False)
        try:
            for p in paths:
                key = str(p)
                if key in self._cache:
                    enc = self._cache.pop(key)
                else:
                    try:
                        enc = self.encode(p)
                    except ImageLoadError as exc:
                        yield p, exc
                        if bar is not None:
                            bar.update(1)
                        continue
                yield p, enc
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    # ------------------------------------------------------------------ training
    def train(
        self,
        photos: Sequence[str | os.PathLike],
        queries: Sequence[QueryObject] | None = None,
        finetune_mode: str | FinetuneConfig | None = None,
        work_dir: str | os.PathLike | None = None,
        progress: bool = False,
        sample_images: int = 500,
        sample_regions: int = 50_000,
        seed: int = 0,
    ) -> DetectorIndex:
        """Optionally fine-tune the detector on ``queries`` (``finetune_mode`` ``fc``/``all``
        or a :class:`FinetuneConfig`), then fit the whitening of sum-pooled IPA and RPA on up
        to ``sample_images`` of ``photos`` (their encodings are kept for ``add``)."""
        t0 = time.perf_counter()
        if finetune_mode is not None:
            if not queries:
                raise ValueError("fine-tuning needs the query objects (queries=...)")
            cfg = (
                finetune_mode
                if isinstance(finetune_mode, FinetuneConfig)
                else FinetuneConfig(mode=finetune_mode, progress=progress)
            )
            out = Path(work_dir or ".") / "finetune"
            finetune(self.net, queries, cfg, out, device=str(self.device))
            self.config = self.net.config
            self.net.to(self.device)
        rng = np.random.default_rng(seed)
        paths = [Path(p) for p in photos]
        order = sorted(rng.permutation(len(paths))[:sample_images])
        self._cache = {}
        ipa = {k: [] for k in KINDS}
        encodings = []
        for p, enc in self._encode_paths([paths[i] for i in order], progress, "whitening"):
            if isinstance(enc, ImageLoadError):
                continue
            self._cache[str(p)] = enc
            encodings.append(enc)
            for k in KINDS:
                ipa[k].append(enc.ipa(k))
        if len(encodings) < 2:
            raise ValueError("the whitening needs at least two readable photos")
        per_image = max(1, sample_regions // len(encodings))
        from beyondvis.retrieval.detector.pooling import pool_boxes

        regions = []
        for enc in encodings:
            boxes = enc.boxes
            if boxes.shape[0] > per_image:
                boxes = boxes[rng.choice(boxes.shape[0], per_image, replace=False)]
            if boxes.shape[0]:
                regions.append(pool_boxes(enc.fmap.astype(np.float32), boxes, enc.size, "sum"))
        self.post = {f"ipa.{k}": Postprocess(k).fit(np.stack(ipa[k])) for k in KINDS}
        for k in KINDS:
            self.post[f"rpa.{k}"] = Postprocess(k).fit(np.concatenate(regions))
        self._ipa_matrix = {}
        self.train_seconds = time.perf_counter() - t0
        return self

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise IndexFormatError("the index has no whitening yet: call train(photos) first")

    # ------------------------------------------------------------------ adding
    def add(
        self,
        photos: Sequence[str | os.PathLike],
        progress: bool = False,
    ) -> list[dict]:
        """Encode photos and append them; returns the skipped (unreadable) ones. Photos
        already in the index are not added twice."""
        self._require_trained()
        known = set(self.paths)
        new = []
        for p in map(Path, photos):
            if str(p) not in known:
                known.add(str(p))
                new.append(p)
        skipped = []
        rows = {k: [] for k in KINDS}
        sizes = []
        for p, enc in self._encode_paths(new, progress, "encoding"):
            if isinstance(enc, ImageLoadError):
                skipped.append({"path": str(p), "reason": enc.reason})
                log.warning("skipped %s: %s", p, enc.reason)
                continue
            self.paths.append(str(p))
            sizes.append(enc.size)
            for k in KINDS:
                rows[k].append(self.post[f"ipa.{k}"](enc.ipa(k)).astype(np.float16))
            self.fmaps.append(enc.fmap)
            self.boxes.append(enc.boxes.astype(np.float32))
            if self.config.classes:
                if self.scores is None:
                    self.scores = []
                self.scores.append(enc.scores)
        self._cache = {}
        if sizes:
            self.sizes = np.concatenate([self.sizes, np.asarray(sizes, np.int32).reshape(-1, 2)])
            for k in KINDS:
                old = self.ipa[k] if self.ipa[k].size else np.zeros((0, rows[k][0].size))
                self.ipa[k] = np.concatenate([old, np.stack(rows[k])]).astype(np.float16)
        self._ipa_matrix = {}
        self.skipped += skipped
        return skipped

    def merge(self, other: DetectorIndex) -> DetectorIndex:
        """Append the photos of ``other`` (built with the same network and whitening)."""
        if other.fingerprint() != self.fingerprint():
            raise IndexFormatError("indexes built with another detector or whitening cannot merge")
        known = set(self.paths)
        keep = [i for i, p in enumerate(other.paths) if p not in known]
        self.paths += [other.paths[i] for i in keep]
        self.sizes = np.concatenate([self.sizes, other.sizes[keep]])
        for k in KINDS:
            self.ipa[k] = np.concatenate([self.ipa[k], other.ipa[k][keep]]).astype(np.float16)
        self.fmaps += [other.fmaps[i] for i in keep]
        self.boxes += [other.boxes[i] for i in keep]
        if self.scores is not None and other.scores is not None:
            self.scores += [other.scores[i] for i in keep]
        self.skipped += other.skipped
        self._ipa_matrix = {}
        return self

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for key in sorted(self.post):
            for v in self.post[key].state(key).values():
                h.update(np.ascontiguousarray(v).tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ search
    def _ipa(self, kind: str) -> np.ndarray:
        if kind not in self._ipa_matrix:
            self._ipa_matrix[kind] = self.ipa[kind].astype(np.float32)
        return self._ipa_matrix[kind]

    def query_class(self, image, box: Sequence[float] | None) -> int:
        """The fine-tuned class (1-based) the query box shows best (CS-SR scores by it)."""
        if not self.config.classes:
            raise ValueError("CS-SR needs a detector fine-tuned on the query objects")
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        w, h = image.size
        b = torch.tensor([box if box is not None else (0, 0, w, h)], dtype=torch.float32)
        probs = self.net.classify_boxes(to_tensor(image).to(self.device), b.to(self.device))[0]
        return int(np.argmax(probs[1:]) + 1)

    def search(
        self,
        image,
        box: Sequence[float] | None = None,
        k: int | None = 20,
        config: DetectorSearchConfig | None = None,
        query_class: str | int | None = None,
    ) -> list[SearchHit]:
        """The best ``k`` photos (0 or None: the whole ranking) for a query photo (path, PIL
        image or array) and the object's box (x0, y0, x1, y1 pixels; None = the whole photo).

        CS-SR scores by the class ``query_class`` (a fine-tuned class name or 1-based id);
        by default the class the fine-tuned head gives the query box."""
        cfg = config or DetectorSearchConfig()
        self._require_trained()
        if not self.paths:
            return []
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        elif isinstance(image, np.ndarray):
            from PIL import Image

            image = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
        enc = self.encode(image)
        fmap = enc.fmap.astype(np.float32)
        q_ipa = self.post[f"ipa.{cfg.ipa}"](pool_map(fmap, cfg.ipa))
        q_region = self.post[f"rpa.{cfg.rpa}"](pool_box(fmap, box, image.size, cfg.rpa))
        cls = None
        if cfg.rerank == "cs":
            if isinstance(query_class, str):
                if query_class not in self.config.classes:
                    raise ValueError(f"unknown query class {query_class!r}")
                cls = self.config.classes.index(query_class) + 1
            elif query_class is not None:
                cls = int(query_class)
            else:
                cls = self.query_class(image, box)
        return self.search_vectors(q_ipa, q_region, cfg, cls, k)

    def search_vectors(
        self,
        q_ipa: np.ndarray,
        q_region: np.ndarray,
        cfg: DetectorSearchConfig,
        query_class: int | None = None,
        k: int | None = 20,
    ) -> list[SearchHit]:
        """Search with already post-processed query vectors (the benchmark's entry point)."""
        db = self._ipa(cfg.ipa)
        scores = db @ q_ipa
        order = np.argsort(-scores, kind="stable")
        boxes: dict[int, list[float]] = {}
        if cfg.rerank:
            order, scores, boxes = self._rerank(order, scores, q_region, cfg, query_class)
        if cfg.qe_top:
            top = order[: cfg.qe_top]
            expanded = l2n((q_ipa + db[top].sum(axis=0))[None])[0]
            scores = db @ expanded
            order = np.argsort(-scores, kind="stable")
            if cfg.rerank and cfg.qe_rerank:
                order, scores, new_boxes = self._rerank(order, scores, q_region, cfg, query_class)
                boxes.update(new_boxes)
        if k:
            order = order[:k]
        return [
            SearchHit(int(i), self.paths[int(i)], float(scores[int(i)]), boxes.get(int(i)))
            for i in order
        ]

    def _rerank(self, order, scores, q_region, cfg, query_class):
        """Rescore the top K by their best proposal; the rest keep their order below them."""
        if cfg.rerank == "cs" and (self.scores is None or query_class is None):
            raise ValueError("CS-SR needs a detector fine-tuned on the query objects")
        post = self.post[f"rpa.{cfg.rpa}"]
        top = order[: cfg.top_k]
        new = scores.astype(np.float32).copy()
        boxes = {}
        for i in top:
            i = int(i)
            props = self.boxes[i]
            if props.shape[0] == 0:
                new[i] = -1.0
                continue
            if cfg.rerank == "ca":
                sims = post.pool_boxes(self.fmaps[i], props, tuple(self.sizes[i])) @ q_region
            else:
                sims = self.scores[i][:, query_class].astype(np.float32)
            j = int(np.argmax(sims))
            new[i] = float(sims[j])
            boxes[i] = [float(v) for v in props[j]]
        top_sorted = top[np.argsort(-new[top], kind="stable")]
        rest = order[cfg.top_k :]
        if rest.size and top.size:  # keep scores monotone down the whole ranking
            tail = new[rest]
            new[rest] = tail - tail.max() + min(float(new[top].min()), float(tail.max())) - 1e-6
        return np.concatenate([top_sorted, rest]), new, boxes

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> None:
        """Write the index atomically file by file, the manifest (with every file's sha256)
        last: its presence marks a complete index."""
        self._require_trained()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in self.net.state_dict().items()}, buf)
        with atomic_write(folder / "detector.pt", "wb") as f:
            f.write(buf.getvalue())
        state = {}
        for key, post in self.post.items():
            state.update(post.state(key))
        with atomic_write(folder / "model.npz", "wb") as f:
            f.write(_npz_bytes(**state))
        shapes = np.array([m.shape for m in self.fmaps], np.int32).reshape(-1, 3)
        counts = np.array([b.shape[0] for b in self.boxes], np.int64)
        arrays = {
            "sizes": self.sizes.astype(np.int32),
            "map_shapes": shapes,
            "maps": (np.concatenate([m.ravel() for m in self.fmaps]) if self.fmaps
                     else np.zeros(0)).astype(np.float16),
            "box_counts": counts,
            "boxes": (np.concatenate(self.boxes) if self.boxes
                      else np.zeros((0, 4))).astype(np.float32),
            **{f"ipa_{k}": self.ipa[k] for k in KINDS},
        }  # fmt: skip
        if self.scores is not None:
            arrays["scores"] = np.concatenate(self.scores).astype(np.float16)
        with atomic_write(folder / "vectors.npz", "wb") as f:
            f.write(_npz_bytes(**arrays))
        atomic_write_json(folder / "images.json", {"paths": self.paths, "skipped": self.skipped})
        atomic_write_json(
            folder / MANIFEST,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "method": "frcnn",
                "backbone": self.config.backbone if self.config.arch == "lite" else "resnet50",
                "num_images": len(self.paths),
                "classes": self.config.classes,
                "finetune": self.config.finetune,
                "fingerprint": self.fingerprint(),
                "config": self.config.to_dict(),
                "sha256": {name: _sha256(folder / name) for name in FILES},
            },
        )
        # fine-tuning checkpoints under work/ are superseded by detector.pt
        shutil.rmtree(folder / "work", ignore_errors=True)

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str = "cpu") -> DetectorIndex:
        folder = Path(folder)
        manifest = read_detector_manifest(folder)
        for name in FILES:
            path = folder / name
            if not path.exists():
                raise IndexFormatError(f"missing index file {path}")
            if _sha256(path) != manifest["sha256"][name]:
                raise IndexFormatError(f"{path} does not match the manifest's checksum")
        config = DetectorConfig.from_dict({**manifest["config"], "weights": None})
        # the saved state replaces every weight: skip loading the ImageNet/COCO files first
        net = DetectorNet(replace(config, pretrained=False))
        net.config = config
        try:
            state = torch.load(folder / "detector.pt", map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        except (RuntimeError, ValueError, EOFError) as exc:
            raise IndexFormatError(f"{folder}/detector.pt: {str(exc).splitlines()[0]}") from None
        net.eval()
        index = cls(config, device=device, net=net.to(device))
        model = _load_npz(folder / "model.npz")
        index.post = {
            key: Postprocess.from_state(key.split(".")[1], key, model) for key in cls._post_keys()
        }
        v = _load_npz(folder / "vectors.npz")
        images = json.loads((folder / "images.json").read_text(encoding="utf-8"))
        n = len(images["paths"])
        if n != manifest["num_images"] or v["sizes"].shape[0] != n:
            raise IndexFormatError(f"{folder}: image list and vectors disagree in length")
        index.paths, index.skipped = list(images["paths"]), images.get("skipped", [])
        index.sizes = v["sizes"]
        index.ipa = {k: v[f"ipa_{k}"] for k in KINDS}
        shapes = v["map_shapes"]
        offsets = np.concatenate([[0], np.cumsum(shapes.prod(axis=1))])
        index.fmaps = [v["maps"][offsets[i] : offsets[i + 1]].reshape(shapes[i]) for i in range(n)]
        bo = np.concatenate([[0], np.cumsum(v["box_counts"])])
        index.boxes = [v["boxes"][bo[i] : bo[i + 1]] for i in range(n)]
        if "scores" in v:
            index.scores = [v["scores"][bo[i] : bo[i + 1]] for i in range(n)]
        return index
