"""Image-to-set datasets: the shared record type, splits, and one entry point for every reader.

Each reader (``beyondvis.data.voc``, ``coco``, ``nuswide``, ``ade20k``, ``miml``,
``jsonl_sets``, and ``food101`` through :func:`read_food101_sets`) returns a :class:`SetSplits`: train / val / test lists of :class:`SetRecord`
(an image path and its labels in the dataset's own order) plus the label vocabulary. Splits
follow the thesis: train/val are carved from the official training data (10% val by default,
deterministic) and the test split is the official val/test set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from beyondvis.errors import BeyondvisError

log = logging.getLogger(__name__)

DATASETS = ("voc", "coco", "nuswide", "ade20k", "miml", "jsonl", "food101")
DEFAULT_FOLDERS = {"miml": "miml_scenes", "food101": "food101_mini"}


class SetDataError(BeyondvisError, ValueError):
    """A dataset file is missing or malformed; the message names the file (and line)."""


@dataclass
class SetRecord:
    """One image and its label set (label order = the annotation's order; no duplicates)."""

    image: str
    labels: list[str]

    def __post_init__(self) -> None:
        self.labels = unique_in_order(self.labels)


@dataclass
class SetSplits:
    """Train / val / test records and the label vocabulary (index = position)."""

    train: list[SetRecord]
    val: list[SetRecord]
    test: list[SetRecord]
    vocab: list[str]
    name: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. how many unknown labels were dropped

    def split(self, name: str) -> list[SetRecord]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {name!r}")
        return getattr(self, name)

    def summary(self) -> dict[str, object]:
        """Sizes, vocabulary size and cardinality mean/std per split (the thesis' Table 5.2)."""
        out: dict[str, object] = {"name": self.name, "num_labels": len(self.vocab)}
        for split in ("train", "val", "test"):
            cards = np.array([len(r.labels) for r in self.split(split)], dtype=float)
            out[split] = {
                "images": len(cards),
                "card_mean": float(cards.mean()) if len(cards) else 0.0,
                "card_std": float(cards.std()) if len(cards) else 0.0,
                "empty": int((cards == 0).sum()),
            }
        return out


def unique_in_order(labels: Iterable[str]) -> list[str]:
    """Drop repeated labels, keeping the first occurrence (a set has no duplicates)."""
    seen: set[str] = set()
    out = []
    for label in labels:
        if label not in seen:
            seen.add(label)
            out.append(label)
    return out


def split_train_val(
    records: Sequence[SetRecord], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[SetRecord], list[SetRecord]]:
    """Deterministic split: records sorted by image path, permuted with ``seed``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(records, key=lambda r: r.image)
    order = np.random.RandomState(seed).permutation(len(ordered))
    n_val = int(round(len(ordered) * val_fraction))
    val_ids = set(order[:n_val].tolist())
    train = [r for i, r in enumerate(ordered) if i not in val_ids]
    val = [r for i, r in enumerate(ordered) if i in val_ids]
    return train, val


def restrict_to_vocab(
    records: Sequence[SetRecord], vocab: Sequence[str], where: str, notes: list[str]
) -> list[SetRecord]:
    """Drop labels outside ``vocab`` (counted in ``notes``), keeping every image."""
    known = set(vocab)
    dropped = 0
    out = []
    for record in records:
        labels = [label for label in record.labels if label in known]
        dropped += len(record.labels) - len(labels)
        out.append(SetRecord(record.image, labels))
    if dropped:
        message = f"{where}: dropped {dropped} label occurrence(s) outside the vocabulary"
        log.warning(message)
        notes.append(message)
    return out


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise SetDataError(f"{what} not found: {path}")
    return path


def load_set_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    **kwargs: object,
) -> SetSplits:
    """Read dataset ``name`` (one of :data:`DATASETS`) from ``root`` in its official layout.

    ``root=None`` uses ``$BEYONDVIS_DATA/<default folder>`` (``miml_scenes`` for MIML).
    ``kwargs`` go to the reader (e.g. ``train=``/``val=``/``test=`` files for JSONL).
    """
    if name not in DATASETS:
        raise SetDataError(f"unknown set dataset {name!r}; known: {', '.join(DATASETS)}")
    if root is None and name != "jsonl":
        from beyondvis.utils import shared_data_root

        folder = DEFAULT_FOLDERS.get(name, name)
        found = shared_data_root(folder)
        if found is None:
            raise SetDataError(
                f"no root given for {name!r} and $BEYONDVIS_DATA/{folder} does not exist"
            )
        root = found
    common = {"val_fraction": val_fraction, "split_seed": split_seed}
    if name == "voc":
        from beyondvis.data.voc import read_voc2007

        return read_voc2007(root, **common, **kwargs)  # type: ignore[arg-type]
    if name == "coco":
        from beyondvis.data.coco import read_coco2014

        return read_coco2014(root, **common, **kwargs)  # type: ignore[arg-type]
    if name == "nuswide":
        from beyondvis.data.nuswide import read_nuswide

        return read_nuswide(root, **common, **kwargs)  # type: ignore[arg-type]
    if name == "ade20k":
        from beyondvis.data.ade20k import read_ade20k

        return read_ade20k(root, **common, **kwargs)  # type: ignore[arg-type]
    if name == "miml":
        from beyondvis.data.miml import read_miml

        return read_miml(root, **common, **kwargs)  # type: ignore[arg-type]
    if name == "food101":
        return read_food101_sets(root, **common, **kwargs)  # type: ignore[arg-type]
    from beyondvis.data.jsonl_sets import read_jsonl_splits

    return read_jsonl_splits(root=root, **common, **kwargs)  # type: ignore[arg-type]


def read_food101_sets(
    root: str | os.PathLike, *, val_fraction: float = 0.1, split_seed: int = 0
) -> SetSplits:
    """Food-101 (official layout, ``beyondvis.data.food101``) as a single-label set task.

    Every photo's set is its one dish label (the lower-cased ``labels.txt`` text, e.g.
    ``apple pie``); the vocabulary is the class list in ``classes.txt`` order. Train/val are
    carved from ``meta/train.txt`` (``val_fraction``, deterministic), test is ``meta/test.txt``.
    Entries the reader skips (bad lines, missing files, duplicates) are counted in ``notes``.
    """
    from beyondvis.data.food101 import Food101Error, load_food101

    try:
        parts = {split: load_food101(root, split) for split in ("train", "test")}
    except Food101Error as exc:
        raise SetDataError(str(exc)) from None
    notes = [f"{split}: {part.report.summary()}" for split, part in parts.items()]
    for split, part in parts.items():
        if part.report.skipped:
            log.warning("Food-101 %s", notes[0 if split == "train" else 1])
    records = {
        split: [SetRecord(str(item.path), [item.label]) for item in part.items]
        for split, part in parts.items()
    }
    if not records["train"]:
        raise SetDataError(f"{root}: the Food-101 training split has no readable entries")
    train, val = split_train_val(records["train"], val_fraction, split_seed)
    return SetSplits(
        train=train,
        val=val,
        test=records["test"],
        vocab=list(parts["train"].labels),
        name="food101",
        notes=notes,
    )
