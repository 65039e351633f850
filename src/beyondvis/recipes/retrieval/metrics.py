"""Cross-modal retrieval metrics: median rank (medR) and recall at K, both directions.

Pair ``i`` is image ``i`` with recipe ``i``. Ranks are 1-based and pessimistic on ties (an
item scoring the same as the true match counts as ranked before it), so constant scores give the
worst rank rather than a perfect one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def ranks_from_similarity(sim: np.ndarray) -> np.ndarray:
    """Rank of the true match (the diagonal) for each query row of ``sim`` (queries x items)."""
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] == 0:
        raise ValueError(f"need a non-empty square similarity matrix, got shape {sim.shape}")
    true = np.diag(sim)[:, None]
    others = sim >= true
    np.fill_diagonal(others, False)
    return 1 + others.sum(axis=1)


def rank_metrics(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``medR`` and ``R@K`` (fraction of queries whose match is in the top K)."""
    ranks = np.asarray(ranks)
    out = {"medR": float(np.median(ranks))}
    for k in ks:
        out[f"R@{k}"] = float(np.mean(ranks <= k))
    return out


def retrieval_metrics(
    image_emb: np.ndarray, recipe_emb: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, dict[str, float]]:
    """Cosine-similarity retrieval both ways: ``{"im2recipe": {...}, "recipe2im": {...}}``."""
    if len(image_emb) != len(recipe_emb):
        raise ValueError("image and recipe embeddings must be paired (same length)")
    sim = _normalize(image_emb) @ _normalize(recipe_emb).T
    return {
        "im2recipe": rank_metrics(ranks_from_similarity(sim), ks),
        "recipe2im": rank_metrics(ranks_from_similarity(sim.T), ks),
    }


def subset_evaluation(
    image_emb: np.ndarray,
    recipe_emb: np.ndarray,
    subset_size: int = 1000,
    n_subsets: int = 10,
    seed: int = 0,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, dict[str, float]]:
    """The thesis protocol: mean (and std) of the metrics over ``n_subsets`` random subsets of
    ``min(subset_size, n)`` pairs. When ``n <= subset_size`` every subset is the whole test set
    (``"subset_size"`` in the result says which size was used)."""
    n = len(image_emb)
    size = min(subset_size, n)
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n_subsets):
        idx = rng.choice(n, size=size, replace=False)
        runs.append(retrieval_metrics(image_emb[idx], recipe_emb[idx], ks))
    out: dict[str, dict[str, float]] = {}
    for direction in ("im2recipe", "recipe2im"):
        keys = runs[0][direction].keys()
        out[direction] = {k: float(np.mean([r[direction][k] for r in runs])) for k in keys}
        out[direction].update(
            {f"{k}_std": float(np.std([r[direction][k] for r in runs])) for k in keys}
        )
    out["protocol"] = {"pairs": n, "subset_size": size, "n_subsets": n_subsets}
    return out
