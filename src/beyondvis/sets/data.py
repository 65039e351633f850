"""Label sets -> training tensors, image augmentation, and the datasets the trainer consumes.

A training item is a dict::

    inputs    cached feature map (C, h, w) / pooled vector (C,), or an image (3, H, W)
    targets   multi-hot (N,) float
    card      set size (clamped to max_set_size)
    sequence  label ids in dataset order (or freshly shuffled), padded with -1 to max_set_size
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from beyondvis.data.sets_readers import SetRecord
from beyondvis.io import ImageLoadError, load_image

log = logging.getLogger(__name__)


class LabelEncoder:
    """Maps label names to ids and builds the target tensors of one set."""

    def __init__(self, vocab: Sequence[str], max_set_size: int) -> None:
        if len(set(vocab)) != len(vocab):
            raise ValueError("the label vocabulary has duplicates")
        if max_set_size < 1:
            raise ValueError(f"max_set_size must be >= 1, got {max_set_size}")
        self.vocab = list(vocab)
        self.index = {label: i for i, label in enumerate(self.vocab)}
        self.max_set_size = max_set_size

    @property
    def num_labels(self) -> int:
        return len(self.vocab)

    def ids(self, labels: Sequence[str]) -> list[int]:
        unknown = [label for label in labels if label not in self.index]
        if unknown:
            raise KeyError(f"labels not in the vocabulary: {unknown[:5]}")
        return [self.index[label] for label in labels]

    def encode(
        self, ids: Sequence[int], shuffle: bool = False, full_targets: bool = False
    ) -> dict[str, torch.Tensor]:
        """Target tensors of one set.

        Sets larger than ``max_set_size`` are truncated consistently in every representation
        for training; ``full_targets`` keeps the whole set in ``targets`` (evaluation must
        score against the true set, not its truncation).
        """
        ids = list(dict.fromkeys(ids))  # sets: no repeats, first occurrence kept
        if shuffle:
            # Uses the global RNG, which the engine seeds per (seed, epoch, item): every load
            # of an image sees a new order, yet a resumed run sees the same orders.
            random.shuffle(ids)
        targets = torch.zeros(self.num_labels)
        if full_targets and ids:
            targets[ids] = 1.0
        ids = ids[: self.max_set_size]
        if ids and not full_targets:
            targets[ids] = 1.0
        sequence = torch.full((self.max_set_size,), -1, dtype=torch.long)
        sequence[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return {"targets": targets, "card": torch.tensor(len(ids)), "sequence": sequence}

    def decode(self, multihot: torch.Tensor) -> list[str]:
        return [self.vocab[i] for i in torch.nonzero(multihot).flatten().tolist()]


def cardinality_histogram(label_ids: Sequence[Sequence[int]], max_set_size: int) -> torch.Tensor:
    """Counts of set sizes 0..max_set_size (larger sets counted at max_set_size)."""
    counts = torch.zeros(max_set_size + 1)
    for ids in label_ids:
        counts[min(len(set(ids)), max_set_size)] += 1
    return counts


class SetItems(Dataset):
    """Wraps a dataset of ``(inputs, label_ids)`` pairs into training dicts."""

    def __init__(
        self,
        base: Dataset,
        encoder: LabelEncoder,
        shuffle_labels: bool = False,
        full_targets: bool = False,
    ) -> None:
        self.base = base
        self.encoder = encoder
        self.shuffle_labels = shuffle_labels
        self.full_targets = full_targets  # evaluation: targets are never truncated

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        if isinstance(item, dict) and "error" in item:
            return item  # a bad image: collate_sets drops and reports it
        inputs, ids = item
        encoded = self.encoder.encode(ids, self.shuffle_labels, self.full_targets)
        return {"inputs": inputs, **encoded}


class MultiViewDataset(Dataset):
    """Several cached views of the same items; every load picks one view at random.

    The fast path's augmentation: view 0 is the plain (eval) view, views 1.. are augmented
    crops cached once. The choice uses the global RNG, which the engine seeds per
    (seed, epoch, item), so a resumed run sees the same views.
    """

    def __init__(self, views: Sequence[Dataset]) -> None:
        if not views:
            raise ValueError("need at least one view")
        sizes = {len(v) for v in views}  # type: ignore[arg-type]
        if len(sizes) != 1:
            raise ValueError(f"the views have different lengths {sorted(sizes)}")
        self.views = list(views)

    def __len__(self) -> int:
        return len(self.views[0])  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.views[random.randrange(len(self.views))][index]


class SeededImages(Dataset):
    """``ImageListDataset`` whose random transform is seeded per (seed, item): a reproducible
    augmented view of every image, so a cached view is a fixed function of its seed."""

    def __init__(self, paths: Sequence[str], transform: Callable[[Any], torch.Tensor], seed: int):
        from beyondvis.io import ImageListDataset

        self.images = ImageListDataset(paths, transform=transform)
        self.transform = transform  # part of the feature-cache fingerprint
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        from beyondvis.engine.seeding import item_rng, item_seed

        with item_rng(item_seed(self.seed, 0, index)):
            return self.images[index]


class ImageSetDataset(Dataset):
    """Images of records (loaded safely) with their label ids: the full, fine-tuning path."""

    def __init__(
        self,
        records: Sequence[SetRecord],
        encoder: LabelEncoder,
        transform: Callable[[Any], torch.Tensor],
    ) -> None:
        self.records = list(records)
        self.label_ids = [encoder.ids(r.labels) for r in self.records]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Any:
        path = self.records[index].image
        try:
            image = load_image(path)
        except ImageLoadError as exc:
            return {"index": index, "path": path, "error": exc.reason}
        return self.transform(image), self.label_ids[index]


def collate_sets(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack good items; bad images (dicts with "error") are dropped with a warning."""
    good = [it for it in items if "error" not in it]
    for bad in items:
        if "error" in bad:
            log.warning("skipped %s: %s", bad["path"], bad["error"])
    if not good:
        raise RuntimeError(
            "every image of this batch failed to load: "
            + ", ".join(f"{b['path']} ({b['error']})" for b in items)
        )
    return {key: torch.stack([it[key] for it in good]) for key in good[0]}


AUGMENTATIONS = ("thesis", "rrc", "none")


def _resize(size: int | tuple[int, int], mode: str):
    from torchvision import transforms as T

    if mode == "full":
        side = size if isinstance(size, int) else size[0]
        return T.Resize((side, side), antialias=True)
    return T.Resize(size, antialias=True)


def eval_transform(backbone: Any, size: int, resize: str = "crop") -> Callable[[Any], torch.Tensor]:
    """The plain view: the backbone's centre crop (``crop``) or the whole image (``full``)."""
    if resize == "crop":
        return backbone.transform(size=size)
    from torchvision import transforms as T

    pre = backbone.preprocess
    return T.Compose([_resize(size, "full"), T.ToTensor(), T.Normalize(pre.mean, pre.std)])


def augmentation(
    kind: str,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    resize: str = "crop",
) -> Callable[[Any], torch.Tensor]:
    """Training augmentation ``kind`` (one of :data:`AUGMENTATIONS`).

    thesis: resize (short side to size/0.875, or the whole image to a square for
    ``resize="full"``), random crop, flip, +-10% translation, +-10 deg rotation. rrc: random
    resized crop (35-100% of the area), flip, colour jitter. none: the plain view.
    """
    from torchvision import transforms as T

    if kind == "thesis":
        return train_transform(input_size, mean, std, full=resize == "full")
    if kind == "rrc":
        return T.Compose(
            [
                T.RandomResizedCrop(input_size, scale=(0.35, 1.0), antialias=True),
                T.RandomHorizontalFlip(0.5),
                T.ColorJitter(0.3, 0.3, 0.3),
                T.ToTensor(),
                T.Normalize(mean, std),
            ]
        )
    if kind == "none":
        return T.Compose(
            [
                _resize(input_size if resize == "full" else int(round(input_size / 0.875)), resize),
                *([] if resize == "full" else [T.CenterCrop(input_size)]),
                T.ToTensor(),
                T.Normalize(mean, std),
            ]
        )
    raise ValueError(f"unknown augmentation {kind!r}; known: {AUGMENTATIONS}")


def train_transform(
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    resize: int | None = None,
    full: bool = False,
) -> Callable[[Any], torch.Tensor]:
    """The thesis' augmentation: resize, random crop, flip, +-10% translation, +-10 deg rotation.

    ``full``: the whole image is resized to a square first (nothing of a wide image is lost
    beyond the random crop's margin)."""
    from torchvision import transforms as T

    side = resize or int(round(input_size / 0.875))
    return T.Compose(
        [
            _resize(side, "full" if full else "crop"),
            T.RandomCrop(input_size),
            T.RandomHorizontalFlip(0.5),
            T.RandomAffine(degrees=10, translate=(0.1, 0.1)),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
