"""NUS-WIDE with its 81 ground-truth concepts as label sets.

Layout (the official release)::

    Concepts81.txt                                       81 concept names, one per line
    ImageList/TrainImagelist.txt, TestImagelist.txt      e.g. actor\\0001_2124494179.jpg
    Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt, ..._Test.txt   one 0/1 per image
    Flickr/<image list path>                             the images (``image_dir``)

Train/val = 90/10 of the official train list (deterministic), test = the official test list.
Images without any of the 81 concepts are kept as empty sets, as in the thesis. Labels come in
alphabetical concept order (the dataset's order, which the ordered LSTM/TF models can exploit).
"""

from __future__ import annotations

import os
from pathlib import Path

from beyondvis.data.sets_readers import (
    SetDataError,
    SetRecord,
    SetSplits,
    require_file,
    split_train_val,
)


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_nuswide_split(root: Path, split: str, concepts: list[str], image_dir: Path):
    tag = {"train": "Train", "test": "Test"}[split]
    images = _read_lines(require_file(root / "ImageList" / f"{tag}Imagelist.txt", "image list"))
    labels: list[list[str]] = [[] for _ in images]
    for concept in sorted(concepts):
        path = require_file(
            root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{tag}.txt",
            f"NUS-WIDE labels of {concept!r}",
        )
        flags = _read_lines(path)
        if len(flags) != len(images):
            raise SetDataError(f"{path}: {len(flags)} lines for {len(images)} images")
        for i, flag in enumerate(flags):
            if flag not in ("0", "1"):
                raise SetDataError(f"{path}:{i + 1}: expected 0 or 1, got {flag!r}")
            if flag == "1":
                labels[i].append(concept)
    return [
        SetRecord(str(image_dir / name.replace("\\", "/")), labels[i])
        for i, name in enumerate(images)
    ]


def read_nuswide(
    root: str | os.PathLike,
    *,
    image_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> SetSplits:
    root = Path(root)
    concepts = _read_lines(require_file(root / "Concepts81.txt", "NUS-WIDE concept list"))
    images = Path(image_dir) if image_dir is not None else root / "Flickr"
    train_all = read_nuswide_split(root, "train", concepts, images)
    test = read_nuswide_split(root, "test", concepts, images)
    train, val = split_train_val(train_all, val_fraction, split_seed)
    return SetSplits(train, val, test, sorted(concepts), name="nuswide")
