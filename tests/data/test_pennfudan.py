"""Penn-Fudan reader on a small copy of the official layout, and on the real data if present."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from beyondvis.data.instance_seg import InstanceDataError, read_instances
from beyondvis.data.pennfudan import read_pennfudan


def test_reader(tmp_path):
    (tmp_path / "PNGImages").mkdir()
    (tmp_path / "PedMasks").mkdir()
    for i in range(4):
        Image.fromarray(np.full((30, 20, 3), 90, np.uint8)).save(
            tmp_path / "PNGImages" / f"FudanPed{i:05d}.png"
        )
        mask = np.zeros((30, 20), np.uint8)
        mask[2:10, 2:6] = 1
        if i % 2:
            mask[12:28, 10:18] = 2
        Image.fromarray(mask, "L").save(tmp_path / "PedMasks" / f"FudanPed{i:05d}_mask.png")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "PNGImages" / "orphan.png")
    splits = read_pennfudan(tmp_path, test_fraction=0.25, val_fraction=0.0)
    assert len(splits.train) == 3 and len(splits.test) == 1
    assert any("without a mask" in n for n in splits.notes)
    counts = sorted(read_instances(r).num_objects for r in splits.train + splits.test)
    assert counts == [1, 1, 2, 2]
    assert splits.classes == ["person"]


def test_missing_layout(tmp_path):
    with pytest.raises(InstanceDataError, match="PNGImages"):
        read_pennfudan(tmp_path)


def test_real_pennfudan(shared_data):
    splits = read_pennfudan(shared_data("PennFudanPed"))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 141
    sample = read_instances(splits.train[0])
    assert sample.num_objects >= 1
