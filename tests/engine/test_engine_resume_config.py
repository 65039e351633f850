"""A resume whose settings differ from the stored run's refuses, naming the keys (``force``: go on)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from beyondvis.engine import (
    ResumeConfigError,
    TrainConfig,
    Trainer,
    load_checkpoint,
    seed_everything,
)


def problem(hidden: int = 1):
    seed_everything(0)
    x = torch.randn(24, 3)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    model = nn.Sequential(nn.Linear(3, hidden), nn.Linear(hidden, 1))
    return data, model


def step(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def fit(tmp_path, resume="auto", hidden=1, extra=None, **kw):
    data, model = problem(hidden)
    cfg = TrainConfig(
        **{
            "out_dir": str(tmp_path / "run"),
            "batch_size": 8,
            "device": "cpu",
            "progress": False,
            "epochs": 2,
            "lr": 0.01,
            **kw,
        }  # fmt: skip
    )
    extra = {"config": {"model": {"hidden": hidden}, "train": {}}, **(extra or {})}
    return Trainer(model, cfg, data, step, checkpoint_extra=extra).fit(resume=resume)


def test_changed_lr_refuses_and_names_the_key(tmp_path):
    first = fit(tmp_path)
    assert first.steps == 6
    with pytest.raises(
        ResumeConfigError, match=r"holds a run with other settings: train.lr 0.01 -> 0.02$"
    ) as err:
        fit(tmp_path, lr=0.02)
    assert [key for key, _, _ in err.value.diff] == ["train.lr"]
    # the stored run is untouched by the refusal
    assert load_checkpoint(tmp_path / "run" / "last.pt")["config"]["lr"] == 0.01


def test_other_model_refuses_before_loading_weights(tmp_path):
    fit(tmp_path)
    # hidden=4 would fail in load_state_dict (size mismatch) with a traceback
    with pytest.raises(ResumeConfigError, match=r"model.hidden 1 -> 4"):
        fit(tmp_path, hidden=4)


def test_longer_training_and_reporting_changes_resume(tmp_path):
    fit(tmp_path)
    more = fit(tmp_path, epochs=3, log_every=3, device="cpu", progress=False)
    assert more.steps == 9 and more.epochs == 3  # continued, not restarted


def test_force_resumes_with_the_new_values(tmp_path):
    fit(tmp_path)
    result = fit(tmp_path, resume="force", lr=0.02, epochs=3)
    assert result.steps == 9
    assert load_checkpoint(tmp_path / "run" / "last.pt")["config"]["lr"] == 0.02


def test_an_older_checkpoint_without_a_key_still_resumes(tmp_path):
    fit(tmp_path)
    # a newer version adds an extra the old checkpoint lacks: not a difference
    assert fit(tmp_path, epochs=3, extra={"new_field": 1}).steps == 9
