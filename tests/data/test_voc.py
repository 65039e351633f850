"""VOC 2007 reader on a tiny devkit written by the test."""

from __future__ import annotations

import pytest

from beyondvis.data.sets_readers import SetDataError
from beyondvis.data.voc import read_voc2007

XML = """<annotation><filename>{id}.jpg</filename>{objects}</annotation>"""
OBJ = "<object><name>{name}</name><difficult>{difficult}</difficult></object>"


def _devkit(tmp_path, trainval, test):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for split, items in (("trainval", trainval), ("test", test)):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(items) + "\n")
        for image_id, objects in items.items():
            body = "".join(OBJ.format(name=n, difficult=d) for n, d in objects)
            (root / "Annotations" / f"{image_id}.xml").write_text(
                XML.format(id=image_id, objects=body)
            )
    return tmp_path


def test_reads_label_sets(tmp_path):
    trainval = {f"{i:06d}": [("dog", 0), ("person", 1), ("dog", 0)] for i in range(10)}
    test = {"000100": [("cat", 0)], "000101": []}
    root = _devkit(tmp_path, trainval, test)
    splits = read_voc2007(root)
    assert len(splits.vocab) == 20
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 1, 2)
    assert splits.train[0].labels == ["dog", "person"]
    assert splits.test[0].image.endswith("JPEGImages/000100.jpg")
    assert splits.test[1].labels == []
    no_difficult = read_voc2007(root, include_difficult=False)
    assert no_difficult.train[0].labels == ["dog"]


def test_errors(tmp_path):
    root = _devkit(tmp_path, {"000001": [("unicorn", 0)]}, {})
    with pytest.raises(SetDataError, match="unknown VOC class"):
        read_voc2007(root)
    bad = tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000001.xml"
    bad.write_text("<annotation><object>")
    with pytest.raises(SetDataError, match="malformed XML"):
        read_voc2007(root)
    with pytest.raises(SetDataError, match="Annotations"):
        read_voc2007(tmp_path / "nowhere")
