"""Instance search with bags of local convolutional features (BLCF, thesis chapters 2-3).

One object, :class:`BLCFIndex`, trains, fills, searches, saves, loads and merges an index
(as a FAISS index does)::

    >>> from beyondvis.retrieval import create_index, list_index_methods
    >>> list_index_methods()
    ['blcf', 'blcf.generic']
    >>> index = create_index("blcf.generic")        # the shipped codebook: no k-means
    >>> index.add(["a.jpg", "b.jpg"])
    >>> index.save("idx")
    >>> hits = BLCFIndex.load("idx").search("query.jpg", box=(40, 60, 200, 300))

``SearchConfig`` chooses global / local / weighted search, reranking and query expansion;
``InstanceBenchmark`` and the ``*_table`` functions reproduce the thesis tables. Names load on
first use (the feature extractor imports torch).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from beyondvis.utils import lazy_exports


def list_index_methods() -> list[str]:
    """Names :func:`create_index` builds: ``blcf`` (a codebook fitted on your photos with
    ``index.train``), ``blcf.<name>`` for each codebook shipped in the package, and ``frcnn``
    (Faster R-CNN IPA/RPA features, :class:`DetectorIndex`, thesis chapter 3)."""
    from beyondvis.retrieval.index import SHIPPED

    return ["blcf", *(f"blcf.{name}" for name in SHIPPED), "frcnn"]


def create_index(method: str = "blcf.generic", device: str = "cpu", **config: Any) -> Any:
    """An empty :class:`BLCFIndex` built by ``method`` (see :func:`list_index_methods`).

    ``config`` sets :class:`IndexConfig` fields (``codebook_size=4096``, ``tfidf=False``) and
    :class:`FeatureConfig` fields (``backbone="resnet50"``, ``max_side=512``) by name. A shipped
    codebook keeps its backbone, level, size and PCA; the other settings may change.
    """
    from beyondvis.retrieval.features import FeatureConfig
    from beyondvis.retrieval.index import BLCFIndex, IndexConfig, shipped_model

    methods = list_index_methods()
    if method not in methods:
        raise ValueError(f"unknown index method {method!r}; known: {', '.join(methods)}")
    if method == "frcnn":  # ``config`` sets DetectorConfig fields (backbone, max_side, ...)
        from beyondvis.retrieval.detector import DetectorConfig, DetectorIndex

        return DetectorIndex(DetectorConfig(**config), device=device)
    index_fields = {f.name for f in dataclasses.fields(IndexConfig)} - {"features"}
    feature_fields = {f.name for f in dataclasses.fields(FeatureConfig)}
    unknown = sorted(set(config) - index_fields - feature_fields)
    if unknown:
        known = sorted(index_fields | feature_fields)
        raise TypeError(f"unknown index setting(s) {unknown}; known: {', '.join(known)}")
    model = shipped_model(method.split(".", 1)[1]) if "." in method else None
    base = model.config if model is not None else IndexConfig()
    features = dataclasses.replace(
        base.features, **{k: v for k, v in config.items() if k in feature_fields}
    )
    cfg = dataclasses.replace(
        base, features=features, **{k: v for k, v in config.items() if k in index_fields}
    )
    return BLCFIndex(cfg, model=model, device=device)


_EXPORTS = {
    **dict.fromkeys(
        (
            "MANIFEST",
            "SHIPPED",
            "BLCFIndex",
            "IndexConfig",
            "IndexFormatError",
            "Model",
            "SearchHit",
            "folder_lock",
            "load_model_only",
            "read_manifest",
            "save_model_only",
            "shipped_model",
        ),
        ".index",
    ),
    "BackboneMismatchError": ".features",
    "FeatureConfig": ".features",
    "SearchConfig": ".search",
    "BLCFSearcher": ".search",
    "RerankConfig": ".rerank",
    **dict.fromkeys(
        ("InstanceBenchmark", "localisation_table", "pooling_table", "stage_table"), ".benchmark"
    ),
    **dict.fromkeys(
        ("average_precision", "mean_average_precision", "revisited_ap", "revisited_map"),
        ".evaluate",
    ),
    **dict.fromkeys(
        (
            "BUILD_SETTINGS",
            "AddReport",
            "BuildSettingsError",
            "IndexExistsError",
            "add_to_detector_folder",
            "add_to_index_folder",
            "build_detector_folder",
            "build_index_folder",
            "build_settings",
            "check_build_settings",
            "check_no_index",
            "merge_index_folders",
        ),
        ".build",
    ),
    **dict.fromkeys(
        (
            "GRID_MAX",
            "QueryRegionError",
            "QueryResult",
            "clamp_box",
            "region_mask",
            "search_detector_photo",
            "search_photo",
        ),
        ".query",
    ),
    "evaluate_blcf": ".evaluation",
    "check_evaluation_tables": ".evaluation:check_tables",
    "blcf_table_text": ".evaluation:table_text",
    "render_grid": ".visualize",
    "render_html": ".visualize",
    **{
        name: f".detector:{name}"
        for name in (
            "DetectorIndex",
            "DetectorConfig",
            "DetectorSearchConfig",
            "FinetuneConfig",
            "QueryObject",
            "queries_from_gt",
            "DetectorBenchmark",
            "is_detector_index",
            "read_detector_manifest",
            "evaluate_detector",
            "detector_table_text",
            "NETWORKS",
        )
    },
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["create_index", "list_index_methods", *_EXPORTS]
