"""Training curves of a generation run: validation perplexity against optimizer steps.

Reads the engine's ``metrics.csv`` (rows of step, epoch, split and metrics) and draws the
``val_ppl`` rows with matplotlib, optionally next to a reference perplexity (the model it
replaces), so a reader sees at a glance whether and where training converged.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
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


def chained_curve(
    metrics_csvs: Sequence[str | Path], metric: str = "val_ppl"
) -> list[list[tuple[int, float]]]:
    """The curves of consecutive runs (each warm-started from the one before, e.g.
    ``cook_cpu`` then ``cook_cpu_stage2``) on one step axis: a run's steps continue from the
    last evaluated step of the run before it."""
    out: list[list[tuple[int, float]]] = []
    offset = 0
    for path in metrics_csvs:
        points = read_curve(path, metric)
        if not points:
            raise ValueError(f"{path}: no {metric} rows yet")
        out.append([(offset + step, value) for step, value in points])
        offset = out[-1][-1][0]
    return out


def plot_perplexity(
    metrics_csv: str | Path | Sequence[str | Path],
    out_png: str | Path,
    reference: float | None = None,
    reference_label: str = "before",
    title: str = "instruction decoder: validation perplexity",
    final: float | None = None,
    final_label: str = "final",
) -> list[tuple[int, float]]:
    """Draw ``val_ppl`` against steps (log scale) into ``out_png``; returns the points.

    Several ``metrics.csv`` are consecutive stages (:func:`chained_curve`), drawn in turn.
    ``final`` marks a perplexity reached after the last step without training (the decoder
    with its in-domain memory, say) with a star at that step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [metrics_csv] if isinstance(metrics_csv, (str, Path)) else list(metrics_csv)
    stages = chained_curve(paths)
    points = [p for stage in stages for p in stage]
    steps, values = zip(*points)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    colours = ["#4477aa", "#228833", "#aa3377", "#ccbb44", "#66ccee", "#bbbbbb"]
    for n, stage in enumerate(stages):
        label = "validation perplexity" + (f" (stage {n + 1})" if len(stages) > 1 else "")
        xs, ys = zip(*stage)
        ax.plot(xs, ys, marker="o", color=colours[n % len(colours)], label=label)
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
    if final is not None:
        ax.plot([steps[-1]], [final], marker="*", markersize=14, color="black", linestyle="")
        ax.annotate(
            f"{final_label}: {final:.1f}",
            (steps[-1], final),
            textcoords="offset points",
            xytext=(-12, 0),
            ha="right",
            va="center",
        )
    ax.set_yscale("log")
    # plain numbers on the log axis (35, 40, 60), not 4 x 10^1
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 4.0, 6.0, 8.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
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
