"""What ``beyondvis sets eval|tune`` report, as library calls and the text a terminal shows.

:func:`score_checkpoint` scores a checkpoint on its own split or on any folder in a dataset
layout and returns the ``beyondvis.sets.eval/1`` object (docs/formats.md); :func:`eval_lines`
is its terminal view and :func:`tune_summary_line` the one-line summary of a Hyperband search.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from beyondvis.errors import BeyondvisError

EVAL_KEYS = ("o_f1", "c_f1", "i_f1", "iou", "card_err", "p@1")


class SetsRunError(BeyondvisError, ValueError):
    """A checkpoint that cannot be loaded or scored on the asked data."""


def score_checkpoint(
    checkpoint: str | os.PathLike,
    root: str | os.PathLike | None = None,
    dataset: str | None = None,
    split: str | None = None,
    device: Any = "cpu",
    plot: str | os.PathLike | None = None,
) -> dict:
    """The ``beyondvis.sets.eval/1`` report of ``checkpoint``.

    With ``root``: on the images of that folder (in ``dataset``'s layout, default the
    checkpoint's), ``split`` = train/val/test of its reader or ``all`` (default), on ``device``.
    Without: on the checkpoint's own ``split`` (default ``test``). ``plot`` also writes I-F1 by
    ground-truth cardinality. A checkpoint that cannot be loaded or scored is a
    :class:`SetsRunError` naming it.
    """
    from beyondvis.data import SetDataError
    from beyondvis.engine import CheckpointError
    from beyondvis.sets.experiment import evaluate_folder, load_trained, test_report
    from beyondvis.sets.metrics import plot_f1_by_cardinality

    problems = (CheckpointError, SetDataError, ValueError, KeyError)
    if root is not None:
        try:
            report = evaluate_folder(checkpoint, root, dataset, split or "all", device=device)
        except problems as exc:
            raise SetsRunError(f"cannot score {root} with {checkpoint}: {exc}") from None
    else:
        if dataset:
            raise SetsRunError("a dataset layout needs a folder (root) to read")
        try:
            prepared = load_trained(checkpoint)
        except problems as exc:
            raise SetsRunError(f"cannot load {checkpoint}: {exc}") from None
        report = test_report(prepared, split or "test")
    metrics = report.pop("_metrics")
    if plot:
        plot_f1_by_cardinality({report["model"]: metrics.f1_by_cardinality()}, plot)
        report["plot"] = str(plot)
    return report


def eval_lines(
    report: dict, split: str | None = None, root: str | os.PathLike | None = None
) -> list[str]:
    """The terminal's view of a :func:`score_checkpoint` report (the same ``split``/``root``)."""
    if root is not None:
        where = f"{root} ({report['dataset']}, {split or 'all'})"
    else:
        where = split or "test"
    lines = [f"{report['model']} on {where}: {int(report['num_images'])} images"]
    lines += [f"  {key:9s} {report[key]:.4f}" for key in EVAL_KEYS if key in report]
    lines += [f"  note: {note}" for note in report.get("notes", [])]
    if report.get("skipped_images"):
        lines.append(f"  skipped: {report['skipped_images']} unreadable image(s)")
    if "warning" in report:
        lines.append(f"  warning: {report['warning']}")
    return lines


def tune_summary_line(summary: dict, out: str | os.PathLike) -> str:
    """One line on a finished :func:`~beyondvis.sets.run_tune` search written to ``out``."""
    out = Path(out)
    return (
        f"{summary['model']}: {summary['trials']} trials ({summary['completed']} completed, "
        f"{summary['pruned']} pruned), {summary['trial_epochs_total']:g} training epochs, "
        f"total CPU time {summary['cpu_seconds_trials']:.0f} s over all trials "
        f"({summary['cpu_seconds_this_session']:.0f} s this session); best val O-F1 "
        f"{summary['best_val_o_f1']:.4f}; table {out / 'trials.md'}, plot "
        f"{out / 'trials.png'}, config {out / 'best_config.yaml'}"
    )
