"""Pascal VOC 2007 as image-level label sets (the thesis' VOC protocol).

Layout (``root`` is ``VOCdevkit/VOC2007`` or a folder containing ``VOCdevkit``)::

    Annotations/<id>.xml          <object><name>dog</name><difficult>0</difficult>...
    ImageSets/Main/trainval.txt   image ids, one per line (also test.txt)
    JPEGImages/<id>.jpg

Train/val = 90/10 of ``trainval`` (deterministic), test = ``test``. The test images may live
in a separate devkit (``test_root``), as the VOC test tarball unpacks them. The label set of
an image is its object classes in annotation order; ``include_difficult`` keeps objects marked
difficult (default True: they are still present in the image).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from beyondvis.data.sets_readers import (
    SetDataError,
    SetRecord,
    SetSplits,
    require_file,
    split_train_val,
)

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip


def _devkit(root: str | os.PathLike) -> Path:
    root = Path(root)
    for candidate in (root, root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (candidate / "Annotations").is_dir():
            return candidate
    raise SetDataError(f"no VOC2007 Annotations/ folder under {root}")


def read_voc_annotation(path: Path, include_difficult: bool = True) -> list[str]:
    """Object class names of one VOC XML file, in order, without duplicates."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise SetDataError(f"{path}: malformed XML ({exc})") from None
    labels = []
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise SetDataError(f"{path}: an <object> has no <name>")
        if not include_difficult and (obj.findtext("difficult") or "0").strip() == "1":
            continue
        labels.append(name)
    return labels


def read_voc_split(devkit: Path, split: str, include_difficult: bool = True) -> list[SetRecord]:
    ids_file = require_file(devkit / "ImageSets" / "Main" / f"{split}.txt", f"VOC {split} list")
    records = []
    for image_id in ids_file.read_text(encoding="utf-8").split():
        xml = require_file(devkit / "Annotations" / f"{image_id}.xml", "VOC annotation")
        labels = read_voc_annotation(xml, include_difficult)
        unknown = sorted(set(labels) - set(VOC_CLASSES))
        if unknown:
            raise SetDataError(f"{xml}: unknown VOC class(es) {unknown}")
        records.append(SetRecord(str(devkit / "JPEGImages" / f"{image_id}.jpg"), labels))
    return records


def read_voc2007(
    root: str | os.PathLike,
    *,
    test_root: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    include_difficult: bool = True,
) -> SetSplits:
    devkit = _devkit(root)
    trainval = read_voc_split(devkit, "trainval", include_difficult)
    train, val = split_train_val(trainval, val_fraction, split_seed)
    test_devkit = _devkit(test_root) if test_root is not None else devkit
    test = read_voc_split(test_devkit, "test", include_difficult)
    return SetSplits(train, val, test, list(VOC_CLASSES), name="voc2007")
