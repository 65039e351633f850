"""The shipped CVPPP leaf model loads offline (checksum, float16 bundle) and predicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from beyondvis.segmentation.experiment import load_bundle
from beyondvis.segmentation.predict import DEFAULT_MODEL, Segmenter


def test_shipped_bundle_is_small_and_loads():
    assert DEFAULT_MODEL.is_file(), "the shipped RSIS model is missing from the package"
    assert DEFAULT_MODEL.stat().st_size < 5 * 2**20
    model, meta = load_bundle(DEFAULT_MODEL)
    assert meta["classes"] == ["leaf"] and meta["backbone"] == "efficientnet_lite0"
    assert 0 < meta["inference"]["stop_threshold"] < 1


def test_shipped_model_predicts_a_sequence(tmp_path):
    torch.set_num_threads(1)
    seg = Segmenter.load()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    photo[30:60, 40:80] = (40, 160, 40)  # a green blob on noise
    path = tmp_path / "plant.png"
    Image.fromarray(photo).save(path)
    seg.max_steps = 3
    result = seg.predict_path(path, out_dir=tmp_path / "out")
    assert result["width"] == 120 and result["height"] == 90
    assert [i["step"] for i in result["instances"]] == list(range(1, len(result["instances"]) + 1))
    assert (tmp_path / "out" / "plant_rsis.png").is_file()


def test_corrupt_bundle_is_refused(tmp_path):
    bundle = torch.load(DEFAULT_MODEL, weights_only=True)
    key = next(k for k, v in bundle["state"].items() if v.is_floating_point())
    bundle["state"][key] = bundle["state"][key] + 1
    bad = tmp_path / "bad.pt"
    torch.save(bundle, bad)
    with pytest.raises(ValueError, match="checksum"):
        load_bundle(bad)
