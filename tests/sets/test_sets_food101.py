"""Food-101 (official layout, read by beyondvis.data.food101) as a single-label set task."""

from __future__ import annotations

import pytest

from beyondvis.data.sets_readers import SetDataError, load_set_dataset


def _food101(root, n_train=10):
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("apple_pie\nbibimbap\n")
    (root / "meta" / "labels.txt").write_text("Apple pie\nBibimbap\n")
    train, test = [], []
    for cls in ("apple_pie", "bibimbap"):
        (root / "images" / cls).mkdir(parents=True)
        for i in range(n_train + 2):
            (root / "images" / cls / f"{i}.jpg").write_bytes(b"\xff\xd8")
            (test if i >= n_train else train).append(f"{cls}/{i}")
    train.append("apple_pie/404")  # listed, no image: reported and skipped
    (root / "meta" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "meta" / "test.txt").write_text("\n".join(test) + "\n")


def test_food101_is_a_single_label_set_task(tmp_path):
    _food101(tmp_path / "food")
    splits = load_set_dataset("food101", tmp_path / "food", val_fraction=0.2)
    assert splits.name == "food101" and splits.vocab == ["apple pie", "bibimbap"]
    assert len(splits.train) == 16 and len(splits.val) == 4 and len(splits.test) == 4
    assert all(len(r.labels) == 1 for r in splits.train + splits.val + splits.test)
    assert {r.labels[0] for r in splits.test} == {"apple pie", "bibimbap"}
    assert "1 missing files" in splits.notes[0]
    with pytest.raises(SetDataError):
        load_set_dataset("food101", tmp_path / "nowhere")


def test_food101_mini_reads(shared_data):
    splits = load_set_dataset("food101", shared_data("food101_mini"))
    assert len(splits.vocab) == 10 and len(splits.test) == 750
    assert len(splits.train) + len(splits.val) == 3750
