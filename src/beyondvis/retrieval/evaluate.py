"""Mean average precision under the Oxford/Paris and the revisited Oxford/Paris protocols.

Oxford/Paris (Philbin et al. 2007, ``compute_ap.cpp``): positives are good + ok images, junk
images are removed from the ranking, AP is the trapezoidal area under the precision-recall
curve. Revisited (Radenovic et al. 2018, ``compute_map``): three setups built from the easy,
hard and junk lists -- Easy (easy positive; hard and junk ignored), Medium (easy + hard positive;
junk ignored) and Hard (hard positive; easy and junk ignored). Queries without positives in a
setup are left out of its mean, as in the official code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def average_precision(
    ranking: Sequence[str], positives: Iterable[str], junk: Iterable[str] = ()
) -> float:
    """AP of a ranked list of ids exactly as Oxford's ``compute_ap.cpp`` computes it."""
    pos, junk = set(positives), set(junk)
    if not pos:
        raise ValueError("a query without positive images has no average precision")
    old_recall, old_precision, ap = 0.0, 1.0, 0.0
    hits, j = 0, 0
    for item in ranking:
        if item in junk:
            continue
        if item in pos:
            hits += 1
        recall = hits / len(pos)
        precision = hits / (j + 1)
        ap += (recall - old_recall) * (old_precision + precision) / 2.0
        old_recall, old_precision = recall, precision
        j += 1
    return ap


def mean_average_precision(
    rankings: dict[str, Sequence[str]], gt: dict[str, dict[str, Sequence[str]]]
) -> float:
    """Oxford protocol mAP; ``gt[q]`` has keys good, ok, junk (image ids)."""
    aps = []
    for q, info in gt.items():
        if q not in rankings:
            raise KeyError(f"no ranking for query {q!r}")
        aps.append(average_precision(rankings[q], [*info["good"], *info["ok"]], info["junk"]))
    if not aps:
        raise ValueError("no queries to evaluate")
    return float(np.mean(aps))


def _revisited_ap(ranks: np.ndarray, n_positives: int) -> float:
    # Radenovic's compute_ap: ranks are 0-based positions of positives after junk removal.
    ap = 0.0
    step = 1.0 / n_positives
    for j, rank in enumerate(np.sort(ranks)):
        precision_0 = 1.0 if rank == 0 else j / rank
        precision_1 = (j + 1) / (rank + 1)
        ap += (precision_0 + precision_1) * step / 2.0
    return ap


def revisited_ap(ranking: Sequence[int], positives: Iterable[int], junk: Iterable[int]) -> float:
    pos, junk = set(int(p) for p in positives), set(int(j) for j in junk)
    kept = [r for r in ranking if int(r) not in junk]
    ranks = np.array([i for i, r in enumerate(kept) if int(r) in pos])
    return _revisited_ap(ranks, len(pos))


def revisited_map(
    ranks: np.ndarray | Sequence[Sequence[int]], gnd: Sequence[dict]
) -> dict[str, float]:
    """Easy / medium / hard mAP. ``ranks[q]`` lists database indices, best first (one row per
    query, as in ``gnd[q]['easy'|'hard'|'junk']`` index arrays of the revisited pkl)."""
    setups = {
        "easy": lambda g: (g["easy"], [*g["junk"], *g["hard"]]),
        "medium": lambda g: ([*g["easy"], *g["hard"]], g["junk"]),
        "hard": lambda g: (g["hard"], [*g["junk"], *g["easy"]]),
    }
    out = {}
    for name, pick in setups.items():
        aps = []
        for q, g in enumerate(gnd):
            pos, junk = pick(g)
            if len(pos) == 0:
                continue
            aps.append(revisited_ap(list(ranks[q]), pos, junk))
        out[name] = float(np.mean(aps)) if aps else float("nan")
    return out
