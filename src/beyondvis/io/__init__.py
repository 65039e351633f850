"""Safe image loading used everywhere in beyondvis, and folder walkers that skip bad files."""

from beyondvis.io.datasets import ImageBatch, ImageListDataset, collate_images
from beyondvis.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    load_image,
    load_image_array,
)
from beyondvis.io.walk import BadImage, ScanReport, iter_image_paths, scan_images

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
