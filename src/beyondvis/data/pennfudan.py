"""Penn-Fudan pedestrian database (Wang et al. 2007), in the official layout.

Layout (``root`` = ``PennFudanPed``)::

    PNGImages/<name>.png        photos
    PedMasks/<name>_mask.png    0 = background, k = pedestrian k
    Annotation/<name>.txt       PASCAL-style boxes (not needed: boxes come from the masks)

One class (``person``). The split is a deterministic permutation (default 25% test, 10%
validation).
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


def read_pennfudan(
    root: str | os.PathLike,
    test_fraction: float = 0.25,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> InstanceSplits:
    root = Path(root)
    images = root / "PNGImages"
    masks = root / "PedMasks"
    if not images.is_dir() or not masks.is_dir():
        raise InstanceDataError(f"Penn-Fudan needs PNGImages/ and PedMasks/ under {root}")
    pairs = []
    missing = 0
    for image in sorted(images.glob("*.png")):
        mask = masks / f"{image.stem}_mask.png"
        if not mask.is_file():
            missing += 1
            continue
        pairs.append((image.stem, image, mask))
    if not pairs:
        raise InstanceDataError(f"no PNGImages/<name>.png with PedMasks/<name>_mask.png in {root}")
    train, val, test = split_records(label_png_records(pairs), test_fraction, val_fraction, seed)
    notes = [f"{len(pairs)} annotated photos"]
    if missing:
        notes.append(f"{missing} photos without a mask skipped")
    return InstanceSplits("pennfudan", ["person"], train, val, test, notes)
