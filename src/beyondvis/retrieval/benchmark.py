"""Thesis-style experiments on an Oxford-format benchmark (e.g. ``beyondvis data make-instances``).

Local features of every database photo and every (augmented) query view are extracted once
into the engine's feature cache (ragged layout: each map keeps its photo's aspect ratio; the
photo size rides along as per-item info), which resumes a killed extraction, skips unreadable
photos with a reason and checks its checksums on open. The codebook, the BoW stages and the
pooling baselines then run on the cache, so trying a search variant costs seconds, not a
backbone pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from beyondvis.data.oxford import read_gt_files
from beyondvis.engine.features import FeatureCache, cache_features
from beyondvis.io import ImageListDataset, ImageLoadError, iter_image_paths, load_image
from beyondvis.retrieval.bow import box_mask, distance_weights
from beyondvis.retrieval.evaluate import mean_average_precision
from beyondvis.retrieval.features import LocalFeatureExtractor
from beyondvis.retrieval.index import BLCFIndex, IndexConfig, Model
from beyondvis.retrieval.pooling import POOLINGS, DenseIndex, PCAWhitening
from beyondvis.retrieval.rerank import RerankConfig
from beyondvis.retrieval.search import BLCFSearcher, SearchConfig, augment_query, make_view

log = logging.getLogger(__name__)


def _cache_key(config: IndexConfig) -> str:
    text = json.dumps(asdict(config.features), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


FEATURES_SOURCE = "blcf-local-features"


def _photo_size(item: dict) -> tuple[int, int]:
    """Per-item info stored next to each map: the (width, height) it was computed from."""
    return item["image"].size


class _QueryViews(Dataset):
    """Item k is one augmented view (original, flip, zoom; thesis Sec. 2.3.2) of a query photo.

    Views of one photo are consecutive, and the last photo's views are kept, so each query
    photo is decoded once more than the count needs, not once per view.
    """

    def __init__(self, bench: InstanceBenchmark) -> None:
        self.views: list[tuple[Path, tuple[float, ...] | None, int]] = []
        self.item_ids: list[str] = []
        for q in bench.queries:
            path = bench.query_path(q.image)
            blank = load_image_size_stub(load_image(path).size)
            for v in range(len(augment_query(blank, q.box))):
                self.views.append((path, q.box, v))
                self.item_ids.append(f"{q.name}#{v}")
        self._last: tuple[Path | None, list] = (None, [])

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, k: int) -> dict:
        path, box, v = self.views[k]
        if self._last[0] != path:
            self._last = (path, augment_query(load_image(path), box))
        image = self._last[1][v][0]
        return {"image": image}


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
        self._database: tuple[list[str], list[np.ndarray], np.ndarray] | None = None
        self._query_items: list[QueryItem] | None = None

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
    def _maps(self, images: list) -> list[np.ndarray]:
        """The cache's source: (h, w, D) local features of each photo (the extractor and its
        backbone load only when a photo has to be computed)."""
        return [self.extractor(image) for image in images]

    def _cached(self, dataset: Dataset, folder: str, item_ids: list[str]) -> FeatureCache:
        # one folder per item list: photos added to the benchmark get a fresh cache instead of
        # a refusal to write into the old one (whose fingerprint no longer matches)
        digest = hashlib.sha256("\n".join(item_ids).encode()).hexdigest()[:10]
        cache = cache_features(
            self._maps,
            dataset,
            self.cache / f"{folder}-{digest}",
            name=FEATURES_SOURCE,
            # photos go through the extractor one by one anyway; a batch only sets how often the
            # cache syncs its progress to disk (a kill loses at most this many photos)
            batch_size=16,
            dtype="float16",
            device=self.device,
            item_ids=item_ids,
            fingerprint_extra=asdict(self.config.features),
            ragged=True,
            info_fn=_photo_size,
        )
        for entry in cache.skipped:
            log.warning("skipped %s: %s", entry["id"], entry["reason"])
        return cache

    @staticmethod
    def _read(cache: FeatureCache) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        feats = [cache.array(i).astype(np.float32) for i in range(len(cache))]
        info = cache.info if cache.info is not None else np.zeros((0, 2))  # always written
        return feats, [(int(w), int(h)) for w, h in info]

    def database(self) -> tuple[list[str], list[np.ndarray], np.ndarray]:
        """Names, (h, w, D) float32 maps and (width, height) of the readable database photos."""
        if self._database is None:
            paths = list(iter_image_paths(self.images_dir))
            # ids relative to the images folder: the cache survives moving the benchmark
            ids = [Path(p).relative_to(self.images_dir).as_posix() for p in paths]
            t0 = time.perf_counter()
            cache = self._cached(ImageListDataset(paths), "database", ids)
            feats, sizes = self._read(cache)
            names = [Path(i).stem for i in cache.item_ids]
            log.info("database features: %d images in %.1fs", len(names), time.perf_counter() - t0)
            self._database = (names, feats, np.array(sizes, np.int32).reshape(-1, 2))
        return self._database

    def query_items(self) -> list[QueryItem]:
        """The queries with their views' maps, sizes and boxes (read once per benchmark)."""
        if self._query_items is None:
            self._query_items = self._read_queries()
        return self._query_items

    def _read_queries(self) -> list[QueryItem]:
        views = _QueryViews(self)
        cache = self._cached(views, "queries", views.item_ids)
        if cache.skipped:
            bad = cache.skipped[0]
            raise ImageLoadError(bad["id"], f"query view unreadable: {bad['reason']}")
        feats, sizes = self._read(cache)
        by_name = dict(zip(cache.item_ids, zip(feats, sizes)))
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
