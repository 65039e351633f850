"""Two trainings into one run folder: the second stops at once and the first's files stay whole."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from beyondvis.engine import TrainConfig, Trainer
from beyondvis.engine.trainer import RUN_LOCK
from beyondvis.utils.locks import FolderLockedError, folder_lock


def _trainer(out):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 3), torch.randn(16, 1))
    cfg = TrainConfig(out_dir=str(out), batch_size=8, epochs=2, device="cpu", progress=False)

    def step(model, batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    return Trainer(nn.Linear(3, 1), cfg, data, step)


def test_a_second_trainer_on_a_busy_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    _trainer(out).fit()
    before = (out / "metrics.csv").read_text()
    with folder_lock(out, RUN_LOCK):  # another job is training into the folder
        with pytest.raises(FolderLockedError, match="being written by process"):
            _trainer(out).fit(resume=False)
    assert (out / "metrics.csv").read_text() == before  # nothing deleted or appended
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows and not (out / RUN_LOCK).exists()


def test_a_truncated_last_checkpoint_on_resume_is_a_one_line_error(tmp_path):
    from beyondvis.engine.checkpoint import CheckpointError
    from beyondvis.errors import BeyondvisError

    out = tmp_path / "run"
    trainer = _trainer(out)
    trainer.config.epochs = 1
    trainer.fit()
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="last.pt") as err:
        _trainer(out).fit()
    assert isinstance(err.value, BeyondvisError)  # what the CLI prints as one line
    assert (out / "metrics.csv").is_file()  # the run's record is still there
