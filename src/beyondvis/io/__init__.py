"""Safe image loading used everywhere in beyondvis, and folder walkers that skip bad files."""

from __future__ import annotations

from beyondvis.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    load_image,
    load_image_array,
)
from beyondvis.io.walk import BadImage, ScanReport, iter_image_paths, scan_images
from beyondvis.utils import lazy_exports

# The dataset helpers import torch; load them on first use so that loading an image (e.g. in
# the ONNX Runtime ``cook`` path) does not pay for importing torch.
_EXPORTS = dict.fromkeys(("ImageBatch", "ImageListDataset", "collate_images"), ".datasets")
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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
