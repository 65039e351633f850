"""beyondvis: image understanding through language.

The public API is small and re-exported here; heavy submodules load on first use so that
``import beyondvis`` and ``beyondvis --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_LAZY = {
    "create_backbone": "beyondvis.backbones",
    "list_backbones": "beyondvis.backbones",
    "load_image": "beyondvis.io",
    "ImageLoadError": "beyondvis.io",
    "scan_images": "beyondvis.io",
    "resolve_device": "beyondvis.device",
    "Registry": "beyondvis.registry",
    "create_rsis_model": "beyondvis.segmentation",
    "list_rsis_configs": "beyondvis.segmentation",
    "Segmenter": "beyondvis.segmentation",
    "BLCFIndex": "beyondvis.retrieval.index",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'beyondvis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
