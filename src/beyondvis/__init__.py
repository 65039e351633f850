"""beyondvis: image understanding through language.

Each system's small public API is re-exported here, with ``list_*`` / ``create_*`` factories
in the style of timm and open_clip::

    >>> import beyondvis
    >>> beyondvis.list_backbones(), beyondvis.list_set_models(), beyondvis.list_index_methods()
    >>> backbone = beyondvis.create_backbone("efficientnet_lite0")
    >>> index = beyondvis.create_index("blcf.generic")

The full API of each system is in its package (``beyondvis.sets``, ``beyondvis.retrieval``,
...) and in docs/api.md. Names load on first use, so ``import beyondvis`` and
``beyondvis --help`` do not import torch.
"""

from __future__ import annotations

from beyondvis.utils import lazy_exports

__version__ = "0.1.0"

# name -> the public package (or top-level module) that exports it
_EXPORTS = {
    # image backbones and safe image loading
    **dict.fromkeys(
        ("DEFAULT_BACKBONE", "FeatureExtractor", "create_backbone", "list_backbones"),
        "beyondvis.backbones",
    ),
    **dict.fromkeys(("ImageLoadError", "load_image", "scan_images"), "beyondvis.io"),
    "resolve_device": "beyondvis.device",
    "Registry": "beyondvis.registry",
    # datasets and the training engine
    "list_datasets": "beyondvis.data",
    "load_dataset": "beyondvis.data",
    "load_config": "beyondvis.engine",
    "Trainer": "beyondvis.engine",
    # instance search (ch. 2-3)
    **dict.fromkeys(
        ("BLCFIndex", "DetectorIndex", "create_index", "list_index_methods"), "beyondvis.retrieval"
    ),
    # image-to-set (ch. 5)
    **dict.fromkeys(("create_set_model", "list_set_configs", "list_set_models"), "beyondvis.sets"),
    # recurrent instance segmentation (ch. 6)
    **dict.fromkeys(
        (
            "Segmenter",
            "create_rsis_model",
            "create_segmentation_model",
            "list_rsis_configs",
            "list_segmentation_models",
        ),
        "beyondvis.segmentation",
    ),
    # recipes (ch. 7-9)
    **dict.fromkeys(
        ("list_recipe_models", "load_cook_model", "load_recipe_model"), "beyondvis.recipes"
    ),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["__version__", *_EXPORTS]
