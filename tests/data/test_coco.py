"""COCO 2014 reader: categories, empty images kept, bad references reported."""

from __future__ import annotations

import json

import pytest

from beyondvis.data.coco import read_coco2014
from beyondvis.data.sets_readers import SetDataError

CATS = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}]


def _write(root, split, images, anns):
    (root / "annotations").mkdir(exist_ok=True)
    data = {"images": images, "annotations": anns, "categories": CATS}
    (root / "annotations" / f"instances_{split}2014.json").write_text(json.dumps(data))


def test_reads_sets_and_keeps_empty_images(tmp_path):
    images = [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg"} for i in range(1, 11)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 18},
        {"id": 2, "image_id": 1, "category_id": 1},
        {"id": 3, "image_id": 1, "category_id": 18},
        {"id": 4, "image_id": 2, "category_id": 1},
    ]
    _write(tmp_path, "train", images, anns)
    _write(tmp_path, "val", [{"id": 99, "file_name": "v.jpg"}], [])
    splits = read_coco2014(tmp_path)
    assert splits.vocab == ["person", "dog"]  # category id order
    every = {r.image.rsplit("/", 1)[1]: r.labels for r in splits.train + splits.val}
    assert every["COCO_train2014_000000000001.jpg"] == ["dog", "person"]
    assert every["COCO_train2014_000000000003.jpg"] == []
    assert splits.test[0].labels == [] and splits.test[0].image.endswith("val2014/v.jpg")
    assert len(splits.val) == 1


def test_errors(tmp_path):
    _write(
        tmp_path,
        "train",
        [{"id": 1, "file_name": "a.jpg"}],
        [{"id": 1, "image_id": 5, "category_id": 1}],
    )
    _write(tmp_path, "val", [], [])
    with pytest.raises(SetDataError, match="unknown image"):
        read_coco2014(tmp_path)
    (tmp_path / "annotations" / "instances_train2014.json").write_text("{not json")
    with pytest.raises(SetDataError, match="malformed JSON"):
        read_coco2014(tmp_path)
