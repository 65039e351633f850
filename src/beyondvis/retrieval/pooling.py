"""Dense baselines on the same local features: SPoC, CroW, MAC, R-MAC, and FAISS flat search.

Feature maps are ``(h, w, D)`` float arrays of raw (non-negative, post-ReLU-like) activations.
Every descriptor can be restricted to a region (LS) or weighted by a distance map (WS) through
``weights``, which is how the thesis compares sum pooling with BoW for GS / LS / WS.
"""

from __future__ import annotations

import faiss
import numpy as np


def gaussian_centre_prior(shape: tuple[int, int]) -> np.ndarray:
    """SPoC's centre prior: Gaussian with sigma = 1/3 of the distance centre-to-border."""
    h, w = shape
    ys = (np.arange(h) + 0.5) - h / 2.0
    xs = (np.arange(w) + 0.5) - w / 2.0
    sigma_y, sigma_x = max(h / 3.0 / 2.0, 1e-3), max(w / 3.0 / 2.0, 1e-3)
    return np.exp(-(ys[:, None] ** 2) / (2 * sigma_y**2) - (xs[None, :] ** 2) / (2 * sigma_x**2))


def spoc(fmap: np.ndarray, weights: np.ndarray | None = None, centre: bool = True) -> np.ndarray:
    """Sum pooling (SPoC), optionally with the Gaussian centre prior and extra cell weights."""
    w = np.ones(fmap.shape[:2]) if weights is None else np.asarray(weights, np.float64)
    if centre:
        w = w * gaussian_centre_prior(fmap.shape[:2])
    return np.tensordot(w, fmap, axes=([0, 1], [0, 1])).astype(np.float32)


def mac(fmap: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Max pooling; cells with zero weight (outside a query box) are excluded."""
    if weights is not None:
        keep = np.asarray(weights) > 0
        return fmap[keep].max(axis=0).astype(np.float32)
    return fmap.reshape(-1, fmap.shape[-1]).max(axis=0).astype(np.float32)


def crow(
    fmap: np.ndarray, weights: np.ndarray | None = None, a: float = 2.0, b: float = 2.0
) -> np.ndarray:
    """CroW (Kalantidis et al. 2016): spatial weights from the aggregated response, channel
    weights from sparsity (idf-like), then weighted sum pooling."""
    x = np.maximum(fmap, 0).astype(np.float64)
    s = x.sum(axis=2)
    z = np.sum(s**a) ** (1.0 / a)
    spatial = (s / z) ** (1.0 / b) if z > 0 else np.ones_like(s)
    if weights is not None:
        spatial = spatial * np.asarray(weights, np.float64)
    q = (x > 0).reshape(-1, x.shape[2]).mean(axis=0)
    eps = 1e-6
    channel = np.log(q.sum() / (eps + q) + eps) if q.sum() > 0 else np.ones_like(q)
    pooled = np.tensordot(spatial, x, axes=([0, 1], [0, 1]))
    return (pooled * channel).astype(np.float32)


def rmac_regions(shape: tuple[int, int], levels: int = 3) -> list[tuple[int, int, int, int]]:
    """Square regions at ``levels`` scales with ~40% overlap (Tolias et al. 2016)."""
    h, w = shape
    regions = [(0, 0, w, h)]
    side_min = min(h, w)
    for lev in range(1, levels + 1):
        size = max(1, int(2 * side_min / (lev + 1)))
        for y in np.unique(np.linspace(0, h - size, lev + (h > w)).astype(int)):
            for x in np.unique(np.linspace(0, w - size, lev + (w > h)).astype(int)):
                regions.append((int(x), int(y), int(x) + size, int(y) + size))
    return sorted(set(regions))


def rmac(fmap: np.ndarray, weights: np.ndarray | None = None, levels: int = 3) -> np.ndarray:
    """R-MAC without the learned PCA: sum of L2-normalised regional MACs."""
    total = np.zeros(fmap.shape[-1], np.float64)
    for x0, y0, x1, y1 in rmac_regions(fmap.shape[:2], levels):
        sub_w = None if weights is None else np.asarray(weights)[y0:y1, x0:x1]
        if sub_w is not None and not (sub_w > 0).any():
            continue
        v = mac(fmap[y0:y1, x0:x1], sub_w).astype(np.float64)
        n = np.linalg.norm(v)
        if n > 0:
            total += v / n
    return total.astype(np.float32)


POOLINGS = {"spoc": spoc, "crow": crow, "mac": mac, "rmac": rmac}


class PCAWhitening:
    """L2 -> PCA-whitening -> L2, fitted on a collection (used for local and global features)."""

    def __init__(self, mean: np.ndarray, projection: np.ndarray) -> None:
        self.mean = mean.astype(np.float32)
        self.projection = projection.astype(np.float32)  # (D, d): components / sqrt(eigval)

    @classmethod
    def fit(cls, features: np.ndarray, dim: int | None = None, eps: float = 1e-6) -> PCAWhitening:
        x = l2n(np.asarray(features, np.float32)).astype(np.float64)
        if x.shape[0] < 2:
            raise ValueError("PCA whitening needs at least two feature vectors")
        mean = x.mean(axis=0)
        cov = np.cov(x - mean, rowvar=False)
        eigval, eigvec = np.linalg.eigh(cov)
        order = np.argsort(eigval)[::-1]
        dim = min(dim or x.shape[1], x.shape[1], x.shape[0] - 1)
        order = order[:dim]
        projection = eigvec[:, order] / np.sqrt(eigval[order] + eps)
        return cls(mean, projection)

    @property
    def dim(self) -> int:
        return self.projection.shape[1]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = l2n(np.asarray(features, np.float32))
        return l2n((x - self.mean) @ self.projection)

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "projection": self.projection}


def l2n(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class DenseIndex:
    """Exact inner-product search (FAISS ``IndexFlatIP``) over L2-normalised descriptors."""

    def __init__(self, descriptors: np.ndarray) -> None:
        x = np.ascontiguousarray(descriptors, dtype=np.float32)
        self.index = faiss.IndexFlatIP(x.shape[1])
        self.index.add(x)

    def search(self, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        scores, ids = self.index.search(q, min(top_k, self.index.ntotal))
        return ids, scores
