"""Thesis-style experiments on an Oxford-format benchmark (e.g. ``beyondvis data make-instances``).

Local features of every database photo and every (augmented) query view are extracted once
and cached; the codebook, the BoW stages and the pooling baselines then run on the cache, so
trying a search variant costs seconds, not a backbone pass.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from beyondvis.data.oxford import read_gt_files
from beyondvis.io import ImageLoadError, iter_image_paths, load_image
from beyondvis.retrieval.bow import box_mask, distance_weights
from beyondvis.retrieval.evaluate import mean_average_precision
from beyondvis.retrieval.features import LocalFeatureExtractor
from beyondvis.retrieval.index import BLCFIndex, IndexConfig, Model
from beyondvis.retrieval.pooling import POOLINGS, DenseIndex, PCAWhitening
from beyondvis.retrieval.rerank import RerankConfig
from beyondvis.retrieval.search import BLCFSearcher, SearchConfig, augment_query, make_view
from beyondvis.utils import atomic_write

log = logging.getLogger(__name__)


def _cache_key(config: IndexConfig) -> str:
    text = json.dumps(asdict(config.features), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _save_features(path: Path, names: list[str], feats: list[np.ndarray], sizes: list) -> None:
    shapes = np.array([f.shape for f in feats], np.int32)
    buf = io.BytesIO()
    np.savez(
        buf,
        names=np.array(names),
        shapes=shapes,
        sizes=np.array(sizes, np.int32).reshape(-1, 2),
        data=np.concatenate([f.reshape(-1) for f in feats]).astype(np.float16),
    )
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _load_features(path: Path) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    with np.load(path, allow_pickle=False) as d:
        names, shapes, sizes, data = list(d["names"]), d["shapes"], d["sizes"], d["data"]
    offsets = np.concatenate([[0], np.cumsum(shapes.prod(axis=1))])
    feats = [
        data[offsets[i] : offsets[i + 1]].astype(np.float32).reshape(shapes[i])
        for i in range(len(shapes))
    ]
    return names, feats, sizes


@dataclass
class QueryItem:
    name: str
    views: list[tuple[np.ndarray, tuple[int, int], tuple[float, ...] | None]]  # feats, size, box


class InstanceBenchmark:
    def __init__(self, root: Path, config: IndexConfig, cache: Path, device: str = "cpu") -> None:
        self.root, self.config, self.device = Path(root), config, device
        self.cache = Path(cache) / _cache_key(config)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.queries = read_gt_files(self.root / "gt_files")
        self.gt = {q.name: q.as_gt() for q in self.queries}
        self._extractor: LocalFeatureExtractor | None = None

    @property
    def images_dir(self) -> Path:
        # make-instances writes images/; Oxford 5k ships jpg/ (queries are database photos)
        for name in ("images", "jpg"):
            if (self.root / name).is_dir():
                return self.root / name
        raise FileNotFoundError(f"no images/ or jpg/ folder in {self.root}")

    def query_path(self, image_id: str) -> Path:
        for folder in (self.root / "queries", self.images_dir):
            if (folder / f"{image_id}.jpg").exists():
                return folder / f"{image_id}.jpg"
        raise FileNotFoundError(f"query image {image_id}.jpg not found under {self.root}")

    @property
    def extractor(self) -> LocalFeatureExtractor:
        if self._extractor is None:
            self._extractor = LocalFeatureExtractor(self.config.features, device=self.device)
        return self._extractor

    # ------------------------------------------------------------------ features
    def database(self) -> tuple[list[str], list[np.ndarray], np.ndarray]:
        path = self.cache / "database.npz"
        if not path.exists():
            names, feats, sizes = [], [], []
            t0 = time.perf_counter()
            from tqdm import tqdm

            paths = list(iter_image_paths(self.images_dir))
            for p in tqdm(paths, desc="database features", unit="img", mininterval=10):
                try:
                    image = load_image(p)
                except ImageLoadError as exc:
                    log.warning("skipped %s: %s", p, exc.reason)
                    continue
                names.append(p.stem)
                feats.append(self.extractor(image))
                sizes.append(image.size)
            log.info("database features: %d images in %.1fs", len(names), time.perf_counter() - t0)
            _save_features(path, names, feats, sizes)
        return _load_features(path)

    def query_items(self) -> list[QueryItem]:
        path = self.cache / "queries.npz"
        if not path.exists():
            names, feats, sizes = [], [], []
            for q in self.queries:
                image = load_image(self.query_path(q.image))
                for v, (im, _box, _m) in enumerate(augment_query(image, q.box)):
                    names.append(f"{q.name}#{v}")
                    feats.append(self.extractor(im))
                    sizes.append(im.size)
            _save_features(path, names, feats, sizes)
        names, feats, sizes = _load_features(path)
        by_name = {n: (f, tuple(int(v) for v in s)) for n, f, s in zip(names, feats, sizes)}
        items = []
        for q in self.queries:
            image_size = by_name[f"{q.name}#0"][1]
            views = []
            dummy = load_image_size_stub(image_size)
            for v, (_im, box, _m) in enumerate(augment_query(dummy, q.box)):
                f, size = by_name[f"{q.name}#{v}"]
                views.append((f, size, box))
            items.append(QueryItem(q.name, views))
        return items

    # ------------------------------------------------------------------ BLCF
    def fit_bow(self, model: Model | None = None) -> None:
        """Encode the cached features with ``model`` (e.g. the shipped codebook), or with a
        codebook fitted on the database itself (the thesis protocol), into a BLCFIndex."""
        names, feats, sizes = self.database()
        cfg = self.config
        t0 = time.perf_counter()
        if model is not None:
            self.model = model.with_config(cfg)
        else:
            key = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
            model_dir = self.cache / f"model_{key}"
            if (model_dir / "model.npz").exists():
                self.model = Model.load(model_dir, cfg)
            else:
                x = np.concatenate([f.reshape(-1, f.shape[-1]) for f in feats])
                self.model = BLCFIndex(cfg).train(x).model
                model_dir.mkdir(exist_ok=True)
                self.model.save(model_dir)
        self.fit_seconds = time.perf_counter() - t0
        self.names = names
        self.index = BLCFIndex(model=self.model)
        self.index.add_maps(names, [self._assign(f) for f in feats], sizes)
        self.query_maps = [
            (item.name, [(self._assign(f), size, box) for f, size, box in item.views])
            for item in self.query_items()
        ]

    @property
    def searcher(self) -> BLCFSearcher:
        return self.index.searcher()

    def _assign(self, f: np.ndarray) -> np.ndarray:
        h, w, d = f.shape
        return self.model.codebook.assign(self.model.pca(f.reshape(-1, d))).reshape(h, w)

    def run_bow(self, search: SearchConfig, augment: bool = False) -> float:
        rankings = {}
        for name, views in self.query_maps:
            chosen = views if augment else views[:1]
            qviews = [make_view(m, size, box) for m, size, box in chosen]
            # the whole ranking, unmatched photos included, so mAP is never truncated
            hits = self.index.search_views(qviews, k=0, config=search, unmatched=True)
            rankings[name] = [h.image for h in hits]
        return mean_average_precision(rankings, self.gt)

    # ------------------------------------------------------------------ pooling
    def run_pooling(self, kind: str, mode: str) -> float:
        names, feats, _sizes = self.database()
        pool = POOLINGS[kind]
        db = np.stack([pool(f) for f in feats])
        pca = PCAWhitening.fit(db)
        dense = DenseIndex(pca(db))
        rankings = {}
        for item in self.query_items():
            f, size, box = item.views[0]
            weights = None
            if mode != "gs":
                mask = box_mask(box, size, f.shape[:2])
                weights = mask.astype(np.float32) if mode == "ls" else distance_weights(mask)
            q = pool(f, weights) if kind != "spoc" else pool(f, weights, centre=mode == "gs")
            ids, _ = dense.search(pca(q[None]), len(names))
            rankings[item.name] = [names[i] for i in ids[0]]
        return mean_average_precision(rankings, self.gt)


def load_image_size_stub(size: tuple[int, int]):
    """A blank image of the right size: augment_query only needs the size to move the boxes."""
    from PIL import Image

    return Image.new("RGB", size)


STAGES = [
    ("GS", dict(mode="gs")),
    ("LS", dict(mode="ls")),
    ("WS", dict(mode="ws")),
    ("GS + R", dict(mode="gs", rerank=True)),
    ("LS + R", dict(mode="ls", rerank=True)),
    ("GS + GQE", dict(mode="gs", qe="gqe")),
    ("LS + GQE", dict(mode="ls", qe="gqe")),
    ("GS + R + GQE", dict(mode="gs", rerank=True, qe="gqe")),
    ("LS + R + GQE", dict(mode="ls", rerank=True, qe="gqe")),
    ("GS + R + LQE", dict(mode="gs", rerank=True, qe="lqe")),
    ("LS + R + LQE", dict(mode="ls", rerank=True, qe="lqe")),
    ("WS + R + WQE", dict(mode="ws", rerank=True, qe="wqe")),
]


def stage_table(
    bench: InstanceBenchmark,
    rerank: RerankConfig,
    qe_top: int = 10,
    only: list[str] | None = None,
    max_words: int | None = 100,
) -> list[dict]:
    known = [label for label, _ in STAGES]
    unknown = sorted(set(only or []) - set(known))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {', '.join(known)}")
    rows = []
    for label, kw in STAGES:
        if only is not None and label not in only:
            continue
        cfg = SearchConfig(
            rerank_config=rerank,
            qe_top=qe_top,
            centre_prior=bench.config.centre_prior,
            max_words=max_words,
            **kw,
        )
        rows.append(
            {
                "stage": label,
                "map": bench.run_bow(cfg),
                "map_qaug": bench.run_bow(cfg, augment=True),
            }
        )
    return rows


def pooling_table(bench: InstanceBenchmark) -> list[dict]:
    rows = []
    for mode in ("gs", "ws", "ls"):
        cfg = SearchConfig(mode=mode, centre_prior=bench.config.centre_prior)
        rows.append({"method": "BoW (BLCF)", "mode": mode.upper(), "map": bench.run_bow(cfg)})
    for kind in ("spoc", "crow", "mac", "rmac"):
        for mode in ("gs", "ws", "ls"):
            rows.append(
                {"method": kind, "mode": mode.upper(), "map": bench.run_pooling(kind, mode)}
            )
    return rows


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def localisation_table(bench: InstanceBenchmark, rerank: RerankConfig) -> list[dict]:
    """How well the reranking window localises the object in the positives it reranked.

    Needs ``annotations.json`` (written by make-instances): for every good/ok positive among
    the reranked top K, the IoU of the best window with the pasted object's box.
    """
    path = bench.root / "annotations.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: localisation needs make-instances annotations")
    truth = {
        (a["query"], a["image"]): a["box"]
        for a in json.loads(path.read_text(encoding="utf-8"))["instances"]
        if a["label"] in ("good", "ok")
    }
    rows = []
    for mode in ("gs", "ls"):
        cfg = SearchConfig(mode=mode, rerank=True, rerank_config=rerank,
                           centre_prior=bench.config.centre_prior)  # fmt: skip
        ious = []
        for name, views in bench.query_maps:
            ranking = bench.searcher.search([make_view(*views[0])], cfg)  # boxes of all top K
            for i, box in ranking.boxes.items():
                key = (name, bench.names[i])
                if key in truth:
                    ious.append(_iou(box, truth[key]))
        ious = np.array(ious)
        rows.append(
            {
                "stage": f"{mode.upper()} + R",
                "positives_reranked": int(ious.size),
                "mean_iou": float(ious.mean()) if ious.size else float("nan"),
                "iou_ge_0.3": float((ious >= 0.3).mean()) if ious.size else float("nan"),
                "iou_ge_0.5": float((ious >= 0.5).mean()) if ious.size else float("nan"),
            }
        )
    return rows
