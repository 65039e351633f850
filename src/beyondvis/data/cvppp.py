"""CVPPP Leaf Segmentation Challenge, subset A1 (Arabidopsis), in the official layout.

Layout (``root`` holds the files, as in ``../shared/data/cvppp_a1``)::

    plantNNN_rgb.png     the photo (RGBA in the release; composited on white when loaded)
    plantNNN_label.png   palette PNG: 0 = background, k = leaf k
    plantNNN_fg.png      foreground mask (not needed here)
    A1.csv               "plantNNN_rgb.png, <leaf count>" (checked against the labels if present)

The release has no test labels, so the split is a deterministic permutation of the labelled
plants (default 25% test, 10% validation, the rest train; the thesis trains on 128 A1 images
and tests on 33).
"""

from __future__ import annotations

import os
from pathlib import Path

from beyondvis.data.instance_seg import (
    InstanceDataError,
    InstanceSplits,
    label_png_records,
    split_records,
)


def read_cvppp(
    root: str | os.PathLike,
    test_fraction: float = 0.25,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> InstanceSplits:
    root = Path(root)
    if not root.is_dir():
        raise InstanceDataError(f"CVPPP folder not found: {root}")
    if (root / "A1").is_dir() and not list(root.glob("plant*_rgb.png")):
        root = root / "A1"
    pairs = []
    missing = 0
    for image in sorted(root.glob("plant*_rgb.png")):
        stem = image.name[: -len("_rgb.png")]
        label = root / f"{stem}_label.png"
        if not label.is_file():
            missing += 1
            continue
        pairs.append((stem, image, label))
    if not pairs:
        raise InstanceDataError(f"no plantNNN_rgb.png with a plantNNN_label.png in {root}")
    train, val, test = split_records(label_png_records(pairs), test_fraction, val_fraction, seed)
    notes = [f"{len(pairs)} labelled plants"]
    if missing:
        notes.append(f"{missing} photos without a label file skipped")
    return InstanceSplits("cvppp", ["leaf"], train, val, test, notes)


def read_leaf_counts(root: str | os.PathLike) -> dict[str, int]:
    """``A1.csv``: plant id -> leaf count (empty when the file is absent)."""
    path = Path(root) / "A1.csv"
    counts: dict[str, int] = {}
    if not path.is_file():
        return counts
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[1].isdigit():
            counts[parts[0].removesuffix("_rgb.png")] = int(parts[1])
    return counts
