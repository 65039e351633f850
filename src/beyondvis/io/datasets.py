"""A dataset over image paths whose bad items travel as errors, and a collate that drops them.

Loading happens in DataLoader workers, so a dataset cannot simply record failures on itself;
instead each item carries either a tensor or an error, and :func:`collate_images` splits them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from beyondvis.io.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from beyondvis.io.walk import BadImage


class ImageListDataset(Dataset):
    """Items are ``{"index", "path", "image"}`` or ``{"index", "path", "error"}``."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        transform: Callable[[Any], torch.Tensor] | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        try:
            image = load_image(path, max_pixels=self.max_pixels)
        except ImageLoadError as exc:
            return {"index": index, "path": path, "error": exc.reason}
        if self.transform is not None:
            image = self.transform(image)
        return {"index": index, "path": path, "image": image}


@dataclass
class ImageBatch:
    images: torch.Tensor | list[Any] | None
    indices: list[int]
    paths: list[str]
    errors: list[BadImage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)


def collate_images(items: list[dict[str, Any]]) -> ImageBatch:
    """Stack the good images (tensors of one size) and list the bad ones."""
    good = [it for it in items if "error" not in it]
    errors = [BadImage(it["path"], it["error"]) for it in items if "error" in it]
    images: torch.Tensor | list[Any] | None = None
    if good:
        first = good[0]["image"]
        if isinstance(first, torch.Tensor) and all(it["image"].shape == first.shape for it in good):
            images = torch.stack([it["image"] for it in good])
        else:
            images = [it["image"] for it in good]
    return ImageBatch(
        images=images,
        indices=[it["index"] for it in good],
        paths=[it["path"] for it in good],
        errors=errors,
    )
