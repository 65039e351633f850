"""What ``beyondvis rsis eval|tune-stop|data`` report, as library calls returning their documented
objects (docs/formats.md), and the text a terminal shows of each.

* :func:`evaluate_checkpoint`: SBD, DiC, mask AP and object order of a checkpoint on a split
  (``beyondvis.rsis.eval/1``).
* :func:`tune_stop_threshold`: SBD and DiC for a range of stop thresholds, and the best one
  (``beyondvis.rsis.tune-stop/1``).
* :func:`dataset_summary`: split sizes and objects per image of a config's dataset
  (``beyondvis.rsis.data/1``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from beyondvis.errors import BeyondvisError

log = logging.getLogger(__name__)


class SegmentationRunError(BeyondvisError, ValueError):
    """A checkpoint or split that cannot be evaluated (missing, foreign, empty)."""


def _load(checkpoint: Path, verb: str, data_root: str | None = None) -> tuple[Any, Any, Any]:
    """The model, config and splits of ``checkpoint``; a bad one is one line naming it."""
    from beyondvis.data import InstanceDataError
    from beyondvis.engine import CheckpointError
    from beyondvis.segmentation.experiment import model_from_checkpoint, read_splits

    if not checkpoint.is_file():
        raise SegmentationRunError(f"checkpoint not found: {checkpoint}")
    try:
        model, cfg, _ = model_from_checkpoint(checkpoint)
        if data_root:
            cfg.data = dataclasses.replace(cfg.data, root=data_root)
        splits = read_splits(cfg.data)
    except (CheckpointError, ValueError, KeyError, InstanceDataError) as exc:
        raise SegmentationRunError(f"cannot {verb} {checkpoint}: {exc}") from None
    return model, cfg, splits


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    split: str = "test",
    data_root: str | None = None,
    stop_threshold: float | None = None,
    resolution: str = "original",
    device: Any = "cpu",
    plot: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """The ``beyondvis.rsis.eval/1`` report of ``checkpoint`` on ``split``.

    ``data_root`` replaces the dataset folder stored in the checkpoint's config and
    ``stop_threshold`` its stop threshold; masks are scored at the ``original`` image size or
    the ``model``'s input size. ``plot`` also writes IoU by step / object size (PNG or PDF).
    Unreadable records are skipped and listed in ``skipped_items``.
    """
    from beyondvis.device import resolve_device
    from beyondvis.segmentation.experiment import build_backbone, evaluate_records
    from beyondvis.segmentation.metrics import plot_error_analysis

    checkpoint = Path(checkpoint)
    model, cfg, splits = _load(checkpoint, "evaluate", data_root)
    if stop_threshold is not None:
        cfg.inference = dataclasses.replace(cfg.inference, stop_threshold=stop_threshold)
    if model.encoder is None:
        model.encoder = build_backbone(cfg.encoder)
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    report, skipped = evaluate_records(
        model,
        splits.split(split),
        splits.classes,
        cfg.data.image_size,
        cfg.inference,
        resolve_device(device),
        full_resolution=resolution == "original",
        progress=progress,
    )
    out = {
        "format": "beyondvis.rsis.eval/1",
        "checkpoint": str(checkpoint),
        "dataset": splits.name,
        "split": split,
        "image_size": cfg.data.image_size,
        "resolution": resolution,
        "stop_threshold": cfg.inference.stop_threshold,
        **report,
        "skipped_items": [{"item": i, "reason": r} for i, r in skipped],
    }
    if plot:
        plot_error_analysis(out, str(plot))
        out["plot"] = str(plot)
    return out


def eval_lines(out: dict) -> list[str]:
    """The terminal's view of an :func:`evaluate_checkpoint` report."""
    lines = [
        f"{out['dataset']} {out['split']}: {out['num_images']} images "
        f"({out['resolution']} resolution)",
        f"  SBD     {100 * out['sbd']:.1f} (+-{100 * out['sbd_std']:.1f})",
        f"  |DiC|   {out['abs_dic']:.2f} (+-{out['abs_dic_std']:.2f})   DiC {out['dic']:+.2f}",
        "  AP      "
        + "  ".join(f"{k} {100 * out[k]:.1f}" for k in ("ap", "ap50", "ap60", "ap70", "ap80")),
        "  order   " + "  ".join(f"{k} {v:+.3f}" for k, v in out["order_kendall_tau"].items()),
    ]
    lines += [f"  skipped {s['item']}: {s['reason']}" for s in out["skipped_items"]]
    return lines


PICKS = ("sbd", "abs_dic")


def tune_stop_threshold(
    checkpoint: str | os.PathLike,
    split: str = "val",
    thresholds: Sequence[float] = tuple(0.05 * i for i in range(1, 20)),
    pick: str = "sbd",
    device: Any = "cpu",
    progress: bool = True,
) -> dict:
    """The ``beyondvis.rsis.tune-stop/1`` sweep: SBD and DiC of ``checkpoint`` on ``split`` for
    each stop threshold (one decoding pass), and the ``best`` row, the one of largest SBD
    (``pick="sbd"``) or smallest \\|DiC\\| (``"abs_dic"``, ties to the larger SBD)."""
    from beyondvis.device import resolve_device
    from beyondvis.segmentation.data import ViewDataset
    from beyondvis.segmentation.experiment import (
        _SafeViews,
        build_backbone,
        cache_views,
        stop_threshold_sweep,
    )

    if pick not in PICKS:
        raise SegmentationRunError(f"pick must be one of {', '.join(PICKS)}, got {pick!r}")
    checkpoint = Path(checkpoint)
    model, cfg, splits = _load(checkpoint, "load")
    records = splits.split(split)
    if not records:
        raise SegmentationRunError(f"the {split} split of {splits.name} is empty")
    cfg.train.progress = progress
    device = resolve_device(device)
    if model.encoder is None:  # frozen encoder: reuse (or build) the cached maps of the split
        backbone = build_backbone(cfg.encoder)
        data = cache_views(cfg, records, split, backbone, augment=False)
    else:
        pre = model.encoder.preprocess
        views = ViewDataset(records, cfg.data.image_size, None, mean=pre.mean, std=pre.std)
        data = _SafeViews(views)
    rows = stop_threshold_sweep(cfg, model.to(device), data, device, list(thresholds))
    if pick == "sbd":
        best = max(rows, key=lambda r: r["sbd"])
    else:
        best = min(rows, key=lambda r: (r["abs_dic"], -r["sbd"]))
    return {
        "format": "beyondvis.rsis.tune-stop/1",
        "checkpoint": str(checkpoint),
        "split": split,
        "config_stop_threshold": cfg.inference.stop_threshold,
        "best": best,
        "sweep": rows,
    }


def sweep_lines(out: dict) -> list[str]:
    """The terminal's view of a :func:`tune_stop_threshold` sweep (the best row marked)."""
    rows = out["sweep"]
    best = rows.index(out["best"])  # max()/min() return the first such row: this one
    lines = [f"{'threshold':>9}  {'SBD':>6}  {'DiC':>6}  {'|DiC|':>6}"]
    for k, r in enumerate(rows):
        mark = "  <- best" if k == best else ""
        lines.append(
            f"{r['stop_threshold']:9.2f}  {100 * r['sbd']:6.1f}  {r['dic']:+6.2f}  "
            f"{r['abs_dic']:6.2f}{mark}"
        )
    return lines


def dataset_summary(config: Any) -> dict:
    """The ``beyondvis.rsis.data/1`` summary of ``config``'s dataset (an RSISConfig): per split
    the images and the mean/min/max objects per image; unreadable annotations are skipped with
    a warning."""
    from beyondvis.data import InstanceDataError, read_annotation
    from beyondvis.segmentation.experiment import read_splits

    splits = read_splits(config.data)
    out: dict[str, Any] = {
        "format": "beyondvis.rsis.data/1",
        "dataset": splits.name,
        "classes": splits.classes,
        "notes": splits.notes,
        "splits": {},
    }
    for name in ("train", "val", "test"):
        counts = []
        for record in splits.split(name):
            try:
                counts.append(len(read_annotation(record)[1]))
            except (InstanceDataError, OSError) as exc:
                log.warning("skipped %s: %s", record.item_id, exc)
        c = np.asarray(counts)
        out["splits"][name] = {
            "images": len(counts),
            "objects_mean": float(c.mean()) if len(c) else 0.0,
            "objects_min": int(c.min()) if len(c) else 0,
            "objects_max": int(c.max()) if len(c) else 0,
        }
    return out
