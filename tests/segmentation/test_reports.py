"""``beyondvis.segmentation`` reports (what ``rsis eval|tune-stop|data`` print): the documented
objects from a tiny trained checkpoint, their terminal text, and one-line refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from beyondvis.segmentation import (
    SegmentationRunError,
    dataset_summary,
    eval_lines,
    evaluate_checkpoint,
    load_rsis_config,
    sweep_lines,
    train,
    tune_stop_threshold,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_cvppp import make_cvppp  # noqa: E402
from test_rsis_cli import _args  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("rsis")
    root = make_cvppp(tmp / "A1", n=8)
    cfg = load_rsis_config("cvppp", [*_args(tmp, root), "train.epochs=1"])
    result = train(cfg, resume=False)
    return cfg, result.last_checkpoint, tmp


def test_evaluate_checkpoint_object_and_lines(run):
    cfg, ckpt, tmp = run
    out = evaluate_checkpoint(ckpt, "test", stop_threshold=0.3, plot=tmp / "err.png")
    assert list(out)[:7] == ["format", "checkpoint", "dataset", "split", "image_size",
                             "resolution", "stop_threshold"]  # fmt: skip
    assert out["format"] == "beyondvis.rsis.eval/1" and out["num_images"] == 2
    assert out["stop_threshold"] == 0.3 and out["skipped_items"] == []
    assert out["plot"] == str(tmp / "err.png") and (tmp / "err.png").stat().st_size > 0
    lines = eval_lines(out)
    assert lines[0] == f"{out['dataset']} test: 2 images (original resolution)"
    assert lines[1].startswith("  SBD     ") and lines[3].startswith("  AP      ap ")
    shown = eval_lines({**out, "skipped_items": [{"item": "p9", "reason": "unreadable"}]})
    assert shown[-1] == "  skipped p9: unreadable"
    small = evaluate_checkpoint(ckpt, "test", resolution="model")
    assert small["resolution"] == "model" and "plot" not in small


def test_tune_stop_threshold_picks_and_marks_the_best(run):
    _, ckpt, _ = run
    out = tune_stop_threshold(ckpt, "val", [0.2, 0.6, 0.9])
    assert out["format"] == "beyondvis.rsis.tune-stop/1"
    assert [r["stop_threshold"] for r in out["sweep"]] == [0.2, 0.6, 0.9]
    assert out["best"]["sbd"] == max(r["sbd"] for r in out["sweep"])
    by_dic = tune_stop_threshold(ckpt, "val", [0.2, 0.6, 0.9], pick="abs_dic")
    assert by_dic["best"]["abs_dic"] == min(r["abs_dic"] for r in by_dic["sweep"])
    lines = sweep_lines(out)
    assert lines[0].split() == ["threshold", "SBD", "DiC", "|DiC|"]
    marked = [line for line in lines if line.endswith("<- best")]
    assert len(marked) == 1 and marked[0].split()[0] == f"{out['best']['stop_threshold']:.2f}"
    with pytest.raises(SegmentationRunError, match="pick must be one of sbd, abs_dic"):
        tune_stop_threshold(ckpt, pick="iou")


def test_missing_or_foreign_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(SegmentationRunError, match="checkpoint not found: "):
        evaluate_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SegmentationRunError, match="cannot evaluate .*bad.pt: "):
        evaluate_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(SegmentationRunError, match="cannot load .*bad.pt: "):
        tune_stop_threshold(tmp_path / "bad.pt")


def test_dataset_summary_counts_objects_per_split(run):
    cfg, _, _ = run
    out = dataset_summary(cfg)
    assert out["format"] == "beyondvis.rsis.data/1" and out["classes"] == ["leaf"]
    sizes = {name: s["images"] for name, s in out["splits"].items()}
    assert sizes == {"train": 5, "val": 1, "test": 2}
    for s in out["splits"].values():
        assert 1 <= s["objects_min"] <= s["objects_mean"] <= s["objects_max"]
