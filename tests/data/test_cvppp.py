"""CVPPP A1 reader: official plantNNN_rgb/label.png layout, written here; real data if present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beyondvis.data.cvppp import read_cvppp, read_leaf_counts
from beyondvis.data.instance_seg import InstanceDataError, read_instances


def write_plant(folder: Path, name: str, leaves: int, size=(40, 36)) -> None:
    w, h = size
    rgb = np.zeros((h, w, 4), np.uint8)
    rgb[..., 1] = 120
    rgb[..., 3] = 255
    Image.fromarray(rgb, "RGBA").save(folder / f"{name}_rgb.png")
    label = np.zeros((h, w), np.uint8)
    for k in range(leaves):
        label[2 + 3 * k : 4 + 3 * k, 5:15] = k + 1
    im = Image.fromarray(label, "P")
    im.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 13 % 256, i * 29 % 256)])
    im.save(folder / f"{name}_label.png")


def make_cvppp(root: Path, n: int = 8) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        write_plant(root, f"plant{i + 1:03d}", leaves=2 + i % 3)
        lines.append(f"plant{i + 1:03d}_rgb.png, {2 + i % 3}")
    (root / "A1.csv").write_text("\n".join(lines) + "\n")
    return root


def test_reader_splits_and_masks(tmp_path):
    root = make_cvppp(tmp_path / "A1")
    splits = read_cvppp(root, test_fraction=0.25, val_fraction=0.125)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (5, 1, 2)
    ids = {r.item_id for r in splits.train + splits.val + splits.test}
    assert len(ids) == 8
    assert splits.classes == ["leaf"]
    counts = read_leaf_counts(root)
    for record in splits.train:
        sample = read_instances(record)
        assert sample.image.mode == "RGB" and sample.image.size == (40, 36)
        assert sample.num_objects == counts[record.item_id]
        masks = sample.masks()
        assert masks.shape == (sample.num_objects, 36, 40)
        assert masks.sum(axis=(1, 2)).min() == 20
    # deterministic
    assert [r.item_id for r in read_cvppp(root).test] == [r.item_id for r in read_cvppp(root).test]


def test_image_without_leaves_is_kept(tmp_path):
    root = tmp_path / "A1"
    root.mkdir()
    write_plant(root, "plant001", leaves=0)
    sample = read_instances(read_cvppp(root, 0.0, 0.0).train[0])
    assert sample.num_objects == 0 and sample.masks().shape == (0, 36, 40)


def test_missing_folder_and_labels_are_clear_errors(tmp_path):
    with pytest.raises(InstanceDataError, match="not found"):
        read_cvppp(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InstanceDataError, match="plantNNN_rgb.png"):
        read_cvppp(tmp_path / "empty")


def test_real_cvppp_a1(shared_data):
    root = shared_data("cvppp_a1")
    splits = read_cvppp(root)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 108
    counts = read_leaf_counts(root)
    record = splits.test[0]
    sample = read_instances(record)
    assert sample.num_objects == counts[record.item_id]
    assert sample.image.size == (500, 530)
