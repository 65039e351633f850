"""End to end through the CLI on a tiny CVPPP-layout folder: train, eval, export, predict."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from beyondvis.cli.main import main
from beyondvis.segmentation.metrics import decode_rle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_cvppp import make_cvppp  # noqa: E402


def _args(tmp_path: Path, root: Path) -> list[str]:
    return [
        f"data.root={root}",
        "data.image_size=64",
        "data.test_fraction=0.25",
        "data.val_fraction=0.125",
        "augment.views=2",
        "model.hidden=8",
        "model.num_layers=2",
        "model.min_channels=8",
        f"encoder.cache_dir={tmp_path / 'cache'}",
        f"train.out_dir={tmp_path / 'run'}",
        "train.epochs=2",
        "train.batch_size=4",
        "train.progress=false",
        "inference.max_steps=4",
    ]


def test_train_eval_export_predict(tmp_path, capsys):
    torch.set_num_threads(1)
    root = make_cvppp(tmp_path / "A1", n=8)
    assert main(["rsis", "train", "--config", "cvppp", *_args(tmp_path, root)]) == 0
    train_out = json.loads(capsys.readouterr().out)
    assert train_out["format"] == "beyondvis.rsis.train/1" and train_out["epochs"] == 2
    best = Path(train_out["best_checkpoint"])
    assert best.is_file()

    assert (
        main(
            [
                "rsis",
                "eval",
                "--checkpoint",
                str(best),
                "--json",
                "--plot",
                str(tmp_path / "err.png"),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "beyondvis.rsis.eval/1" and report["num_images"] == 2
    for key in ("sbd", "dic", "abs_dic", "ap", "ap50", "ap60", "ap70", "ap80", "order_kendall_tau"):
        assert key in report
    assert (tmp_path / "err.png").stat().st_size > 0

    assert (
        main(
            ["rsis", "tune-stop", "--checkpoint", str(best), "--json", "--thresholds", "0.2", "0.6"]
        )
        == 0
    )
    sweep = json.loads(capsys.readouterr().out)
    assert [r["stop_threshold"] for r in sweep["sweep"]] == [0.2, 0.6] and "sbd" in sweep["best"]

    bundle = tmp_path / "model.pt"
    assert main(["rsis", "export", "--checkpoint", str(best), "--out", str(bundle)]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["classes"] == ["leaf"] and meta["image_size"] == 64

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    good = root / "plant001_rgb.png"
    code = main(["rsis", "predict", str(good), str(bad), "--model", str(bundle), "--out",
                 str(tmp_path / "out"), "--json", "--stop-threshold", "0.0"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert lines[1]["image"] == str(bad) and "error" in lines[1]
    assert "skipped" in captured.err
    result = lines[0]
    assert result["format"] == "beyondvis.rsis.predict/1"
    assert len(result["instances"]) == 4  # stop threshold 0: runs to max_steps
    inst = result["instances"][0]
    assert inst["step"] == 1 and inst["class"] == "leaf" and len(inst["box"]) == 4
    assert decode_rle(inst["mask_rle"]).shape == (36, 40)  # original image size
    overlay = Image.open(tmp_path / "out" / "plant001_rgb_rsis.png")
    assert overlay.width == 40 and np.asarray(overlay).std() > 0


def test_bad_config_and_missing_data_are_one_line_errors(tmp_path, capsys, monkeypatch):
    # The packaged config trains into runs/rsis/cvppp under the working directory: run from an
    # empty folder, or a real run there answers "other settings" instead of the data error.
    monkeypatch.chdir(tmp_path)
    assert main(["rsis", "train", "--config", "cvppp", "model.skip=add"]) == 1
    assert "skip must be one of" in capsys.readouterr().err
    assert main(["rsis", "train", "--config", "cvppp", f"data.root={tmp_path / 'none'}"]) == 1
    assert "not found" in capsys.readouterr().err
    assert (
        main(
            ["rsis", "predict", "x.png", "--out", str(tmp_path), "--model", str(tmp_path / "m.pt")]
        )
        == 1
    )
    assert "not found" in capsys.readouterr().err


def test_finetune_path_trains_the_encoder_with_its_own_lr(tmp_path):
    from beyondvis.engine import load_checkpoint
    from beyondvis.segmentation.experiment import load_rsis_config, model_from_checkpoint, train

    torch.set_num_threads(1)
    root = make_cvppp(tmp_path / "A1", n=6)
    cfg = load_rsis_config(
        "cvppp",
        [*_args(tmp_path, root), "encoder.finetune=true", "encoder.lr=0.01", "train.max_steps=2",
         "train.epochs=1", "augment.views=3"],
    )  # fmt: skip
    result = train(cfg, resume=False)
    state = load_checkpoint(result.last_checkpoint)
    assert any(k.startswith("encoder.") for k in state["model"])
    assert len(state["optimizer"]["param_groups"]) == 2
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [cfg.train.lr, 0.01]
    model, _, _ = model_from_checkpoint(result.last_checkpoint)
    assert model.encoder is not None  # the fine-tuned encoder is restored from the checkpoint
