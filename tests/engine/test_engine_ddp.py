"""A real 2-process DistributedDataParallel run on CPU (gloo), launched like torchrun does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from beyondvis.engine import FeatureCache

TASK = Path(__file__).with_name("tiny_task.py")
TIMEOUT = 600  # seconds; a hang, not a slow machine, should fail the test
sys.path.insert(0, str(TASK.parent))
from tiny_task import NoisyPoints  # noqa: E402


@pytest.mark.skipif(not dist.is_available(), reason="torch built without distributed support")
def test_two_process_ddp_matches_single_process_with_same_global_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    # No dropout: the ranks draw different dropout masks than one process would.
    common = ["--epochs", "2", "--dropout", "0"]
    # One after the other: run side by side, three processes shared two cores with the other
    # pytest worker, and a fixed 120 s limit failed the test on a busy machine. The limits
    # only catch a hang; they do not time anything.
    single = subprocess.run(
        [sys.executable, str(TASK), str(single_dir), "--batch-size", "8", *common],
        env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert single.returncode == 0, single.stdout + single.stderr
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(TASK), str(ddp_dir), "--batch-size", "4", "--cache", *common],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    ddp_out = ddp.stdout
    assert ddp.returncode == 0, ddp_out

    rank0 = torch.load(ddp_dir / "final_rank0.pt", weights_only=True)
    rank1 = torch.load(ddp_dir / "final_rank1.pt", weights_only=True)
    reference = torch.load(single_dir / "final_rank0.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"ranks disagree on {key}"
        # Per-rank batches of 4 are the two halves of the single-process batch of 8, and DDP
        # averages the gradients, so only float summation order differs.
        torch.testing.assert_close(rank0[key], reference[key], rtol=1e-5, atol=1e-6)
    # Rank 0 alone wrote the run's files; the loss went down.
    assert not list(ddp_dir.glob("*rank1*.csv"))
    lines = (ddp_dir / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    epoch_rows = [dict(zip(header, line.split(","))) for line in lines[1:] if ",epoch," in line]
    losses = [float(row["train_loss"]) for row in epoch_rows]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert "steps=16 epochs=2" in ddp_out

    # Feature caching under the same 2-process group: the ranks split the items, rank 0 writes
    # the meta, and both see the complete cache.
    assert "rank0 cached=60" in ddp_out and "rank1 cached=60" in ddp_out
    cache = FeatureCache(ddp_dir / "cache")
    first_layer = torch.nn.Linear(5, 16)
    first_layer.load_state_dict({k[2:]: v for k, v in rank0.items() if k.startswith("0.")})
    inputs = torch.stack([torch.as_tensor(NoisyPoints().x[i]) for i in range(60)])
    with torch.no_grad():
        expected = first_layer(inputs)
    torch.testing.assert_close(torch.stack([cache[i] for i in range(60)]), expected)
