"""Feature caches against corruption, a second writer and --overwrite next to a user's files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from beyondvis.engine import FeatureCache, FeatureCacheError, cache_features
from beyondvis.engine.features import LOCK_NAME
from beyondvis.utils.locks import folder_lock


def _cache(out, seed=0, **kwargs):
    torch.manual_seed(seed)
    data = TensorDataset(torch.randn(12, 5))
    return cache_features(nn.Linear(5, 3), data, out, device="cpu", progress=False, **kwargs)


def _flip(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_in_the_features_is_detected(tmp_path):
    _cache(tmp_path / "c")
    _flip(tmp_path / "c" / "features.npy", -3)
    with pytest.raises(FeatureCacheError, match="features.npy: checksum mismatch"):
        FeatureCache(tmp_path / "c")


def test_a_flipped_done_flag_is_detected_not_an_item_dropped(tmp_path):
    _cache(tmp_path / "c")
    done = tmp_path / "c" / "done.npy"
    flags = np.load(done)
    flags[4] = 2  # "bad": item 4 would vanish from the cache for good
    np.save(done, flags)
    with pytest.raises(FeatureCacheError, match="done.npy: checksum mismatch"):
        FeatureCache(tmp_path / "c")


def test_a_second_writer_is_refused_but_a_finished_cache_is_shared(tmp_path):
    with folder_lock(tmp_path / "c", LOCK_NAME):
        with pytest.raises(FeatureCacheError, match="being written by process"):
            _cache(tmp_path / "c")
    first = _cache(tmp_path / "c")
    with folder_lock(tmp_path / "c", LOCK_NAME):  # e.g. another seed's job holds the folder
        assert _cache(tmp_path / "c").fingerprint == first.fingerprint  # read, not written


def test_overwrite_removes_only_the_cache_files(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    first = _cache(out)
    again = _cache(out, seed=1, overwrite=True, fingerprint_extra="other")
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub").is_dir()
    assert again.fingerprint != first.fingerprint
    assert len(FeatureCache(out)) == 12
