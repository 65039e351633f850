"""Images and instance masks for RSIS: joint augmentation, square resizing, batching.

The thesis resizes every image to a fixed square (500x500 CVPPP, 256x256 VOC) and augments
image and masks with the same random rotation, translation (10%), shear (10%), zoom (0.7-1.5)
and horizontal flip. ``ViewDataset`` gives item ``i = record * views + v``: view 0 is the
plain resized image, views 1.. are augmented with an RNG seeded by ``(seed, record, v)``, so a
view is the same image every time it is built (which lets the frozen-encoder path cache the
features of every view once and still see augmented data).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from beyondvis.data.instance_seg import (
    InstanceRecord,
    read_annotation,
    read_instances,
    relabel,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class AugmentConfig:
    """Joint image+mask augmentation (thesis values; rotation 180 for CVPPP, 10 otherwise)."""

    views: int = 8  # frozen-encoder path: cached copies per training image (view 0 = original)
    rotation: float = 180.0  # degrees, uniform in [-r, r]
    translate: float = 0.1  # fraction of width / height
    shear: float = 0.1  # shear factor (0.1 ~ 5.7 degrees)
    zoom: list[float] = dataclasses.field(default_factory=lambda: [0.7, 1.5])
    flip: float = 0.5  # horizontal flip probability

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError(f"augment.views must be >= 1, got {self.views}")
        if len(self.zoom) != 2 or not 0 < self.zoom[0] <= self.zoom[1]:
            raise ValueError(
                f"augment.zoom must be [low, high] with 0 < low <= high, got {self.zoom}"
            )


def sample_affine(rng: np.random.Generator, aug: AugmentConfig, size: int) -> dict[str, Any]:
    return {
        "angle": float(rng.uniform(-aug.rotation, aug.rotation)),
        "translate": [
            int(round(rng.uniform(-aug.translate, aug.translate) * size)),
            int(round(rng.uniform(-aug.translate, aug.translate) * size)),
        ],
        "scale": float(math.exp(rng.uniform(math.log(aug.zoom[0]), math.log(aug.zoom[1])))),
        "shear": [float(math.degrees(math.atan(rng.uniform(-aug.shear, aug.shear)))), 0.0],
        "flip": bool(rng.random() < aug.flip),
    }


def resize_pair(
    image: Image.Image | None, labels_map: np.ndarray, size: int
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Square resize: image bilinear -> (3, S, S) float in [0, 1]; labels nearest -> (S, S)."""
    img = None
    if image is not None:
        img = TF.to_tensor(image.resize((size, size), Image.BILINEAR))
    lab = torch.from_numpy(labels_map.astype(np.int64))[None, None].float()
    lab = F.interpolate(lab, size=(size, size), mode="nearest")[0, 0].long()
    return img, lab


def apply_affine(
    image: torch.Tensor | None, labels: torch.Tensor, params: dict[str, Any]
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The same affine warp on the image (bilinear) and the label map (nearest)."""
    kw = {k: params[k] for k in ("angle", "translate", "scale", "shear")}
    if image is not None:
        image = TF.affine(image, interpolation=InterpolationMode.BILINEAR, fill=0.0, **kw)
        if params["flip"]:
            image = image.flip(-1)
    lab = TF.affine(labels[None].float(), interpolation=InterpolationMode.NEAREST, fill=0.0, **kw)
    lab = lab[0].round().long()
    if params["flip"]:
        lab = lab.flip(-1)
    return image, lab


def normalize(
    image: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> torch.Tensor:
    m = torch.tensor(mean, dtype=image.dtype)[:, None, None]
    s = torch.tensor(std, dtype=image.dtype)[:, None, None]
    return (image - m) / s


def compact(labels: torch.Tensor, classes: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Drop objects that the warp pushed out of the frame; renumber the rest 1..N."""
    lab_np, values = relabel(labels.numpy())
    kept = classes[values.astype(np.int64) - 1] if len(values) else classes[:0]
    return torch.from_numpy(lab_np.astype(np.int64)), kept


class ViewDataset(Dataset):
    """Item ``i``: view ``i % views`` of record ``i // views`` at ``size`` x ``size``.

    Returns ``(image (3, S, S) normalised, labels (S, S) long, classes (N,) long)``; with
    ``images=False`` only the annotation is read and ``image`` is None (for building targets
    without decoding photos). ``augment=None`` gives one plain view per record.
    """

    def __init__(
        self,
        records: Sequence[InstanceRecord],
        size: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        images: bool = True,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
    ) -> None:
        self.records = list(records)
        self.size = size
        self.augment = augment
        self.views = augment.views if augment is not None else 1
        self.seed = seed
        self.images = images
        self.mean, self.std = tuple(mean), tuple(std)
        self.item_ids = [f"{r.item_id}#v{v}" for r in self.records for v in range(self.views)]
        # Part of the feature-cache fingerprint: a change of view settings must recompute.
        self.transform = f"ViewDataset(size={size}, augment={augment}, seed={seed}, mean={self.mean}, std={self.std})"

    def __len__(self) -> int:
        return len(self.records) * self.views

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        r, v = divmod(index, self.views)
        record = self.records[r]
        if self.images:
            sample = read_instances(record)
            image, labels_map, classes = sample.image, sample.labels_map, sample.classes
        else:
            image = None
            labels_map, classes = read_annotation(record)
        img, lab = resize_pair(image, labels_map, self.size)
        if self.augment is not None and v > 0:
            rng = np.random.default_rng([self.seed, r, v])
            img, lab = apply_affine(img, lab, sample_affine(rng, self.augment, self.size))
            lab, classes = compact(lab, classes)
        if img is not None:
            img = normalize(img, self.mean, self.std)
        return img, lab, torch.as_tensor(classes, dtype=torch.long)


def boxes_from_labels(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Normalised ``x0, y0, x1, y1`` of objects 1..count of a label map (S, S)."""
    h, w = labels.shape
    out = torch.zeros(count, 4)
    for k in range(count):
        ys, xs = torch.nonzero(labels == k + 1, as_tuple=True)
        if len(xs):
            out[k] = torch.tensor(
                [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]
            )
    return out


@dataclasses.dataclass
class RSISBatch:
    """A padded batch; ``inputs`` is an image tensor or the list of five feature maps."""

    inputs: Any
    masks: torch.Tensor  # (B, N, S, S) float 0/1
    counts: torch.Tensor  # (B,)
    boxes: torch.Tensor  # (B, N, 4)
    labels: torch.Tensor  # (B, N)


def collate_targets(
    labels: Sequence[torch.Tensor], classes: Sequence[torch.Tensor]
) -> dict[str, torch.Tensor]:
    counts = torch.tensor([len(c) for c in classes], dtype=torch.long)
    n = max(1, int(counts.max()) if len(counts) else 1)
    b = len(labels)
    h, w = labels[0].shape
    masks = torch.zeros(b, n, h, w)
    boxes = torch.zeros(b, n, 4)
    cls = torch.zeros(b, n, dtype=torch.long)
    ids = torch.arange(1, n + 1)[:, None, None]
    for i, (lab, c) in enumerate(zip(labels, classes, strict=True)):
        k = len(c)
        if k:
            masks[i, :k] = (lab[None] == ids[:k]).float()
            boxes[i, :k] = boxes_from_labels(lab, k)
            cls[i, :k] = c
    return {"masks": masks, "counts": counts, "boxes": boxes, "labels": cls}


def collate_views(items: Sequence[tuple[Any, torch.Tensor, torch.Tensor]]) -> RSISBatch:
    """Batch ``ViewDataset`` items (images) or cached items (lists of feature maps)."""
    first = items[0][0]
    if isinstance(first, torch.Tensor):
        inputs: Any = torch.stack([it[0] for it in items])
    else:
        inputs = [torch.stack([it[0][j] for it in items]) for j in range(len(first))]
    t = collate_targets([it[1] for it in items], [it[2] for it in items])
    return RSISBatch(inputs, t["masks"], t["counts"], t["boxes"], t["labels"])
