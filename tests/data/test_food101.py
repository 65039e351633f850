"""Food-101 reader: official layout, bad lines, missing files, duplicates, JSON fallback."""

from __future__ import annotations

import json

import pytest

from beyondvis.data import Food101Error, load_food101
from beyondvis.data.food101 import read_classes


def _make(tmp_path, train_lines, test_lines=None, labels=("Apple pie", "Baby back ribs")):
    root = tmp_path / "food"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("apple_pie\nbaby_back_ribs\n")
    if labels is not None:
        (root / "meta" / "labels.txt").write_text("\n".join(labels) + "\n")
    (root / "meta" / "train.txt").write_text("\n".join(train_lines) + "\n")
    if test_lines is not None:
        (root / "meta" / "test.txt").write_text("\n".join(test_lines) + "\n")
    for cls, ids in {"apple_pie": ["1", "2", "3"], "baby_back_ribs": ["10", "11"]}.items():
        (root / "images" / cls).mkdir(parents=True)
        for i in ids:
            (root / "images" / cls / f"{i}.jpg").write_bytes(b"\xff\xd8fake")
    return root


def test_reads_official_layout(tmp_path):
    root = _make(tmp_path, ["apple_pie/1", "apple_pie/2", "baby_back_ribs/10"], ["apple_pie/3"])
    train = load_food101(root, "train")
    assert train.classes == ["apple_pie", "baby_back_ribs"]
    assert train.labels == ["apple pie", "baby back ribs"]
    assert [i.id for i in train] == ["apple_pie/1", "apple_pie/2", "baby_back_ribs/10"]
    item = train[2]
    assert item.path == root / "images" / "baby_back_ribs" / "10.jpg"
    assert (item.class_index, item.class_name, item.label) == (
        1,
        "baby_back_ribs",
        "baby back ribs",
    )
    assert train.report.skipped == 0 and train.report.ok == 3
    assert train.class_counts() == {"apple_pie": 2, "baby_back_ribs": 1}
    test = load_food101(root, "test")
    assert len(test) == 1 and test[0].path.name == "3.jpg"


def test_bad_missing_and_duplicate_entries_are_reported_and_skipped(tmp_path):
    lines = [
        "apple_pie/1",
        "apple_pie/1",  # duplicate
        "apple_pie/99",  # no such file
        "not a valid line",  # malformed
        "apple_pie/../../etc/passwd",  # tries to leave the folder
        "pizza/5",  # unknown class
        "",  # blank lines are ignored, not reported
        "baby_back_ribs/11.jpg",  # extension tolerated
    ]
    split = load_food101(_make(tmp_path, lines), "train")
    assert [i.id for i in split] == ["apple_pie/1", "baby_back_ribs/11"]
    assert split.report.duplicates == ["apple_pie/1"]
    assert split.report.missing == ["apple_pie/99"]
    where = [w for w, _ in split.report.bad]
    assert where == ["train.txt:4", "train.txt:5", "train.txt:6"]
    assert "not in classes.txt" in split.report.bad[2][1]
    assert (
        "2 photos, skipped 3 bad entries, 1 missing files, 1 duplicates" == split.report.summary()
    )


def test_symlink_out_of_images_is_bad(tmp_path):
    root = _make(tmp_path, ["apple_pie/1", "apple_pie/link"])
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    (root / "images" / "apple_pie" / "link.jpg").symlink_to(outside)
    split = load_food101(root, "train")
    assert [i.id for i in split] == ["apple_pie/1"]
    assert "outside" in split.report.bad[0][1]


def test_json_split_when_text_list_is_absent(tmp_path):
    root = _make(tmp_path, ["apple_pie/1"])
    (root / "meta" / "train.txt").unlink()
    data = {"apple_pie": ["apple_pie/2", 7], "baby_back_ribs": ["baby_back_ribs/10"]}
    (root / "meta" / "train.json").write_text(json.dumps(data), encoding="utf-8")
    split = load_food101(root, "train")
    assert split.source.name == "train.json"
    assert [i.id for i in split] == ["apple_pie/2", "baby_back_ribs/10"]
    assert split.report.bad == [
        ("train.json[apple_pie][1]", "expected a 'class/id' string, got int")
    ]


def test_unreadable_folders_raise_one_clear_error(tmp_path):
    root = _make(tmp_path, ["apple_pie/1"])
    with pytest.raises(Food101Error, match="unknown split"):
        load_food101(root, "val")
    with pytest.raises(Food101Error, match="neither test.txt nor test.json"):
        load_food101(root, "test")
    (root / "meta" / "test.json").write_bytes(b'{"apple_pie": [')
    with pytest.raises(Food101Error, match="test.json:1: invalid JSON"):
        load_food101(root, "test")
    (root / "meta" / "test.json").write_bytes(b'{"apple_pie": ["apple_pie/\xff"]}')
    with pytest.raises(Food101Error, match="not UTF-8"):
        load_food101(root, "test")
    (root / "meta" / "classes.txt").unlink()
    with pytest.raises(Food101Error, match="classes.txt: no such file"):
        load_food101(root, "train")
    with pytest.raises(Food101Error, match="no such folder"):
        load_food101(tmp_path / "nowhere")


def test_labels_fall_back_to_class_names(tmp_path):
    root = _make(tmp_path, ["apple_pie/1"], labels=None)
    assert read_classes(root)[1] == ["apple pie", "baby back ribs"]
    (root / "meta" / "labels.txt").write_text("\ufeffApple  Pie\nRibs\n", encoding="utf-8")
    assert read_classes(root)[1] == ["apple pie", "ribs"]


@pytest.mark.data
def test_real_food101_mini(shared_data):
    root = shared_data("food101_mini")
    train, test = load_food101(root, "train"), load_food101(root, "test")
    assert len(train.classes) == 10 and train.labels[0] == "apple pie"
    assert len(train) == 3750 and len(test) == 750
    assert train.report.skipped == 0 and test.report.skipped == 0
    assert not {i.id for i in train} & {i.id for i in test}
    assert set(test.class_counts().values()) == {75}
