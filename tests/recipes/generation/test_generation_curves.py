"""Validation-perplexity curves of one run and of consecutive (warm-started) stages."""

from __future__ import annotations

import pytest

from beyondvis.cli.main import main
from beyondvis.recipes.generation.curves import chained_curve, plot_perplexity, read_curve


def _metrics(path, rows):
    lines = ["step,epoch,split,loss,lr,train_loss,val_ppl"]
    for step, ppl in rows:
        lines.append(f"{step - 5},1,train,3.0,0.001,,")
        lines.append(f"{step},1,epoch,,,3.0,{ppl}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_curve_keeps_val_rows_and_the_last_of_a_rewritten_step(tmp_path):
    csv = _metrics(tmp_path / "m.csv", [(100, 80.0), (200, 50.0), (200, 49.0)])
    assert read_curve(csv) == [(100, 80.0), (200, 49.0)]


def test_chained_stages_continue_the_step_axis(tmp_path):
    a = _metrics(tmp_path / "a.csv", [(400, 90.0), (800, 60.0)])
    b = _metrics(tmp_path / "b.csv", [(300, 55.0), (600, 52.0)])
    assert chained_curve([a, b]) == [[(400, 90.0), (800, 60.0)], [(1100, 55.0), (1400, 52.0)]]
    empty = tmp_path / "e.csv"
    empty.write_text("step,epoch,split,loss,lr,train_loss,val_ppl\n")
    with pytest.raises(ValueError, match="no val_ppl"):
        chained_curve([a, empty])


def test_plot_and_cli_write_a_png(tmp_path, capsys):
    a = _metrics(tmp_path / "a.csv", [(400, 90.0), (800, 60.0)])
    b = _metrics(tmp_path / "b.csv", [(300, 55.0)])
    points = plot_perplexity([a, b], tmp_path / "p.png", reference=90.6)
    assert points == [(400, 90.0), (800, 60.0), (1100, 55.0)]
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = ["generation", "curve", str(a), str(b), "--out", str(tmp_path / "c.png")]
    assert main([*args, "--final", "30.0", "--final-label", "with memory"]) == 0
    assert "step   1100  val_ppl     55.00" in capsys.readouterr().out
