"""Query expansion (thesis Sec. 2.2 (c) and 2.3.4).

All three variants average the L2-normalised query vector with L2-normalised vectors of the
top N results; they differ in which part of each result contributes:

- GQE: the whole image BoW;
- LQE: only the window found by local reranking (background masked out);
- WQE: the whole image weighted by the inverse distance to that window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from beyondvis.retrieval.bow import bow, distance_weights

Cells = tuple[int, int, int, int]


def average_query(query: np.ndarray, expansions: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of the L2-normalised query and expansion vectors (weighted by idf by the caller)."""
    vecs = [np.asarray(query, dtype=np.float32)] + [np.asarray(v, np.float32) for v in expansions]
    total = np.zeros_like(vecs[0])
    for v in vecs:
        n = float(np.linalg.norm(v))
        if n > 0:
            total += v / n
    return total / len(vecs)


def window_mask(shape: tuple[int, int], cells: Cells) -> np.ndarray:
    c0, r0, c1, r1 = cells
    mask = np.zeros(shape, dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def global_expansion_bows(
    maps: Sequence[np.ndarray], vocab_size: int, weights: Sequence[np.ndarray | None]
) -> list[np.ndarray]:
    """GQE: the global BoW of each top image (with the same weighting as the index)."""
    return [bow(m, vocab_size, w) for m, w in zip(maps, weights)]


def local_expansion_bows(
    maps: Sequence[np.ndarray], cells: Sequence[Cells], vocab_size: int
) -> list[np.ndarray]:
    """LQE: the BoW of the localised window only."""
    return [
        bow(m, vocab_size, window_mask(m.shape, c).astype(np.float32)) for m, c in zip(maps, cells)
    ]


def weighted_expansion_bows(
    maps: Sequence[np.ndarray], cells: Sequence[Cells], vocab_size: int
) -> list[np.ndarray]:
    """WQE: the whole image, each word weighted by 1 / (1 + distance to the localised window)."""
    return [
        bow(m, vocab_size, distance_weights(window_mask(m.shape, c))) for m, c in zip(maps, cells)
    ]
