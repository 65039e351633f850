"""Checkpoints against corruption: every flipped byte is an error naming the file, never a
silently different model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beyondvis.engine import load_checkpoint, save_checkpoint
from beyondvis.engine.checkpoint import CheckpointError


def _saved(tmp_path):
    weights = torch.arange(4096, dtype=torch.float32)
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": weights}, "step": 7})
    return path, weights.numpy().tobytes()


def test_round_trip_keeps_content_and_hides_the_digest(tmp_path):
    path, _ = _saved(tmp_path)
    state = load_checkpoint(path)
    assert state["step"] == 7 and torch.equal(state["model"]["w"], torch.arange(4096.0))
    assert "sha256" not in state


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_a_flipped_byte_inside_the_weights_is_detected(tmp_path, where):
    path, weights = _saved(tmp_path)
    raw = bytearray(path.read_bytes())
    start = bytes(raw).index(weights[:64])  # torch stores tensor data uncompressed
    raw[start + int(len(weights) * where)] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="c.pt"):
        load_checkpoint(path)


def test_any_flipped_byte_is_an_error_or_the_same_content(tmp_path):
    path, _ = _saved(tmp_path)
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    for offset in rng.choice(len(good), size=40, replace=False):
        raw = bytearray(good)
        raw[int(offset)] ^= 0xFF
        path.write_bytes(bytes(raw))
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            continue
        # zip padding / unused header bytes: then the content must be exactly the original
        assert state["step"] == 7 and torch.equal(state["model"]["w"], torch.arange(4096.0))


def test_a_truncated_checkpoint_is_an_error(tmp_path):
    path, _ = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
