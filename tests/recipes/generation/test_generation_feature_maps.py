"""Photo feature maps for generation come from the engine's feature cache: the real backbone's
maps, zero rows and ok=False for unreadable photos, a finished cache reused without the model."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from beyondvis.backbones import create_backbone
from beyondvis.backbones.extractor import FeatureExtractor
from beyondvis.io import load_image
from beyondvis.recipes.generation.data import extract_feature_maps


def _photos(folder):
    folder.mkdir()
    paths = []
    for i, (size, color) in enumerate([((80, 60), (200, 30, 30)), ((64, 90), (20, 160, 60))]):
        image = Image.new("RGB", size, color)
        image.paste((240, 240, 20), (10, 10, 30 + 10 * i, 40))
        path = folder / f"p{i}.jpg"
        image.save(path)
        paths.append(str(path))
    bad = folder / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    paths.insert(1, str(bad))
    return paths


def test_maps_cached_with_bad_photos_reported(tmp_path, monkeypatch, caplog):
    paths = _photos(tmp_path / "photos")
    calls = []
    run = FeatureExtractor._run_torch
    monkeypatch.setattr(
        FeatureExtractor, "_run_torch", lambda s, x: calls.append(len(x)) or run(s, x)
    )
    maps, ok = extract_feature_maps(paths, tmp_path / "cache", size=64, runtime="torch")
    assert ok == [True, False, True]
    assert maps.dtype == torch.float16 and tuple(maps.shape) == (3, 1280, 2, 2)
    assert not maps[1].any()  # the unreadable photo's row stays zero
    assert "broken.jpg" in caplog.text
    backbone = create_backbone("efficientnet_lite0").eval()
    transform = backbone.transform(train=False, size=64)
    with torch.inference_mode():
        expected = backbone.feature_map(torch.stack([transform(load_image(p)) for p in paths[::2]]))
    torch.testing.assert_close(maps[[0, 2]].float(), expected, rtol=1e-2, atol=1e-2)

    calls.clear()
    again, ok_again = extract_feature_maps(paths, tmp_path / "cache", size=64, runtime="torch")
    assert calls == [] and ok_again == ok  # reused: the backbone never ran
    assert torch.equal(again, maps)
    # another photo list gets its own cache instead of a refusal
    other, ok_other = extract_feature_maps(paths[:1], tmp_path / "cache", size=64, runtime="torch")
    assert ok_other == [True] and torch.equal(other[0], maps[0])
    assert len(list((tmp_path / "cache").iterdir())) == 2
    assert np.isfinite(maps.float().numpy()).all()
