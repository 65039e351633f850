"""A tiny training task run in subprocesses by the engine tests (resume after kill, DDP).

Usage: python tiny_task.py OUT_DIR [--kill-at N] [--epochs E] [--batch-size B] [--dropout P]
Writes ``final_rank<R>.pt`` (the model's state dict) next to the checkpoints when training ends.
With ``--kill-at N`` the process dies abruptly (os._exit, no clean-up) when step N+1 starts.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys

import torch
from torch import nn
from torch.utils.data import Dataset

from beyondvis.engine import (
    TrainConfig,
    Trainer,
    cache_features,
    load_config,
    seed_everything,
    shutdown_distributed,
)

N_ITEMS = 60


class NoisyPoints(Dataset):
    """Fixed points whose inputs get random noise per fetch (an augmentation the RNG drives)."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(123)
        self.x = torch.randn(N_ITEMS, 5, generator=generator)
        self.y = (self.x[:, :2].sum(1) > 0).long()

    def __len__(self) -> int:
        return N_ITEMS

    def __getitem__(self, index: int):
        return self.x[index] + 0.1 * torch.randn(5), self.y[index]


def make_model(dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))


def step_fn(model: nn.Module, batch):
    x, y = batch
    return {"loss": nn.functional.cross_entropy(model(x), y), "batch": float(len(y))}


def build(
    out_dir: str,
    *,
    epochs: int,
    batch_size: int,
    dropout: float,
    kill_at: int | None,
    extra_overrides: list[str] | None = None,
) -> Trainer:
    seed_everything(7)
    data = NoisyPoints()
    model = make_model(dropout)
    config = load_config(
        {
            "out_dir": out_dir,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": 0.05,
            "optimizer": "adamw",
            "weight_decay": 0.01,
            "scheduler": "cosine",
            "warmup_steps": 2,
            "grad_clip": 1.0,
            "seed": 11,
            "device": "cpu",
            "checkpoint_every_steps": 3,
            "log_every": 2,
            "monitor": "val_loss",
            "progress": False,
        },
        TrainConfig,
        extra_overrides,
    )
    calls = {"n": 0}

    def killing_step(model, batch):
        calls["n"] += 1
        if kill_at is not None and calls["n"] == kill_at + 1:
            os._exit(3)  # like SIGKILL: no finally blocks, no flushing
        return step_fn(model, batch)

    def eval_fn(model):
        logits = model(data.x)
        return {"val_loss": nn.functional.cross_entropy(logits, data.y).item()}

    return Trainer(model, config, data, killing_step, eval_fn, checkpoint_extra={"task": "tiny"})


def main(argv: list[str] | None = None) -> int:
    # a rank that aborts (SIGABRT at teardown) prints where its Python threads were
    faulthandler.enable()
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--cache", action="store_true", help="also cache features (DDP test)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.cache and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A group the caller created is reused by the engine and left open for later work.
        torch.distributed.init_process_group("gloo")
    trainer = build(
        args.out_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        dropout=args.dropout,
        kill_at=args.kill_at,
        extra_overrides=args.overrides,
    )
    result = trainer.fit(resume="auto")
    rank = int(os.environ.get("RANK", "0"))
    torch.save(trainer.model.state_dict(), os.path.join(args.out_dir, f"final_rank{rank}.pt"))
    if rank == 0:
        print(f"steps={result.steps} epochs={result.epochs} best={result.best_metric}")
    if args.cache:
        data = NoisyPoints()
        cache = cache_features(
            trainer.model[0], data.x, os.path.join(args.out_dir, "cache"), batch_size=7
        )
        print(f"rank{rank} cached={len(cache)}")
        # The group is ours (created above): the ranks meet at a barrier before it goes, so
        # none closes its connections while a peer is still in the last broadcast.
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
