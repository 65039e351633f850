"""The generic codebook shipped in the package: loads offline, float16, refuses other features."""

import json

import numpy as np
import pytest

from beyondvis.retrieval.features import FeatureConfig
from beyondvis.retrieval.index import (
    SHIPPED_DIR,
    BLCFIndex,
    IndexConfig,
    IndexFormatError,
    shipped_model,
)


def test_shipped_codebook_loads_in_float16():
    model = shipped_model()
    folder = SHIPPED_DIR / "generic"
    meta = json.loads((folder / "model.json").read_text())
    assert model.half and model.name == "generic"
    assert model.fingerprint() == meta["model_fingerprint"]
    assert np.load(folder / "model.npz")["centroids"].dtype == np.float16
    assert model.codebook.size == meta["config"]["codebook_size"] == 4096
    assert model.codebook.dim == 112
    assert (folder / "model.npz").stat().st_size < 5_000_000
    assert (SHIPPED_DIR / "README.md").exists()
    assert model.config.features.backbone == "efficientnet_lite0"


def test_pretrained_index_takes_input_settings_not_other_features():
    small = BLCFIndex.pretrained(config=IndexConfig(features=FeatureConfig(max_side=256)))
    assert small.config.features.max_side == 256
    assert small.model.codebook.size == shipped_model().codebook.size
    assert small.model.fingerprint() != shipped_model().fingerprint()  # shards must agree on it
    with pytest.raises(IndexFormatError, match="--fit-codebook"):
        BLCFIndex.pretrained(config=IndexConfig(features=FeatureConfig(level=4)))
    with pytest.raises(IndexFormatError, match="no shipped codebook"):
        shipped_model("oxford")
