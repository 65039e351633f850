"""Instance search with object-detector features (thesis chapter 3, Faster R-CNN).

:class:`DetectorIndex` has the methods of :class:`~beyondvis.retrieval.BLCFIndex`::

    >>> from beyondvis.retrieval.detector import DetectorIndex, DetectorConfig, queries_from_gt
    >>> index = DetectorIndex(DetectorConfig(max_side=320))
    >>> index.train(photos, queries=queries_from_gt("bench"), finetune_mode="all")
    >>> index.add(photos); index.save("idx")
    >>> hits = DetectorIndex.load("idx").search("q.jpg", box=(40, 60, 200, 300))

IPA filtering, CA-SR / CS-SR spatial reranking and query expansion are chosen per search with
:class:`DetectorSearchConfig`; :class:`DetectorBenchmark` reproduces Tables 3.1-3.3 on an
Oxford-format benchmark. Names load on first use (torch, torchvision).
"""

from __future__ import annotations

from beyondvis.utils import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        (
            "KINDS",
            "Postprocess",
            "pool_box",
            "pool_boxes",
            "pool_map",
            "pool_rois",
            "warp_box",
            "warp_boxes",
            "cells_to_pixels",
        ),
        ".pooling",
    ),  # fmt: skip
    **dict.fromkeys(("DetectorConfig", "DetectorNet", "build_detector"), ".model"),
    **dict.fromkeys(
        ("FinetuneConfig", "QueryObject", "query_class_scores", "queries_from_gt"), ".finetune"
    ),
    # not "finetune": that is the submodule's name, which its import sets on the package
    "finetune_detector": ".finetune:finetune",
    **dict.fromkeys(
        ("DetectorIndex", "DetectorSearchConfig", "is_detector_index", "read_detector_manifest"),
        ".index",
    ),
    **dict.fromkeys(
        (
            "NETWORKS",
            "DetectorBenchmark",
            "detector_tables",
            "detector_table_text",
            "evaluate_detector",
        ),
        ".benchmark",
    ),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = list(_EXPORTS)
