"""Set-prediction metrics: O-F1, C-F1, I-F1, global IoU, cardinality error, P@K.

Counts are accumulated batch by batch (:class:`SetMetrics`), so a test set of any size is
evaluated in constant memory, and every metric is computed from the same counts.

* O-F1 (overall / micro): F1 of the TP/FP/FN summed over all labels and images.
* C-F1 (per class / macro): F1 of each label, averaged. A label that is never present nor
  predicted has nothing to get wrong and counts as 1 (as in the study's code).
* I-F1 (per image): F1 of each image's predicted vs true set, averaged; an empty prediction
  for an empty target is a perfect answer and counts as 1.
* IoU: TP / (TP + FP + FN) from the accumulated counts (the recipe chapter's global IoU).
* card_err: mean |predicted set size - true set size|.
* P@K: mean fraction of the K best-scored labels that are in the true set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


class SetMetrics:
    """Accumulates predictions (multi-hot) and targets (multi-hot) of shape (B, N)."""

    def __init__(self, num_labels: int, topk: Sequence[int] = (1, 3)) -> None:
        self.num_labels = num_labels
        self.topk = tuple(k for k in topk if 0 < k <= num_labels)
        self.tp = np.zeros(num_labels, dtype=np.int64)
        self.fp = np.zeros(num_labels, dtype=np.int64)
        self.fn = np.zeros(num_labels, dtype=np.int64)
        self.image_f1: list[float] = []
        self.true_card: list[int] = []
        self.pred_card: list[int] = []
        self.precision_at: dict[int, list[float]] = {k: [] for k in self.topk}

    def update(
        self,
        predictions: torch.Tensor,
        targets: torch.Tensor,
        scores: torch.Tensor | None = None,
    ) -> None:
        pred = predictions.detach().cpu().bool()
        true = targets.detach().cpu().bool()
        if pred.shape != true.shape or pred.shape[-1] != self.num_labels:
            raise ValueError(
                f"predictions {tuple(pred.shape)} and targets {tuple(true.shape)} must both be "
                f"(B, {self.num_labels})"
            )
        tp = (pred & true).sum(0).numpy()
        self.tp += tp
        self.fp += (pred & ~true).sum(0).numpy()
        self.fn += (~pred & true).sum(0).numpy()
        inter = (pred & true).sum(1).float()
        sizes = pred.sum(1).float() + true.sum(1).float()
        f1 = torch.where(sizes > 0, 2 * inter / sizes.clamp(min=1), torch.ones_like(sizes))
        self.image_f1.extend(f1.tolist())
        self.true_card.extend(true.sum(1).tolist())
        self.pred_card.extend(pred.sum(1).tolist())
        if scores is not None and self.topk:
            top = scores.detach().cpu().float().topk(max(self.topk), dim=1).indices
            hits = true.gather(1, top).float()
            for k in self.topk:
                self.precision_at[k].extend((hits[:, :k].sum(1) / k).tolist())

    @property
    def num_images(self) -> int:
        return len(self.image_f1)

    def compute(self) -> dict[str, float]:
        """All metrics as plain floats on a 0..1 scale (card_err in labels)."""
        if self.num_images == 0:
            raise ValueError("no predictions were added")
        tp, fp, fn = self.tp.sum(), self.fp.sum(), self.fn.sum()
        out = {
            "o_f1": _f1(tp, fp, fn),
            "c_f1": float(np.mean([_f1(*c) for c in zip(self.tp, self.fp, self.fn)])),
            "i_f1": float(np.mean(self.image_f1)),
            "iou": float(tp / (tp + fp + fn)) if tp + fp + fn > 0 else 1.0,
            "card_err": float(
                np.mean(np.abs(np.asarray(self.pred_card) - np.asarray(self.true_card)))
            ),
            "num_images": float(self.num_images),
        }
        for k, values in self.precision_at.items():
            if values:
                out[f"p@{k}"] = float(np.mean(values))
        return out

    def f1_by_cardinality(self) -> dict[int, tuple[float, float, int]]:
        """{true set size: (mean I-F1, 95% confidence half-width, number of images)}."""
        cards = np.asarray(self.true_card)
        f1 = np.asarray(self.image_f1)
        out = {}
        for card in sorted(set(cards.tolist())):
            values = f1[cards == card]
            half = 1.96 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
            out[int(card)] = (float(values.mean()), float(half), len(values))
        return out


def _f1(tp: float, fp: float, fn: float) -> float:
    # 2TP / (2TP + FP + FN) equals the harmonic mean of precision and recall, and is defined
    # (as 1: nothing to find, nothing wrongly found) when all three counts are 0.
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom > 0 else 1.0


def plot_f1_by_cardinality(
    curves: dict[str, dict[int, tuple[float, float, int]]],
    path: str | os.PathLike,
    title: str = "I-F1 vs ground-truth cardinality",
) -> Path:
    """The thesis' Figure 5.4: mean I-F1 (95% CI) per true set size, one line per model."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    from beyondvis.utils import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in curves.items():
        cards = sorted(curve)
        means = [curve[c][0] for c in cards]
        halves = [curve[c][1] for c in cards]
        ax.errorbar(cards, means, yerr=halves, marker="o", capsize=3, label=name)
    ax.set_xlabel("ground-truth cardinality")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # set sizes are whole numbers
    ax.set_ylabel("mean I-F1")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    suffix = Path(path).suffix.lstrip(".") or "png"
    fig.savefig(buffer, format=suffix, dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def cardinality_rows(metrics: SetMetrics) -> dict[str, dict[str, float]]:
    """I-F1 by true cardinality in the one shape every output uses (``sets eval`` too):
    ``{"<k>": {"mean", "ci95", "images"}}``."""
    return {
        str(k): {"mean": m, "ci95": h, "images": n}
        for k, (m, h, n) in metrics.f1_by_cardinality().items()
    }
