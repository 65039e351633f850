"""Image- and region-wise pooling of detector activations (thesis Sec. 3.2).

- IPA (image-wise pooling of activations): sum or max of every channel of the last
  convolutional map over the whole image; the filtering-stage descriptor.
- RPA (region-wise pooling of activations): sum or max of every channel of the RoI-pooled
  features of one proposal; the descriptor of a region for spatial reranking.
- The query box is warped onto the feature map (pixels -> cells) and the cells inside it are
  pooled the same way, giving the region descriptor of the query object.

Post-processing follows the thesis: sum-pooled vectors are L2-normalised, whitened and
L2-normalised again (``PCAWhitening`` of the BLCF pipeline, fitted on the collection);
max-pooled vectors are only L2-normalised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from beyondvis.retrieval.pooling import PCAWhitening, l2n

KINDS = ("sum", "max")
Cells = tuple[int, int, int, int]


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown pooling {kind!r}; choose from {KINDS}")


def pool_map(fmap: np.ndarray, kind: str) -> np.ndarray:
    """IPA: one value per channel of a ``(C, H, W)`` map, the sum or the max over all cells."""
    _check(kind)
    x = np.asarray(fmap, np.float32).reshape(fmap.shape[0], -1)
    return x.sum(axis=1) if kind == "sum" else x.max(axis=1)


def pool_rois(rois: np.ndarray, kind: str) -> np.ndarray:
    """RPA: ``(N, C, h, w)`` RoI-pooled features -> ``(N, C)``, sum or max over each RoI."""
    _check(kind)
    x = np.asarray(rois, np.float32).reshape(rois.shape[0], rois.shape[1], -1)
    return x.sum(axis=2) if kind == "sum" else x.max(axis=2)


def warp_box(box: Sequence[float], image_size: tuple[int, int], map_size: tuple[int, int]) -> Cells:
    """Cells ``(c0, r0, c1, r1)`` (end exclusive) of a ``(H, W)`` map covered by a pixel box
    ``(x0, y0, x1, y1)`` of an image of ``image_size = (width, height)``.

    A cell belongs to the box when the box overlaps it (floor of the start, ceiling of the
    end), so a box smaller than a cell still pools the one cell it falls in; the box is
    clipped to the image first.
    """
    w, h = image_size
    rows, cols = map_size
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
    y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {tuple(box)} lies outside the {w}x{h} image")
    sx, sy = cols / w, rows / h
    c0 = min(int(math.floor(x0 * sx + 1e-6)), cols - 1)
    r0 = min(int(math.floor(y0 * sy + 1e-6)), rows - 1)
    c1 = max(int(math.ceil(x1 * sx - 1e-6)), c0 + 1)
    r1 = max(int(math.ceil(y1 * sy - 1e-6)), r0 + 1)
    return c0, r0, min(c1, cols), min(r1, rows)


def cells_to_pixels(
    cells: Cells, image_size: tuple[int, int], map_size: tuple[int, int]
) -> list[float]:
    """The pixel box of a cell range (inverse of :func:`warp_box` up to cell rounding)."""
    w, h = image_size
    rows, cols = map_size
    c0, r0, c1, r1 = cells
    return [c0 * w / cols, r0 * h / rows, c1 * w / cols, r1 * h / rows]


def pool_box(
    fmap: np.ndarray, box: Sequence[float] | None, image_size: tuple[int, int], kind: str
) -> np.ndarray:
    """The region descriptor of a pixel box: its warped cells of ``fmap (C, H, W)`` pooled
    (the whole map when ``box`` is None)."""
    if box is None:
        return pool_map(fmap, kind)
    c0, r0, c1, r1 = warp_box(box, image_size, fmap.shape[1:])
    return pool_map(fmap[:, r0:r1, c0:c1], kind)


def warp_boxes(
    boxes: np.ndarray, image_size: tuple[int, int], map_size: tuple[int, int]
) -> np.ndarray:
    """:func:`warp_box` for ``(P, 4)`` pixel boxes at once -> ``(P, 4)`` int cells."""
    w, h = image_size
    rows, cols = map_size
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, x1 = np.clip(b[:, 0], 0, w) * cols / w, np.clip(b[:, 2], 0, w) * cols / w
    y0, y1 = np.clip(b[:, 1], 0, h) * rows / h, np.clip(b[:, 3], 0, h) * rows / h
    c0 = np.minimum(np.floor(x0 + 1e-6), cols - 1).astype(np.int64)
    r0 = np.minimum(np.floor(y0 + 1e-6), rows - 1).astype(np.int64)
    c1 = np.minimum(np.maximum(np.ceil(x1 - 1e-6), c0 + 1), cols).astype(np.int64)
    r1 = np.minimum(np.maximum(np.ceil(y1 - 1e-6), r0 + 1), rows).astype(np.int64)
    return np.stack([c0, r0, c1, r1], axis=1)


def _box_sums(fmap: np.ndarray, cells: np.ndarray) -> np.ndarray:
    # integral image: every box sum is four look-ups, whatever its size
    c, rows, cols = fmap.shape
    integral = np.zeros((c, rows + 1, cols + 1), np.float64)
    integral[:, 1:, 1:] = np.asarray(fmap, np.float64).cumsum(1).cumsum(2)
    c0, r0, c1, r1 = cells.T
    out = integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]
    return out.T.astype(np.float32)


def pool_boxes(
    fmap: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int], kind: str
) -> np.ndarray:
    """RPA of ``(P, 4)`` pixel boxes (the RPN proposals) on ``fmap (C, H, W)`` -> ``(P, C)``.

    Each box is warped onto the map exactly as the query box (:func:`warp_box`) and its cells
    pooled: max is what Fast R-CNN's RoI pooling layer with a 1x1 output computes, sum the
    same region summed (integral image). Query and proposals are thus pooled the same way.
    """
    _check(kind)
    fmap = np.asarray(fmap, np.float32)
    cells = warp_boxes(boxes, image_size, fmap.shape[1:])
    if kind == "sum":
        return _box_sums(fmap, cells)
    # proposals quantised to cells repeat (300 boxes on a 10 x 8 map): pool each cell range
    # once, on a cells-major copy so that every region is a contiguous block of channels
    unique, inverse = np.unique(cells, axis=0, return_inverse=True)
    hwc = np.ascontiguousarray(fmap.transpose(1, 2, 0))
    out = np.empty((unique.shape[0], fmap.shape[0]), np.float32)
    for i, (c0, r0, c1, r1) in enumerate(unique):
        out[i] = hwc[r0:r1, c0:c1].reshape(-1, fmap.shape[0]).max(axis=0)
    return out[inverse.reshape(-1)]


class Postprocess:
    """Thesis post-processing of one pooling kind: sum -> L2, whitening, L2; max -> L2.

    ``fit`` learns the whitening of sum-pooled vectors on a collection (a no-op for max);
    ``dim`` caps the whitened dimensions (PCA reduction, as in the BLCF baselines).
    """

    def __init__(self, kind: str, whitening: PCAWhitening | None = None) -> None:
        _check(kind)
        self.kind = kind
        self.whitening = whitening

    def fit(self, vectors: np.ndarray, dim: int | None = None) -> Postprocess:
        if self.kind == "sum":
            self.whitening = PCAWhitening.fit(np.asarray(vectors, np.float32), dim)
        return self

    @property
    def fitted(self) -> bool:
        return self.kind == "max" or self.whitening is not None

    @property
    def dim(self) -> int | None:
        return self.whitening.dim if self.whitening is not None else None

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(vectors, np.float32))
        if self.kind == "max":
            out = l2n(x)
        else:
            if self.whitening is None:
                raise ValueError("sum pooling needs its whitening: fit it on the collection")
            out = self.whitening(x)
        return out if np.ndim(vectors) > 1 else out[0]

    def pool_boxes(
        self, fmap: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int]
    ) -> np.ndarray:
        """Post-processed RPA of many boxes of one map, ``(P, d)``.

        For sum pooling the whitening is applied without forming the P whitened products:
        ``PCAWhitening`` computes l2n((x / |x| - mean) P), which points the same way as
        xP - |x| (mean P), and xP of a box sum is the box sum of the projected cells. So the
        map's cells are projected once (H W of them instead of P boxes, 4x fewer products at
        300 proposals on a 10 x 8 map) and the box sums of both maps taken by integral images.
        """
        if self.kind == "max" or self.whitening is None:
            return self(pool_boxes(fmap, boxes, image_size, self.kind))
        fmap = np.asarray(fmap, np.float32)
        cells = warp_boxes(boxes, image_size, fmap.shape[1:])
        norms = np.linalg.norm(_box_sums(fmap, cells), axis=1, keepdims=True)
        c, rows, cols = fmap.shape
        projected = (fmap.reshape(c, -1).T @ self.whitening.projection).T
        xp = _box_sums(projected.reshape(-1, rows, cols), cells)
        return l2n(xp - norms * (self.whitening.mean @ self.whitening.projection))

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        if self.whitening is None:
            return {}
        return {f"{prefix}.{k}": v for k, v in self.whitening.state().items()}

    @classmethod
    def from_state(cls, kind: str, prefix: str, arrays: dict[str, np.ndarray]) -> Postprocess:
        if f"{prefix}.mean" not in arrays:
            return cls(kind)
        white = PCAWhitening(arrays[f"{prefix}.mean"], arrays[f"{prefix}.projection"])
        return cls(kind, white)
