"""End to end from the CLI on a tiny JSONL dataset: cache features, train, eval --json, tune,
multi-seed table. Uses the real EfficientNet-Lite0 at 64 px so it stays fast."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from beyondvis.cli.main import main

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _dataset(tmp_path):
    """Images whose left/right halves carry colours; the label set is the colours present."""
    rng = np.random.RandomState(0)
    names = list(COLORS)
    lines = {"train": [], "test": []}
    for i in range(24):
        labels = [names[j] for j in range(3) if rng.rand() < 0.5]
        if i % 8 == 0:
            labels = []  # empty sets exist too
        image = np.full((48, 48, 3), 128, np.uint8)
        for k, label in enumerate(labels):
            image[:, k * 16 : (k + 1) * 16] = COLORS[label]
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        lines["test" if i >= 20 else "train"].append({"image": f"{i}.png", "labels": labels})
    (tmp_path / "broken.png").write_bytes(b"not an image")
    lines["test"].append({"image": "broken.png", "labels": ["red"]})
    for split, items in lines.items():
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(x) for x in items) + "\n")
    config = {
        "data": {
            "dataset": "jsonl",
            "train_file": str(tmp_path / "train.jsonl"),
            "test_file": str(tmp_path / "test.jsonl"),
            "image_size": 64,
            "val_fraction": 0.2,
        },
        "encoder": {"cache_dir": str(tmp_path / "cache"), "cache_batch_size": 8},
        "model": {"embed_dim": 16, "hidden_size": 16, "tf_heads": 2, "tf_layers": 1},
        "train": {
            "out_dir": str(tmp_path / "run"),
            "epochs": 2,
            "batch_size": 8,
            "monitor": "val_o_f1",
            "monitor_mode": "max",
            "progress": False,
            "device": "cpu",
        },
    }
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_eval_tune_table(tmp_path, capsys):
    config = _dataset(tmp_path)
    assert main(["sets", "train", "--config", str(config), "model.name=lstm"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["model"] == "lstm" and trained["epochs"] == 2
    assert (
        main(
            [
                "sets",
                "eval",
                "--checkpoint",
                trained["best_checkpoint"],
                "--json",
                "--plot",
                str(tmp_path / "f1.png"),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    by_card = report["i_f1_by_cardinality"].values()  # I-F1 is their image-weighted mean
    assert report["i_f1"] == pytest.approx(sum(c["mean"] * c["images"] for c in by_card) / 4)
    assert report["num_images"] == 4  # the broken test image was skipped
    assert (tmp_path / "f1.png").is_file()

    # ff_td: the eval output flags that it cannot predict the empty set.
    out_td = str(tmp_path / "run_td")
    assert (
        main(
            [
                "sets",
                "train",
                "--config",
                str(config),
                "model.name=ff_td",
                f"train.out_dir={out_td}",
                "train.epochs=1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["sets", "eval", "--checkpoint", f"{out_td}/last.pt", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["represents_empty_set"] is False and "empty set" in report["warning"]

    assert (
        main(
            [
                "sets",
                "tune",
                "--config",
                str(config),
                "--out",
                str(tmp_path / "tune"),
                "--trials",
                "2",
                "--max-resource",
                "3",
                "--unit-epochs",
                "0.5",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["completed"] + summary["pruned"] == 2 and "train.lr" in summary["best_params"]

    spec = tmp_path / "table.yaml"
    spec.write_text(
        f"base: {config}\nout_dir: {tmp_path / 'table'}\nseeds: [0, 1]\n"
        "overrides: ['train.epochs=1']\nmodels:\n  ff_bce: []\n"
        f"  tf_set: {{config: {config}, overrides: []}}\nprobe: [plain]\n"
    )
    assert main(["sets", "table", "--spec", str(spec)]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and "rank" not in line]
    names = {row.split("|")[2].strip() for row in rows}
    probe = [n for n in names if n.startswith("linear probe (C=")]
    assert names - set(probe) == {"ff_bce", "tf_set"} and len(probe) == 1
    models = [row for row in rows if "linear probe" not in row]
    assert all(row.count("(") == 5 and row.split("|")[-3].strip() == "2" for row in models)
    assert (tmp_path / "table" / "f1_by_cardinality.png").is_file()


def test_bad_config_is_a_clean_error(tmp_path, capsys):
    config = _dataset(tmp_path)
    assert main(["sets", "train", "--config", str(config), "model.name=nope"]) == 1
    assert "unknown set model" in capsys.readouterr().err
    assert main(["sets", "train", "--config", str(config), "model.nam=ff_bce"]) == 1
    assert main(["sets", "eval", "--checkpoint", str(tmp_path / "missing.pt")]) == 1


def test_models_listing(capsys):
    assert main(["sets", "models"]) == 0
    out = capsys.readouterr().out
    assert "ff_td" in out and "cannot predict the empty set" in out and "tf_set" in out
