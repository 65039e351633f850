"""The same ``sets train`` twice gives bit-identical metrics on the CPU.

The first run caches the backbone features, the second reuses them, so the two start training
from different global RNG states; before the model was seeded at build time (the Trainer seeds
only when fit() starts) their heads differed and the losses parted from step 3 on.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from beyondvis.cli.main import main

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path, run: str):
    rng = np.random.RandomState(0)
    lines = []
    for i in range(20):
        labels = [name for name in COLORS if rng.rand() < 0.5]
        image = np.full((32, 32, 3), 128, np.uint8)
        for k, label in enumerate(labels):
            image[:, k * 10 : (k + 1) * 10] = COLORS[label]
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        lines.append({"image": f"{i}.png", "labels": labels})
    for split, items in (("train", lines[:16]), ("test", lines[16:])):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(x) for x in items) + "\n")
    config = {
        "data": {
            "dataset": "jsonl",
            "train_file": str(tmp_path / "train.jsonl"),
            "test_file": str(tmp_path / "test.jsonl"),
            "image_size": 32,
            "val_fraction": 0.25,
        },
        "encoder": {"cache_dir": str(tmp_path / "cache"), "cache_batch_size": 8},
        "model": {"embed_dim": 8, "hidden_size": 8, "dropout": 0.5},
        "train": {
            "out_dir": str(tmp_path / run),
            "epochs": 2,
            "batch_size": 4,
            "log_every": 1,
            "progress": False,
            "device": "cpu",
        },
    }
    path = tmp_path / f"{run}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _metrics(folder) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_same_sets_train_twice_gives_identical_metrics(tmp_path, capsys):
    for run in ("a", "b"):
        assert main(["sets", "train", "--config", str(_config(tmp_path, run))]) == 0
        torch.rand(1000)  # whatever else the process did in between must not matter
    capsys.readouterr()
    first, second = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    steps = [row for row in first if row["split"] == "train"]
    assert len(steps) == 6  # a loss per step (log_every 1): steps 3+ are where runs parted
    assert first == second
    # bit-identical: the files themselves (metrics.csv holds no wall times)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (
        tmp_path / "b" / "metrics.csv"
    ).read_bytes()
