"""Safe image loading used everywhere in beyondvis, and folder walkers that skip bad files."""

from __future__ import annotations

import importlib
from typing import Any

from beyondvis.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    load_image,
    load_image_array,
)
from beyondvis.io.walk import BadImage, ScanReport, iter_image_paths, scan_images

# The dataset helpers import torch; load them on first use so that loading an image (e.g. in
# the ONNX Runtime ``cook`` path) does not pay for importing torch.
_LAZY = {
    name: "beyondvis.io.datasets" for name in ("ImageBatch", "ImageListDataset", "collate_images")
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'beyondvis.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "BadImage",
    "ImageBatch",
    "ImageListDataset",
    "ImageLoadError",
    "ScanReport",
    "collate_images",
    "iter_image_paths",
    "load_image",
    "load_image_array",
    "scan_images",
]
