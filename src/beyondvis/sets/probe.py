"""The linear-probe baseline: one-vs-rest logistic regression on pooled frozen features.

The thesis compares set predictors against models that treat labels independently; the
plainest such model is a linear probe. Features are the cached backbone maps of the fast path,
global-average pooled and standardised with the training mean/std. One logistic regression per
label (L2-regularised, the sklearn parametrisation: ``sum_i logloss_i + ||w||^2 / (2 C)``) is fit
by full-batch L-BFGS in torch; C is chosen on validation O-F1 from a grid, and the set is read
out as every label with probability >= 0.5. The fit is deterministic (zero init, full batch),
so seeds do not change it.

With ``views=True`` the probe also trains on the augmented training views the set predictors
see (``encoder.cache_views``), so a table can tell the gain of augmentation from the gain of
set modelling.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from beyondvis.data.sets_readers import SetSplits
from beyondvis.sets.metrics import SetMetrics, cardinality_rows

log = logging.getLogger(__name__)

C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
PROBE_FORMAT = "beyondvis.sets.probe/1"


def pooled(cache: Any, chunk: int = 256) -> tuple[torch.Tensor, np.ndarray]:
    """(good items, C) float32 global-average-pooled features of a feature cache, and the
    dataset indices of those items (bad images have no row)."""
    rows = np.asarray(cache.rows)
    out = []
    for start in range(0, len(rows), chunk):
        block = np.asarray(cache.features[rows[start : start + chunk]], dtype=np.float32)
        out.append(block.reshape(block.shape[0], block.shape[1], -1).mean(-1))
    return torch.from_numpy(np.concatenate(out) if out else np.zeros((0, 0), np.float32)), rows


def multihot(label_ids: Sequence[Sequence[int]], num_labels: int) -> torch.Tensor:
    out = torch.zeros(len(label_ids), num_labels)
    for i, ids in enumerate(label_ids):
        if ids:
            out[i, list(ids)] = 1.0
    return out


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, c: float, max_iter: int = 300
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-vs-rest L2 logistic regression, every label at once: returns (W (D, N), b (N,))."""
    n, d = x.shape
    weight = torch.zeros(d, y.shape[1], requires_grad=True)
    bias = torch.zeros(y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = x @ weight + bias
        # sklearn's objective divided by n: mean log-loss + ||w||^2 / (2 C n), per label.
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, reduction="sum"
        ) / n + (weight**2).sum() / (2 * c * n)
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach(), bias.detach()


def _score(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    probs = torch.sigmoid(x @ weight + bias)
    metrics = SetMetrics(y.shape[1])
    metrics.update((probs >= 0.5).float(), y, probs)
    return metrics


def run_probe(
    cfg: Any,
    splits: SetSplits | None = None,
    views: bool = False,
    c_grid: Sequence[float] = C_GRID,
) -> dict[str, Any]:
    """Fit the probe on the cached training features of ``cfg`` (a ``SetsConfig``), choose C on
    validation O-F1, and score the test split. Returns the eval-shaped report (plus the grid)."""
    from beyondvis.sets.data import LabelEncoder
    from beyondvis.sets.experiment import cache_split_features, read_splits

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    splits = splits or read_splits(cfg.data)
    if not cfg.encoder.cache_views:
        views = False
    caches = cache_split_features(cfg, splits)
    labels = LabelEncoder(splits.vocab, max(1, max(len(r.labels) for r in splits.train)))
    data = {}
    for split in ("train", "val", "test"):
        if caches[split] is None:
            raise ValueError(f"the linear probe needs a non-empty {split} split")
        x, rows = pooled(caches[split])
        ids = [labels.ids(r.labels) for r in splits.split(split)]
        data[split] = (x, multihot([ids[i] for i in rows], labels.num_labels))
    x_train, y_train = data["train"]
    if views:
        extra = [pooled(c) for c in caches["train_views"]]
        ids = [labels.ids(r.labels) for r in splits.train]
        x_train = torch.cat([x_train, *[x for x, _ in extra]])
        y_train = torch.cat(
            [y_train, *[multihot([ids[i] for i in rows], labels.num_labels) for _, rows in extra]]
        )
    mean, std = x_train.mean(0), x_train.std(0).clamp(min=1e-6)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) / std

    grid = []
    best: tuple[float, float, Any] = (-math.inf, 0.0, None)
    for c in c_grid:
        weight, bias = fit_logistic(norm(x_train), y_train, c)
        val = _score(norm(data["val"][0]), data["val"][1], weight, bias).compute()["o_f1"]
        grid.append({"C": c, "val_o_f1": val})
        log.info("linear probe C=%g: val O-F1 %.4f", c, val)
        if val > best[0]:
            best = (val, c, (weight, bias))
    weight, bias = best[2]
    metrics = _score(norm(data["test"][0]), data["test"][1], weight, bias)
    name = "linear probe" + (f" (+{len(caches['train_views'])} aug views)" if views else "")
    out: dict[str, Any] = {"format": PROBE_FORMAT, "model": name, "split": "test"}
    out.update(metrics.compute())
    out.update(
        {
            "C": best[1],
            "best_val_o_f1": best[0],
            "grid": grid,
            "train_images": int(x_train.shape[0]),
            "train_seconds": time.perf_counter() - start_wall,
            "cpu_seconds": time.process_time() - start_cpu,
            "i_f1_by_cardinality": cardinality_rows(metrics),
        }
    )
    out["_metrics"] = metrics
    return out
