"""VOC 2012 + SBD and Cityscapes instance readers, on tiny files in the official formats."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from beyondvis.data.instance_seg import (
    InstanceDataError,
    read_cityscapes_instances,
    read_instances,
    read_voc_sbd,
    relabel,
)


def _palette_png(array: np.ndarray, path) -> None:
    im = Image.fromarray(array.astype(np.uint8), "P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (i * 3) % 256)])
    im.save(path)


def make_voc(root):
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    ids = ["2007_000001", "2007_000002", "2007_000003"]
    for i in ids:
        Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(voc / "JPEGImages" / f"{i}.jpg")
        inst = np.zeros((20, 24), np.uint8)
        cls = np.zeros((20, 24), np.uint8)
        inst[2:8, 2:8], cls[2:8, 2:8] = 1, 15  # person
        inst[10:18, 10:20], cls[10:18, 10:20] = 2, 12  # dog
        inst[8, :], cls[8, :] = 255, 255  # void border
        _palette_png(inst, voc / "SegmentationObject" / f"{i}.png")
        _palette_png(cls, voc / "SegmentationClass" / f"{i}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n2007_000002\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("2007_000003\n")
    sbd = root / "benchmark_RELEASE" / "dataset"
    (sbd / "img").mkdir(parents=True)
    (sbd / "inst").mkdir()
    for i in ("2008_000010", "2007_000003"):  # the second is VOC val: must not be trained on
        Image.fromarray(np.full((16, 16, 3), 60, np.uint8)).save(sbd / "img" / f"{i}.jpg")
        seg = np.zeros((16, 16), np.uint8)
        seg[1:5, 1:5] = 1
        seg[8:15, 8:15] = 2
        savemat(sbd / "inst" / f"{i}.mat",
                {"GTinst": {"Segmentation": seg, "Categories": np.array([[7], [3]]),
                            "Boundaries": np.zeros((2, 1), object)}})  # fmt: skip
    (sbd / "train.txt").write_text("2008_000010\n2007_000003\n")
    return root


def test_voc_and_sbd(tmp_path):
    root = make_voc(tmp_path)
    splits = read_voc_sbd(root, root / "benchmark_RELEASE", val_fraction=0.0)
    assert len(splits.test) == 1 and splits.test[0].item_id == "voc/2007_000003"
    assert sorted(r.item_id for r in splits.train) == [
        "sbd/2008_000010",
        "voc/2007_000001",
        "voc/2007_000002",
    ]
    sample = read_instances(splits.test[0])
    assert sample.num_objects == 2
    assert [splits.classes[c] for c in sample.classes] == ["person", "dog"]
    assert sample.masks()[:, 8].sum() == 0  # void is not an object
    sbd = read_instances(next(r for r in splits.train if r.format == "sbd"))
    assert [splits.classes[c] for c in sbd.classes] == ["car", "bird"]
    assert sbd.masks().sum(axis=(1, 2)).tolist() == [16, 49]


def test_cityscapes(tmp_path):
    for split in ("train", "val"):
        gt = tmp_path / "gtFine" / split / "aachen"
        img = tmp_path / "leftImg8bit" / split / "aachen"
        gt.mkdir(parents=True)
        img.mkdir(parents=True)
        ids = np.zeros((16, 32), np.int32)
        ids[:, :] = 7  # road (no instances)
        ids[2:6, 2:10] = 26000  # car 0
        ids[8:14, 2:10] = 26001  # car 1
        ids[8:14, 20:24] = 24000  # person
        ids[0:2, 20:30] = 26  # car pixels without instance id (crowd): not an object
        Image.fromarray(ids.astype(np.uint16)).save(
            gt / "aachen_000000_000019_gtFine_instanceIds.png"
        )
        Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(
            img / "aachen_000000_000019_leftImg8bit.png"
        )
    splits = read_cityscapes_instances(tmp_path)
    assert len(splits.test) == 1
    sample = read_instances(splits.test[0])
    assert sample.num_objects == 3
    assert sorted(splits.classes[c] for c in sample.classes) == ["car", "car", "person"]


def test_relabel_and_errors(tmp_path):
    lab, values = relabel(np.array([[0, 5, 5], [9, 0, 255]]), ignore=(255,))
    assert lab.tolist() == [[0, 1, 1], [2, 0, 0]] and values.tolist() == [5, 9]
    with pytest.raises(InstanceDataError, match="Segmentation"):
        read_voc_sbd(tmp_path)
    with pytest.raises(InstanceDataError, match="gtFine"):
        read_cityscapes_instances(tmp_path)
