"""Canonical Correlation Analysis baseline (numpy/scipy; regularised for few pairs).

Recipe side: mean ingredient word2vec + mean step vector; image side: pooled backbone features.
With far fewer pairs than image dimensions, both covariances get a ridge term ``reg * trace/d``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import linalg


@dataclasses.dataclass
class CCA:
    mean_x: np.ndarray
    mean_y: np.ndarray
    proj_x: np.ndarray  # (dx, k)
    proj_y: np.ndarray  # (dy, k)
    correlations: np.ndarray  # (k,)

    def transform_x(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean_x) @ self.proj_x

    def transform_y(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.mean_y) @ self.proj_y


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    vals, vecs = linalg.eigh(c)
    vals = np.maximum(vals, 1e-12)
    return (vecs / np.sqrt(vals)) @ vecs.T


def fit_cca(x: np.ndarray, y: np.ndarray, k: int = 32, reg: float = 0.1) -> CCA:
    """Fit ``k`` canonical directions between paired rows of ``x`` and ``y``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("CCA needs at least 2 paired rows")
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    n = len(x) - 1
    cxx, cyy, cxy = xc.T @ xc / n, yc.T @ yc / n, xc.T @ yc / n
    cxx += reg * np.trace(cxx) / len(cxx) * np.eye(len(cxx))
    cyy += reg * np.trace(cyy) / len(cyy) * np.eye(len(cyy))
    wx, wy = _inv_sqrt(cxx), _inv_sqrt(cyy)
    u, s, vt = linalg.svd(wx @ cxy @ wy, full_matrices=False)
    k = min(k, len(s))
    return CCA(mx, my, wx @ u[:, :k], wy @ vt[:k].T, s[:k])
