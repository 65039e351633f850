"""Checkpoint files: atomic replacement, safe loading, and the format-version check."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from beyondvis.engine import (
    FORMAT_VERSION,
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    restore_model,
    save_checkpoint,
    set_rng_state,
)


def test_roundtrip_with_rng_state_loads_weights_only(tmp_path):
    model = nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "rng": get_rng_state()})
    state = load_checkpoint(path)
    assert state["format_version"] == FORMAT_VERSION
    other = nn.Linear(3, 2)
    restore_model(other, state)
    assert torch.equal(other.weight, model.weight)

    # The RNG state survives weights_only loading and restores every generator.
    import random

    import numpy as np

    set_rng_state(state["rng"])
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp files left


def test_future_format_version_is_refused(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format_version": FORMAT_VERSION + 1, "model": {}}, path)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}.*upgrade"):
        load_checkpoint(path)


@dataclass
class NotPlain:
    x: int = 1


def test_foreign_and_broken_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="no format_version"):
        load_checkpoint(foreign)
    # Arbitrary pickled objects are never unpickled (weights_only).
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format_version": 1, "obj": NotPlain()}, unsafe)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(unsafe)


def test_saving_non_plain_metadata_fails_early(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['extra'\]\['cfg'\] holds a NotPlain"):
        save_checkpoint(tmp_path / "x.pt", {"extra": {"cfg": NotPlain()}})
    assert not (tmp_path / "x.pt").exists()
