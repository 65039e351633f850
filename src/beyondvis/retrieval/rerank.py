"""Local reranking on assignment maps (thesis Sec. 2.2 (b)).

Every image among the top K is scanned with sliding windows built directly on its assignment
map: widths {W, W/2, W/4} x heights {H, H/2, H/4} with 50% overlap. Windows whose aspect ratio
is too different from the query box (min/max ratio below a threshold, 0.4 in the thesis) are
dropped, the rest are scored by cosine similarity to the query box BoW, optionally with a
2-level spatial pyramid, and the best window gives the new score and the localisation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

Cells = tuple[int, int, int, int]  # c0, r0, c1, r1, half-open, in feature-map cells


def _positions(length: int, size: int, overlap: float) -> list[int]:
    step = max(1, int(round(size * (1.0 - overlap))))
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:  # cover the right/bottom border too
        starts.append(length - size)
    return starts


def enumerate_windows(
    shape: tuple[int, int], divisors: Sequence[int] = (1, 2, 4), overlap: float = 0.5
) -> np.ndarray:
    """All sliding windows ``(c0, r0, c1, r1)`` of widths W/d and heights H/d, d in divisors."""
    h, w = shape
    out = set()
    for dw in divisors:
        ww = max(1, int(round(w / dw)))
        for dh in divisors:
            wh = max(1, int(round(h / dh)))
            for x in _positions(w, ww, overlap):
                for y in _positions(h, wh, overlap):
                    out.add((x, y, x + ww, y + wh))
    return np.array(sorted(out), dtype=np.int64).reshape(-1, 4)


def aspect_scores(
    windows: np.ndarray, cell_size: tuple[float, float], query_ar: float
) -> np.ndarray:
    """min(AR_w, AR_q) / max(AR_w, AR_q) of every window, ARs measured in image pixels."""
    cw, ch = cell_size
    ar = (windows[:, 2] - windows[:, 0]) * cw / ((windows[:, 3] - windows[:, 1]) * ch)
    return np.minimum(ar, query_ar) / np.maximum(ar, query_ar)


def pyramid_regions(region: Cells) -> list[Cells]:
    """Level 1 (the region) then level 2 (its four quadrants; empty if a side is one cell)."""
    c0, r0, c1, r1 = region
    cm = c0 + (c1 - c0) // 2
    rm = r0 + (r1 - r0) // 2
    return [
        (c0, r0, c1, r1),
        (c0, r0, cm, rm),
        (cm, r0, c1, rm),
        (c0, rm, cm, r1),
        (cm, rm, c1, r1),
    ]


def pyramid_weights(levels: int = 2) -> np.ndarray:
    """w_r = 1 / 2^(L - l_r): the whole region 1/2, each quadrant 1 for L = 2 (thesis Fig. 2.2)."""
    if levels == 1:
        return np.array([1.0])
    if levels != 2:
        raise ValueError("only 1 or 2 pyramid levels are supported")
    return np.array([1.0 / 2 ** (levels - 1)] + [1.0] * 4)


def region_bows(
    assignment: np.ndarray, regions: np.ndarray, vocab_size: int, weights: np.ndarray | None = None
) -> sp.csr_matrix:
    """BoWs (n_regions, vocab) of many rectangles of one map, as one sparse product."""
    h, w = assignment.shape
    regions = np.asarray(regions, dtype=np.int64).reshape(-1, 4)
    cell_ids, region_ids = [], []
    grid = np.arange(h * w).reshape(h, w)
    for i, (c0, r0, c1, r1) in enumerate(regions):
        ids = grid[r0:r1, c0:c1].ravel()
        cell_ids.append(ids)
        region_ids.append(np.full(ids.size, i, dtype=np.int64))
    cells = np.concatenate(cell_ids) if cell_ids else np.zeros(0, np.int64)
    rows = np.concatenate(region_ids) if region_ids else np.zeros(0, np.int64)
    member = sp.csr_matrix(
        (np.ones(cells.size, np.float32), (rows, cells)), shape=(len(regions), h * w)
    )
    vals = np.ones(h * w, np.float32) if weights is None else weights.ravel().astype(np.float32)
    one_hot = sp.csr_matrix(
        (vals, (np.arange(h * w), assignment.ravel().astype(np.int64))), shape=(h * w, vocab_size)
    )
    return sp.csr_matrix(member @ one_hot)


@dataclass
class RerankConfig:
    top_k: int = 100
    divisors: tuple[int, ...] = (1, 2, 4)
    overlap: float = 0.5
    aspect_threshold: float | None = 0.4  # None disables the filter (thesis, TRECVid)
    pyramid_levels: int = 2  # 1 disables the spatial pyramid


@dataclass
class WindowMatch:
    score: float
    cells: Cells


class LocalReranker:
    def __init__(self, idf: np.ndarray, config: RerankConfig | None = None) -> None:
        self.idf = np.asarray(idf, dtype=np.float32)
        self.config = config or RerankConfig()

    @property
    def vocab_size(self) -> int:
        return self.idf.size

    def _normalise(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        weighted = sp.csr_matrix(matrix @ sp.diags(self.idf))
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ weighted)

    def query_vectors(self, query_map: np.ndarray, query_cells: Cells) -> np.ndarray:
        """idf-weighted, L2-normalised BoWs of the query box and (pyramid) its quadrants."""
        regions = self._regions_of(query_cells)
        return self._normalise(region_bows(query_map, regions, self.vocab_size)).toarray()

    def _regions_of(self, cells: Cells) -> np.ndarray:
        if self.config.pyramid_levels == 1:
            return np.array([cells])
        return np.array(pyramid_regions(cells))

    def match(
        self,
        assignment: np.ndarray,
        query_vecs: np.ndarray,
        query_ar: float,
        cell_size: tuple[float, float],
    ) -> WindowMatch:
        """Best window of one database map for the query (vectors from :meth:`query_vectors`)."""
        cfg = self.config
        windows, member, per = _layout(
            tuple(assignment.shape), tuple(cfg.divisors), cfg.overlap, cfg.pyramid_levels
        )
        words = assignment.ravel().astype(np.int64)
        cells = words.size
        # BoW of every region = membership (regions x cells) @ one-hot (cells x vocab)
        one_hot = sp.csr_matrix(
            (self.idf[words], words, np.arange(cells + 1)), shape=(cells, self.vocab_size)
        )
        region = member @ one_hot
        sq = region.data.astype(np.float64) ** 2
        norms = np.sqrt(np.add.reduceat(sq, region.indptr[:-1])) if sq.size else np.zeros(0)
        norms[np.diff(region.indptr) == 0] = 0.0
        norms = np.where(norms > 0, norms, 1.0)
        # numerators: per-cell idf * query weight summed over each region, for each query part
        per_cell = self.idf[words][:, None] * query_vecs.T[words]  # (cells, per)
        dots = np.asarray(member @ per_cell)  # (n_regions, per)
        cos = (dots / norms[:, None]).reshape(len(windows), per, per)
        cos = cos[:, np.arange(per), np.arange(per)]  # region j vs query region j
        weights = pyramid_weights(cfg.pyramid_levels)
        scores = cos @ weights / weights.sum()
        if cfg.aspect_threshold is not None:
            ar = aspect_scores(windows, cell_size, query_ar)
            keep = ar >= cfg.aspect_threshold
            # a query more elongated than any window: keep the closest shapes, not nothing
            if not keep.any():
                keep = ar >= ar.max() - 1e-9
            scores = np.where(keep, scores, -np.inf)
        best = int(np.argmax(scores))
        return WindowMatch(float(scores[best]), tuple(int(v) for v in windows[best]))


@functools.lru_cache(maxsize=128)
def _layout(
    shape: tuple[int, int], divisors: tuple[int, ...], overlap: float, levels: int
) -> tuple[np.ndarray, sp.csr_matrix, int]:
    """Windows of a map shape and the (regions x cells) membership matrix, computed once per
    shape: most photos of a collection share a few map shapes."""
    h, w = shape
    windows = enumerate_windows(shape, divisors, overlap)
    regions = []
    for win in windows:
        regions.extend(pyramid_regions(tuple(win)) if levels == 2 else [tuple(win)])
    grid = np.arange(h * w).reshape(h, w)
    rows, cols = [], []
    for k, (c0, r0, c1, r1) in enumerate(regions):
        ids = grid[r0:r1, c0:c1].ravel()
        cols.append(ids)
        rows.append(np.full(ids.size, k, dtype=np.int64))
    member = sp.csr_matrix(
        (
            np.ones(sum(c.size for c in cols), np.float32),
            (np.concatenate(rows), np.concatenate(cols)),
        ),
        shape=(len(regions), h * w),
    )
    return windows, member, 5 if levels == 2 else 1
