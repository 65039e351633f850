"""A saved index whose image list, maps or postings changed is refused, naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from beyondvis.cli.main import main
from beyondvis.retrieval import BLCFIndex, IndexFormatError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        a = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).resize((96, 96), Image.NEAREST).save(photos / f"p{i}.png")
    argv = ["index", "build", str(photos), "--out", str(root / "idx"), "--threads", "1"]
    assert main([*argv, "--max-side", "96", "--device", "cpu"]) == 0
    return root / "idx"


def test_an_intact_index_loads(built):
    assert len(BLCFIndex.load(built)) == 3
    assert set(json.loads((built / "manifest.json").read_text())["sha256"]) == {
        "maps.npz",
        "images.json",
        "postings.npz",
    }


@pytest.mark.parametrize("name", ["images.json", "maps.npz"])
def test_a_flipped_byte_is_refused(built, tmp_path, name):
    copy = tmp_path / "idx"
    shutil.copytree(built, copy)
    raw = bytearray((copy / name).read_bytes())
    raw[len(raw) // 2] ^= 0x20
    (copy / name).write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match=f"{name}: missing or checksum mismatch"):
        BLCFIndex.load(copy)


def test_changed_postings_are_rebuilt_from_the_maps(built, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(built, copy)
    raw = bytearray((copy / "postings.npz").read_bytes())
    raw[len(raw) // 2] ^= 0x20
    (copy / "postings.npz").write_bytes(bytes(raw))
    loaded = BLCFIndex.load(copy)
    assert loaded._inverted is None  # not read: built again from maps.npz on first search
