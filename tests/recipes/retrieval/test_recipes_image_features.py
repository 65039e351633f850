"""Pooled photo features of the Recipes I pipeline go through the engine's feature cache:
bad photos skipped and listed, a rerun reuses the cache, a changed photo list replaces it."""

from __future__ import annotations

import json

import torch
from PIL import Image

from beyondvis.backbones import create_backbone
from beyondvis.backbones.extractor import FeatureExtractor
from beyondvis.data.recipe1m import image_path
from beyondvis.io import load_image
from beyondvis.recipes.retrieval.features import ImageFeatures, build_image_features


def _prepared(tmp_path, images):
    root, prep = tmp_path / "root", tmp_path / "prep"
    prep.mkdir(parents=True)
    rows = [
        {"id": "r1", "partition": "train", "images": images[:2]},
        {"id": "r2", "partition": "val", "images": images[2:]},
    ]
    for row in rows:
        for k, img in enumerate(row["images"]):
            path = image_path(root, row["partition"], img)
            path.parent.mkdir(parents=True, exist_ok=True)
            if img.startswith("bad"):
                path.write_bytes(b"not an image")
            else:
                Image.new("RGB", (60 + 20 * k, 50), (30 * len(img), 90, 200 - 40 * k)).save(path)
    (prep / "recipes.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root, prep


def test_pooled_features_skip_bad_photos_and_reuse_the_cache(tmp_path, monkeypatch):
    root, prep = _prepared(tmp_path, ["aaaa1.jpg", "bad01.jpg", "cccc3.jpg"])
    calls = []
    run = FeatureExtractor._run_torch
    monkeypatch.setattr(
        FeatureExtractor, "_run_torch", lambda s, x: calls.append(len(x)) or run(s, x)
    )
    info = build_image_features(prep, root, runtime="torch")
    assert info["images"] == 2 and info["dim"] == 1280
    assert len(info["skipped"]) == 1 and "bad01.jpg" in info["skipped"][0]
    feats = ImageFeatures.load(prep / "image_features.npz")
    assert feats.image_ids == ["aaaa1.jpg", "cccc3.jpg"] and feats.recipe_ids == ["r1", "r2"]
    backbone = create_backbone("efficientnet_lite0").eval()
    transform = backbone.transform(train=False)
    paths = [image_path(root, "train", "aaaa1.jpg"), image_path(root, "val", "cccc3.jpg")]
    with torch.inference_mode():
        expected = backbone(torch.stack([transform(load_image(p)) for p in paths]))
    torch.testing.assert_close(torch.from_numpy(feats.features), expected, rtol=1e-3, atol=1e-3)

    calls.clear()
    assert build_image_features(prep, root, runtime="torch")["images"] == 2
    assert calls == []  # the finished cache was reused, the backbone never ran
    # a new photo list (prepare rerun) replaces the stale cache instead of refusing it
    _prepared(tmp_path / "again", ["aaaa1.jpg", "dddd4.jpg"])
    (prep / "recipes.jsonl").write_text((tmp_path / "again" / "prep" / "recipes.jsonl").read_text())
    info = build_image_features(prep, tmp_path / "again" / "root", runtime="torch")
    assert info["images"] == 2 and info["skipped"] == []
    assert calls == [1, 2]  # rebuilt: the shape probe, then one batch of both photos
