"""Bag-of-words vectors built from assignment maps (thesis chapter 2, Section 2.1).

An assignment map is a 2-D array (cells of the conv feature map) holding the visual word of
every cell. A BoW for the whole image, a box, or a distance-weighted region is a weighted
``bincount`` over it, which is why the map is the index's only per-image representation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels


def map_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype able to hold every word id of the codebook."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def centre_prior(shape: tuple[int, int]) -> np.ndarray:
    """Normalised inverse distance to the image centre: 1 at the centre, 1/2 at the corners.

    The thesis (Sec. 2.3.1) weights visual words by a normalised inverse distance map to the
    centre, after SPoC's Gaussian prior. We use 1 / (1 + d / d_max) so that no cell is zeroed:
    objects off-centre still count, only less.
    """
    h, w = shape
    ys = (np.arange(h) + 0.5) - h / 2.0
    xs = (np.arange(w) + 0.5) - w / 2.0
    dist = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    d_max = max(float(np.sqrt((h / 2.0) ** 2 + (w / 2.0) ** 2)), 1e-6)
    return (1.0 / (1.0 + dist / d_max)).astype(np.float32)


def distance_weights(mask: np.ndarray) -> np.ndarray:
    """Weights inversely proportional to the distance (in cells) to the mask: 1 / (1 + d).

    This is the weighted search (WS) of Sec. 2.3.4: context still counts, the object more.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the query mask selects no cell of the feature map")
    dist = ndimage.distance_transform_edt(~mask)
    return (1.0 / (1.0 + dist)).astype(np.float32)


def box_to_cells(
    box: Box, image_size: tuple[int, int], map_shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Map a pixel box to the half-open cell range ``(c0, r0, c1, r1)`` it covers.

    ``image_size`` is (width, height) of the image the map was computed on (original pixels).
    Cells whose centre lies inside the box are taken; a box smaller than a cell still selects
    the cell it falls in, so tiny objects give a non-empty query.
    """
    width, height = image_size
    h, w = map_shape
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty box {box}: need x0 < x1 and y0 < y1")
    sx, sy = w / float(width), h / float(height)
    c0 = int(np.ceil(x0 * sx - 0.5))
    c1 = int(np.floor(x1 * sx - 0.5)) + 1
    r0 = int(np.ceil(y0 * sy - 0.5))
    r1 = int(np.floor(y1 * sy - 0.5)) + 1
    c0, r0 = min(max(c0, 0), w - 1), min(max(r0, 0), h - 1)
    if c1 <= c0:
        c1 = c0 + 1
    if r1 <= r0:
        r1 = r0 + 1
    return c0, r0, min(c1, w), min(r1, h)


def box_mask(box: Box, image_size: tuple[int, int], map_shape: tuple[int, int]) -> np.ndarray:
    c0, r0, c1, r1 = box_to_cells(box, image_size, map_shape)
    mask = np.zeros(map_shape, dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def resize_mask(mask: np.ndarray, map_shape: tuple[int, int]) -> np.ndarray:
    """Downsample a pixel mask to the feature map grid (a cell is in if any of it is covered)."""
    mask = np.asarray(mask) > 0
    if not mask.any():
        raise ValueError("the query mask is empty")
    h, w = map_shape
    ys = np.linspace(0, mask.shape[0], h + 1).astype(int)
    xs = np.linspace(0, mask.shape[1], w + 1).astype(int)
    out = np.zeros((h, w), dtype=bool)
    for i in range(h):
        for j in range(w):
            out[i, j] = mask[
                ys[i] : max(ys[i + 1], ys[i] + 1), xs[j] : max(xs[j + 1], xs[j] + 1)
            ].any()
    if not out.any():  # a sub-cell mask: keep the cell holding its centroid
        cy, cx = np.argwhere(mask).mean(axis=0)
        out[min(int(cy * h / mask.shape[0]), h - 1), min(int(cx * w / mask.shape[1]), w - 1)] = True
    return out


def cell_box_to_pixels(
    cells: tuple[int, int, int, int], image_size: tuple[int, int], map_shape: tuple[int, int]
) -> list[float]:
    """Inverse of :func:`box_to_cells`: the pixel box covered by a cell range."""
    c0, r0, c1, r1 = cells
    width, height = image_size
    h, w = map_shape
    return [c0 * width / w, r0 * height / h, c1 * width / w, r1 * height / h]


def bow(assignment: np.ndarray, vocab_size: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Dense (vocab_size,) float32 BoW of a map, optionally weighting every cell."""
    words = np.asarray(assignment).ravel()
    w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    return np.bincount(words, weights=w, minlength=vocab_size).astype(np.float32)


def bow_matrix(
    maps: Sequence[np.ndarray],
    vocab_size: int,
    centre: bool = False,
) -> sp.csr_matrix:
    """Stack the (optionally centre-weighted) BoWs of many maps into a CSR (n_images, vocab)."""
    rows, cols, vals = [], [], []
    for i, amap in enumerate(maps):
        words = np.asarray(amap).ravel().astype(np.int64)
        weights = centre_prior(amap.shape).ravel() if centre else np.ones(words.size, np.float32)
        uniq, inv = np.unique(words, return_inverse=True)
        rows.append(np.full(uniq.size, i, dtype=np.int64))
        cols.append(uniq)
        vals.append(np.bincount(inv, weights=weights).astype(np.float32))
    if not maps:
        return sp.csr_matrix((0, vocab_size), dtype=np.float32)
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(maps), vocab_size),
        dtype=np.float32,
    )
    matrix.sort_indices()
    return matrix


def l2_normalize_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms).astype(np.float32) @ matrix)


def l2_normalize(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
