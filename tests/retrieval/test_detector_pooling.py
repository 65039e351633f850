"""IPA / RPA pooling, query-box warping and post-processing on crafted maps (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from beyondvis.retrieval.detector.pooling import (
    Postprocess,
    cells_to_pixels,
    pool_box,
    pool_boxes,
    pool_map,
    pool_rois,
    warp_box,
    warp_boxes,
)


def crafted_map() -> np.ndarray:
    # 3 channels on a 4 x 8 map: channel 0 counts cells, channel 1 is one peak at row 1,
    # column 5, channel 2 is negative everywhere but one cell
    fmap = np.zeros((3, 4, 8), np.float32)
    fmap[0] = np.arange(32).reshape(4, 8)
    fmap[1, 1, 5] = 7.0
    fmap[2] = -1.0
    fmap[2, 3, 0] = 2.0
    return fmap


def test_ipa_sum_and_max_pool_every_cell():
    fmap = crafted_map()
    np.testing.assert_allclose(pool_map(fmap, "sum"), [sum(range(32)), 7.0, -31 + 2.0])
    np.testing.assert_allclose(pool_map(fmap, "max"), [31.0, 7.0, 2.0])
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_map(fmap, "mean")


def test_rpa_pools_each_roi_separately():
    rois = np.zeros((2, 2, 3, 3), np.float32)
    rois[0, 0] = 1.0
    rois[1, 1, 2, 2] = 5.0
    np.testing.assert_allclose(pool_rois(rois, "sum"), [[9.0, 0.0], [0.0, 5.0]])
    np.testing.assert_allclose(pool_rois(rois, "max"), [[1.0, 0.0], [0.0, 5.0]])


def test_warp_box_maps_pixels_onto_cells():
    # a 64 x 32 photo on an 8 x 4 map: cells of 8 x 8 pixels
    assert warp_box((8, 8, 24, 16), (64, 32), (4, 8)) == (1, 1, 3, 2)
    # partly covered cells count: 9..23 px touches cells 1 and 2
    assert warp_box((9, 9, 23, 15), (64, 32), (4, 8)) == (1, 1, 3, 2)
    # a box smaller than a cell still pools the cell it falls in
    assert warp_box((41, 10, 42, 11), (64, 32), (4, 8)) == (5, 1, 6, 2)
    # clipped to the image; a box outside it is an error
    assert warp_box((-10, -10, 100, 100), (64, 32), (4, 8)) == (0, 0, 8, 4)
    with pytest.raises(ValueError, match="outside"):
        warp_box((70, 0, 80, 10), (64, 32), (4, 8))
    # vectorised and inverse agree
    boxes = np.array([[8, 8, 24, 16], [41, 10, 42, 11], [-10, -10, 100, 100]], np.float32)
    assert warp_boxes(boxes, (64, 32), (4, 8)).tolist() == [
        [1, 1, 3, 2], [5, 1, 6, 2], [0, 0, 8, 4]
    ]  # fmt: skip
    assert cells_to_pixels((1, 1, 3, 2), (64, 32), (4, 8)) == [8.0, 8.0, 24.0, 16.0]


def test_query_box_pools_only_its_cells():
    fmap = crafted_map()
    inside = pool_box(fmap, (40, 8, 48, 16), (64, 32), "max")  # exactly cell (row 1, col 5)
    np.testing.assert_allclose(inside, [13.0, 7.0, -1.0])
    outside = pool_box(fmap, (0, 0, 16, 8), (64, 32), "max")  # cells (0, 0) and (0, 1)
    np.testing.assert_allclose(outside, [1.0, 0.0, -1.0])
    total = pool_box(fmap, (0, 0, 16, 16), (64, 32), "sum")  # rows 0-1, cols 0-1
    np.testing.assert_allclose(total, [0 + 1 + 8 + 9, 0.0, -4.0])
    np.testing.assert_allclose(pool_box(fmap, None, (64, 32), "sum"), pool_map(fmap, "sum"))


@pytest.mark.parametrize("kind", ["sum", "max"])
def test_proposals_are_pooled_like_the_query_box(kind):
    rng = np.random.default_rng(0)
    fmap = rng.normal(size=(5, 6, 9)).astype(np.float32)
    size = (90, 60)
    x0, y0 = rng.uniform(0, 80, 20), rng.uniform(0, 50, 20)
    boxes = np.stack([x0, y0, x0 + rng.uniform(1, 40, 20), y0 + rng.uniform(1, 30, 20)], 1)
    many = pool_boxes(fmap, boxes, size, kind)
    one_by_one = np.stack([pool_box(fmap, b, size, kind) for b in boxes])
    np.testing.assert_allclose(many, one_by_one, rtol=1e-5, atol=1e-5)


def test_postprocess_sum_whitens_and_max_only_normalises():
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=(200, 6))).astype(np.float32) * [1, 2, 3, 4, 5, 60]
    mx = Postprocess("max")
    out = mx(x)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-5)
    sm = Postprocess("sum")
    with pytest.raises(ValueError, match="whitening"):
        sm(x)
    sm.fit(x)
    out = sm(x)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # whitened: no dimension dominates any more (the raw vectors point along the 60x one)
    assert np.abs(out).mean(axis=0).std() < 0.5 * np.abs(mx(x)).mean(axis=0).std()
    restored = Postprocess.from_state("sum", "rpa.sum", sm.state("rpa.sum"))
    np.testing.assert_allclose(restored(x), out, rtol=1e-5, atol=1e-6)


def test_whitened_box_sums_without_whitening_every_box():
    rng = np.random.default_rng(2)
    fmap = np.abs(rng.normal(size=(8, 5, 7))).astype(np.float32)
    size = (70, 50)
    boxes = np.array([[0, 0, 70, 50], [10, 10, 30, 40], [33, 2, 35, 4], [50, 20, 69, 49]])
    post = Postprocess("sum").fit(np.abs(rng.normal(size=(300, 8))).astype(np.float32))
    direct = post(pool_boxes(fmap, boxes, size, "sum"))
    np.testing.assert_allclose(post.pool_boxes(fmap, boxes, size), direct, rtol=1e-4, atol=1e-5)
    mx = Postprocess("max")
    np.testing.assert_allclose(
        mx.pool_boxes(fmap, boxes, size), mx(pool_boxes(fmap, boxes, size, "max")), rtol=1e-6
    )
