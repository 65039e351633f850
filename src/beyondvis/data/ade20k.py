"""ADE20k as label sets: the objects present in each scene.

Two official layouts are read:

* ``layout="challenge"`` (ADEChallengeData2016, the thesis' 150-class setting)::

      objectInfo150.csv                    Idx,Ratio,Train,Val,Name  (name "wall", "bed;...")
      images/training/*.jpg, images/validation/*.jpg
      annotations/training/*.png, ...      pixel value k = class k (0 = other)

  An image's set is the classes present in its annotation, in class-index order (the order
  is consistent across images, which ordered LSTM/TF models can exploit). Reading ~22k PNGs
  takes a while, so ``labels_cache`` (a JSON path) stores the computed sets.
* ``layout="objects"`` (the full ADE20K release with per-image object lists)::

      images/training/**/<name>.jpg + <name>_atr.txt   "inst # part_level # occluded # class
      images/validation/**/...                          # raw name # attributes"

  Whole objects (part level 0) give the set; the vocabulary is the ``num_labels`` most frequent
  training classes and rarer ones are dropped.

Train/val = 90/10 of training (deterministic), test = the official validation set.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from beyondvis.data.sets_readers import (
    SetDataError,
    SetRecord,
    SetSplits,
    require_file,
    restrict_to_vocab,
    split_train_val,
)
from beyondvis.utils import atomic_write_json

log = logging.getLogger(__name__)


def read_object_info(path: Path) -> list[str]:
    """Class names of objectInfo150.csv in index order (first synonym of each)."""
    require_file(path, "ADE20k objectInfo150.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "Idx" not in rows[0] or "Name" not in rows[0]:
        raise SetDataError(f"{path}: expected columns Idx,...,Name")
    rows.sort(key=lambda r: int(r["Idx"]))
    if [int(r["Idx"]) for r in rows] != list(range(1, len(rows) + 1)):
        raise SetDataError(f"{path}: class indices must run 1..{len(rows)}")
    return [r["Name"].split(";")[0].strip() for r in rows]


def labels_from_annotation(path: Path, classes: list[str]) -> list[str]:
    """Classes present in a challenge annotation PNG (0 = "other" is not a label)."""
    try:
        with Image.open(path) as image:
            values = np.unique(np.asarray(image))
    except OSError as exc:
        raise SetDataError(f"cannot read annotation {path}: {exc}") from None
    bad = values[values > len(classes)]
    if len(bad):
        raise SetDataError(f"{path}: pixel classes {bad.tolist()} exceed {len(classes)}")
    return [classes[v - 1] for v in values.tolist() if v > 0]


def _challenge_split(root: Path, folder: str, classes: list[str], cache: dict) -> list[SetRecord]:
    image_dir = root / "images" / folder
    if not image_dir.is_dir():
        raise SetDataError(f"ADE20k image folder not found: {image_dir}")
    records = []
    for image in sorted(image_dir.glob("*.jpg")):
        key = f"{folder}/{image.stem}"
        if key not in cache:
            cache[key] = labels_from_annotation(
                root / "annotations" / folder / f"{image.stem}.png", classes
            )
        records.append(SetRecord(str(image), cache[key]))
    return records


def read_atr_objects(path: Path) -> list[str]:
    """Whole-object class names of an ADE20K ``*_atr.txt`` file, in file order."""
    labels = []
    for line_no, line in enumerate(
        path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
    ):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("#")]
        if len(fields) < 4:
            raise SetDataError(f"{path}:{line_no}: expected '#'-separated fields, got {line!r}")
        if fields[1] == "0":  # part level 0: a whole object, not a part of one
            labels.append(fields[3].split(",")[0].strip())
    return labels


def _objects_split(root: Path, folder: str) -> list[SetRecord]:
    image_dir = root / "images" / folder
    if not image_dir.is_dir():
        raise SetDataError(f"ADE20K image folder not found: {image_dir}")
    records = []
    for image in sorted(image_dir.rglob("*.jpg")):
        atr = image.with_name(f"{image.stem}_atr.txt")
        if atr.is_file():
            records.append(SetRecord(str(image), read_atr_objects(atr)))
    if not records:
        raise SetDataError(f"no images with *_atr.txt object lists under {image_dir}")
    return records


def read_ade20k(
    root: str | os.PathLike,
    *,
    layout: str = "challenge",
    labels_cache: str | os.PathLike | None = None,
    num_labels: int = 150,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> SetSplits:
    root = Path(root)
    notes: list[str] = []
    if layout == "challenge":
        classes = read_object_info(root / "objectInfo150.csv")
        cache: dict = {}
        if labels_cache is not None and Path(labels_cache).is_file():
            cache = json.loads(Path(labels_cache).read_text(encoding="utf-8"))
        size = len(cache)
        train_all = _challenge_split(root, "training", classes, cache)
        test = _challenge_split(root, "validation", classes, cache)
        if labels_cache is not None and len(cache) != size:
            atomic_write_json(labels_cache, cache, indent=None)
        vocab = classes
    elif layout == "objects":
        train_all = _objects_split(root, "training")
        counts = Counter(label for r in train_all for label in r.labels)
        vocab = [name for name, _ in counts.most_common(num_labels)]
        train_all = restrict_to_vocab(train_all, vocab, "ADE20K training", notes)
        test = restrict_to_vocab(_objects_split(root, "validation"), vocab, "ADE20K val", notes)
    else:
        raise ValueError(f"layout must be 'challenge' or 'objects', got {layout!r}")
    train, val = split_train_val(train_all, val_fraction, split_seed)
    return SetSplits(train, val, test, vocab, name="ade20k", notes=notes)
