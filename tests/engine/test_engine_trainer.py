"""Trainer behaviour in one process: early stopping, max_steps, best checkpoints, metrics.csv."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from beyondvis.engine import (
    ResumableSampler,
    TrainConfig,
    Trainer,
    load_checkpoint,
    move_to_device,
    seed_everything,
)


def tiny_problem(n: int = 32):
    seed_everything(0)
    x = torch.randn(n, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    return TensorDataset(x, y), nn.Linear(3, 1)


def mse_step(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def config(tmp_path, **kw) -> TrainConfig:
    base = {"out_dir": str(tmp_path / "run"), "batch_size": 8, "device": "cpu", "progress": False}
    return TrainConfig(**{**base, **kw})


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_loss_decreases_and_files_are_written(tmp_path):
    data, model = tiny_problem()
    cfg = config(tmp_path, epochs=5, lr=0.05, log_every=2, scheduler="step", scheduler_step_size=8)
    result = Trainer(model, cfg, data, mse_step).fit()
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 5 and all(b < a for a, b in zip(losses, losses[1:]))
    assert result.steps == 20 and result.epochs == 5
    assert result.best_metric == min(losses)
    best = load_checkpoint(result.best_checkpoint)
    assert best["state"]["best_metric"] == min(losses)
    assert (tmp_path / "run" / "config.yaml").is_file()
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [int(r["step"]) for r in train_rows] == list(range(2, 21, 2))
    # StepLR decays every 8 optimizer steps.
    assert float(train_rows[0]["lr"]) == pytest.approx(0.05)
    assert float(train_rows[-1]["lr"]) == pytest.approx(0.05 * 0.01)


def test_early_stopping_on_a_metric_that_stops_improving(tmp_path):
    data, model = tiny_problem()
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.9, 0.9])  # best at eval 2, then 2 without gain

    def eval_fn(m):
        return {"acc": next(scores)}

    cfg = config(tmp_path, epochs=6, monitor="acc", monitor_mode="max", early_stopping_patience=2)
    result = Trainer(model, cfg, data, mse_step, eval_fn).fit()
    assert result.stopped_early
    assert result.epochs == 4 and result.best_metric == 0.6
    assert load_checkpoint(result.best_checkpoint)["step"] == 8  # written after epoch 2
    # A resume of a run that stopped early does nothing more.
    again = Trainer(model, cfg, data, mse_step, eval_fn).fit()
    assert again.steps == 16 and again.stopped_early


def test_max_steps_stops_mid_epoch_and_a_longer_budget_continues(tmp_path):
    data, model = tiny_problem()
    result = Trainer(model, config(tmp_path, epochs=3, max_steps=6), data, mse_step).fit()
    assert result.steps == 6 and result.epochs == 1
    ckpt = load_checkpoint(result.last_checkpoint)
    assert ckpt["batch_in_epoch"] == 2
    more = Trainer(model, config(tmp_path, epochs=3, max_steps=10), data, mse_step).fit()
    assert more.steps == 10


def test_missing_monitor_metric_is_named(tmp_path):
    data, model = tiny_problem()
    cfg = config(tmp_path, monitor="val_loss")
    with pytest.raises(KeyError, match="'val_loss'.*train_loss"):
        Trainer(model, cfg, data, mse_step).fit()


def test_bad_step_outputs_are_reported(tmp_path):
    data, model = tiny_problem()
    with pytest.raises(KeyError, match="'loss'"):
        Trainer(model, config(tmp_path), data, lambda m, b: {"l": mse_step(m, b)}).fit(False)

    def nan_step(m, b):
        return mse_step(m, b) * float("nan")

    with pytest.raises(FloatingPointError, match="step 1"):
        Trainer(model, config(tmp_path), data, nan_step).fit(False)
    with pytest.raises(TypeError, match="holds a set"):
        Trainer(model, config(tmp_path), data, mse_step, checkpoint_extra={"a": {1}})


def test_grad_clip_limits_the_update(tmp_path):
    data, model = tiny_problem()
    start = torch.cat([model.weight.detach().flatten(), model.bias.detach().flatten()])
    cfg = config(tmp_path, optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=1e-3, max_steps=1)
    Trainer(model, cfg, data, lambda m, b: 1e6 * mse_step(m, b)).fit(False)
    end = torch.cat([model.weight.detach().flatten(), model.bias.detach().flatten()])
    assert 0 < (end - start).norm() <= 1e-3 + 1e-6  # lr 1 * gradient clipped to norm 1e-3


def test_sampler_shards_cover_the_epoch_and_resume_position():
    shards = [ResumableSampler(10, seed=3, rank=r, world_size=3) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    seen = sorted(i for s in shards for i in s)
    assert sorted(set(seen)) == list(range(10)) and len(seen) == 12  # padded to 4 per rank
    one = ResumableSampler(10, seed=3)
    one.set_epoch(2)
    full = list(one)
    one.set_epoch(2, start=4)
    assert list(one) == full[4:] and len(one) == 6
    one.set_epoch(3)
    assert list(one) != full


def test_move_to_device_walks_containers():
    from beyondvis.io import ImageBatch

    batch = {
        "a": [torch.zeros(1), (torch.ones(1), "x")],
        "b": ImageBatch(torch.zeros(2), [0], ["p"]),
    }
    moved = move_to_device(batch, torch.device("cpu"))
    assert moved["a"][1][1] == "x" and isinstance(moved["b"], ImageBatch)


class NoisyItems(torch.utils.data.Dataset):
    """Items with random noise drawn at fetch time (an augmentation)."""

    def __init__(self):
        self.x = torch.randn(24, 3, generator=torch.Generator().manual_seed(5))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        import random

        import numpy as np

        noise = torch.randn(3) + float(np.random.rand()) + random.random()
        return self.x[i] + 0.1 * noise, self.x[i].sum(0, keepdim=True)


def test_augmentations_do_not_depend_on_worker_count(tmp_path):
    """Per-item seeding: 0 or 2 loader workers give bit-identical training."""
    finals = []
    for workers in (0, 2):
        seed_everything(0)
        model = nn.Linear(3, 1)
        cfg = config(tmp_path / str(workers), epochs=2, num_workers=workers)
        Trainer(model, cfg, NoisyItems(), mse_step).fit()
        finals.append(torch.cat([model.weight.flatten(), model.bias]).detach())
    assert torch.equal(finals[0], finals[1])


def test_tensorboard_events_are_written(tmp_path):
    pytest.importorskip("tensorboard")
    data, model = tiny_problem()
    Trainer(model, config(tmp_path, tensorboard=True, log_every=1), data, mse_step).fit()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_fresh_start_replaces_an_earlier_run(tmp_path):
    data, model = tiny_problem()
    scores = iter([0.9, 0.1])
    cfg = config(tmp_path, monitor="acc", monitor_mode="max")
    first = Trainer(model, cfg, data, mse_step, lambda m: {"acc": next(scores)}).fit()
    assert first.best_metric == 0.9
    second = Trainer(model, cfg, data, mse_step, lambda m: {"acc": next(scores)}).fit(False)
    assert second.best_metric == 0.1 and second.steps == 4
    assert load_checkpoint(second.best_checkpoint)["best_metric"] == 0.1
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    assert [r["acc"] for r in rows if r["split"] == "epoch"] == ["0.1"]
