"""Training curves of a generation run: validation perplexity against optimizer steps.

Reads the engine's ``metrics.csv`` (rows of step, epoch, split and metrics) and draws the
``val_ppl`` rows with matplotlib, optionally next to a reference perplexity (the model it
replaces), so a reader sees at a glance whether and where training converged.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path


def read_curve(metrics_csv: str | Path, metric: str = "val_ppl") -> list[tuple[int, float]]:
    """``(step, value)`` of every row of ``metrics_csv`` that has ``metric``, by step."""
    path = Path(metrics_csv)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.csv (is this a training run folder?)")
    points: dict[int, float] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            value = row.get(metric)
            if value in (None, ""):
                continue
            number = float(value)
            if math.isfinite(number):
                points[int(float(row["step"]))] = number  # a resumed run rewrites a step
    return sorted(points.items())


def plot_perplexity(
    metrics_csv: str | Path,
    out_png: str | Path,
    reference: float | None = None,
    reference_label: str = "before",
    title: str = "instruction decoder: validation perplexity",
) -> list[tuple[int, float]]:
    """Draw ``val_ppl`` against steps (log scale) into ``out_png``; returns the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = read_curve(metrics_csv)
    if not points:
        raise ValueError(f"{metrics_csv}: no val_ppl rows yet")
    steps, values = zip(*points)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(steps, values, marker="o", color="#4477aa", label="validation perplexity")
    best = min(range(len(values)), key=values.__getitem__)
    ax.annotate(
        f"best {values[best]:.1f}",
        (steps[best], values[best]),
        textcoords="offset points",
        xytext=(0, 10),
        ha="center",
    )
    if reference is not None:
        ax.axhline(reference, color="#cc6677", linestyle="--", label=f"{reference_label}")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return list(points)
