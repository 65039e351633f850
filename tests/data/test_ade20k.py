"""ADE20k readers: challenge annotation PNGs and full-release object lists."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from beyondvis.data.ade20k import read_ade20k
from beyondvis.data.sets_readers import SetDataError


def _challenge(root, n_train=10):
    root.mkdir()
    (root / "objectInfo150.csv").write_text(
        "Idx,Ratio,Train,Val,Name\n2,0.1,1,1,floor;flooring\n1,0.2,1,1,wall\n3,0.1,1,1,tree\n"
    )
    for folder, n in (("training", n_train), ("validation", 1)):
        (root / "images" / folder).mkdir(parents=True)
        (root / "annotations" / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4)).save(root / "images" / folder / f"img{i}.jpg")
            mask = np.zeros((4, 4), np.uint8)
            mask[0, 0] = 3
            mask[1, 1] = 1 if i % 2 else 0
            Image.fromarray(mask).save(root / "annotations" / folder / f"img{i}.png")
    return root


def test_challenge_layout_and_cache(tmp_path):
    root = _challenge(tmp_path / "ade")
    cache = tmp_path / "labels.json"
    splits = read_ade20k(root, labels_cache=cache)
    assert splits.vocab == ["wall", "floor", "tree"]
    every = {r.image.rsplit("/", 1)[1]: r.labels for r in splits.train + splits.val}
    assert every["img1.jpg"] == ["wall", "tree"] and every["img0.jpg"] == ["tree"]
    assert len(splits.test) == 1 and len(json.loads(cache.read_text())) == 11
    mask = np.full((4, 4), 9, np.uint8)
    Image.fromarray(mask).save(root / "annotations" / "training" / "img0.png")
    assert read_ade20k(root, labels_cache=cache).vocab  # cached sets are reused
    with pytest.raises(SetDataError, match="exceed"):
        read_ade20k(root)


def test_object_lists(tmp_path):
    for folder, lines in (
        (
            "training",
            [
                '001 # 0 # 0 # wall # wall # ""',
                '002 # 1 # 0 # door # door # ""',
                '003 # 0 # 0 # sky, heaven # sky # ""',
            ],
        ),
        ("validation", ['001 # 0 # 0 # lamp # lamp # ""', '002 # 0 # 0 # wall # wall # ""']),
    ):
        d = tmp_path / "images" / folder / "a" / "abbey"
        d.mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(d / "x.jpg")
        (d / "x_atr.txt").write_text("\n".join(lines) + "\n")
    splits = read_ade20k(tmp_path, layout="objects", val_fraction=0.0)
    assert sorted(splits.vocab) == ["sky", "wall"]
    assert splits.train[0].labels == ["wall", "sky"]
    assert splits.test[0].labels == ["wall"] and splits.notes
