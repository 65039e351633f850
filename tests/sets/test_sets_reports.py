"""``beyondvis.sets`` reports (what ``sets eval|tune`` print): a checkpoint scored on its own
split and on a folder, the terminal lines, and one-line refusals naming the checkpoint."""

from __future__ import annotations

import pytest
import torch
from test_sets_eval_tune import _config, _miml_folder

from beyondvis.sets import (
    SetsRunError,
    eval_lines,
    load_sets_config,
    score_checkpoint,
    train,
    tune_summary_line,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("sets")
    path, _ = _config(tmp)
    cfg = load_sets_config(str(path), ["train.epochs=1"])
    result = train(cfg, resume=False)
    return result.best_checkpoint, tmp


def test_score_checkpoint_on_its_split_and_on_a_folder(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    own = score_checkpoint(ckpt, plot=tmp_path / "f1.png")
    assert own["num_images"] == 4 and "_metrics" not in own
    assert own["plot"] == str(tmp_path / "f1.png") and (tmp_path / "f1.png").stat().st_size > 0
    lines = eval_lines(own)
    assert lines[0] == f"{own['model']} on test: 4 images"
    assert any(line.startswith("  o_f1      ") for line in lines)
    n = _miml_folder(tmp_path / "miml")
    folder = score_checkpoint(ckpt, tmp_path / "miml", "miml")
    assert folder["num_images"] == n and folder["split"] == "all" and "plot" not in folder
    assert eval_lines(folder, None, tmp_path / "miml")[0] == (
        f"{folder['model']} on {tmp_path / 'miml'} (miml, all): {n} images"
    )
    assert any(line.startswith("  note: ") for line in eval_lines(folder, None, "x"))


def test_unloadable_checkpoints_are_named(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SetsRunError, match="cannot load .*bad.pt: "):
        score_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(SetsRunError, match=r"cannot score .* with .*bad.pt: "):
        score_checkpoint(tmp_path / "bad.pt", tmp_path)
    with pytest.raises(SetsRunError, match="needs a folder"):
        score_checkpoint(tmp_path / "bad.pt", dataset="miml")


def test_report_lines_show_skips_warnings_and_the_tune_summary(tmp_path):
    report = {"model": "ff_td", "num_images": 3.0, "o_f1": 0.5, "p@1": 1.0,
              "skipped_images": 2, "warning": "cannot predict the empty set"}  # fmt: skip
    assert eval_lines(report, "val") == [
        "ff_td on val: 3 images", "  o_f1      0.5000", "  p@1       1.0000",
        "  skipped: 2 unreadable image(s)", "  warning: cannot predict the empty set",
    ]  # fmt: skip
    summary = {"model": "lstm", "trials": 5, "completed": 3, "pruned": 2,
               "trial_epochs_total": 7.5, "cpu_seconds_trials": 12.4,
               "cpu_seconds_this_session": 3.6, "best_val_o_f1": 0.61234}  # fmt: skip
    line = tune_summary_line(summary, tmp_path)
    assert line.startswith("lstm: 5 trials (3 completed, 2 pruned), 7.5 training epochs, ")
    assert "total CPU time 12 s over all trials (4 s this session); best val O-F1 0.6123" in line
    assert line.endswith(f"config {tmp_path / 'best_config.yaml'}")
