"""Exact resume: a run killed mid-epoch and resumed ends with the same weights as an unbroken run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from beyondvis.engine import load_checkpoint

TASK = Path(__file__).with_name("tiny_task.py")
sys.path.insert(0, str(TASK.parent))
from tiny_task import build  # noqa: E402


def run_task(out_dir: Path, *args: str, expect_rc: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, str(TASK), str(out_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # catches a hang; a busy machine must not fail the test
    )
    assert proc.returncode == expect_rc, proc.stdout + proc.stderr
    return proc


def final_weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / "final_rank0.pt", weights_only=True)


def test_killed_run_resumes_to_identical_weights(tmp_path):
    full, broken = tmp_path / "full", tmp_path / "broken"
    run_task(full)
    # 60 items / batch 8 = 8 steps per epoch; step 11 is inside epoch 2. The last periodic
    # checkpoint is at step 9, so steps 10-11 are lost and must be replayed identically.
    run_task(broken, "--kill-at", "11", expect_rc=3)
    assert not (broken / "final_rank0.pt").exists()
    ckpt = load_checkpoint(broken / "last.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (9, 1, 1)
    assert ckpt["extra"] == {"task": "tiny"}
    run_task(broken)

    a, b = final_weights(full), final_weights(broken)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The logged history is the same too (rows replayed after the checkpoint are not doubled).
    rows_full = (full / "metrics.csv").read_text().splitlines()
    rows_broken = (broken / "metrics.csv").read_text().splitlines()
    assert rows_full == rows_broken
    last = load_checkpoint(broken / "last.pt")
    assert last["step"] == 24 and last["epoch"] == 3


def test_finished_run_is_not_trained_again(tmp_path):
    out = str(tmp_path / "run")
    first = build(out, epochs=1, batch_size=8, dropout=0.3, kill_at=None).fit()
    assert first.steps == 8
    before = load_checkpoint(tmp_path / "run" / "last.pt")
    trainer = build(out, epochs=1, batch_size=8, dropout=0.3, kill_at=None)

    def must_not_train(model, batch):
        raise AssertionError("a finished run trained again")

    trainer.step_fn = must_not_train
    again = trainer.fit()
    assert again.steps == 8 and again.epochs == 1 and again.history == first.history
    after = load_checkpoint(tmp_path / "run" / "last.pt")
    assert after["step"] == before["step"]
    for key in before["model"]:
        assert torch.equal(before["model"][key], after["model"][key])
