import numpy as np
import pytest

from beyondvis.retrieval.bow import (
    bow,
    bow_matrix,
    box_mask,
    box_to_cells,
    cell_box_to_pixels,
    centre_prior,
    distance_weights,
    map_dtype,
    resize_mask,
)


def test_map_dtype_is_compact():
    assert map_dtype(25000) == np.uint16
    assert map_dtype(65536) == np.uint16
    assert map_dtype(100000) == np.uint32
    with pytest.raises(ValueError):
        map_dtype(0)


def test_centre_prior_peaks_at_centre_and_is_symmetric():
    w = centre_prior((5, 7))
    assert w.shape == (5, 7)
    assert w[2, 3] == w.max()
    assert np.allclose(w, w[::-1, ::-1])
    assert w.min() > 0.5 - 1e-6  # corners keep half the weight, never zero


def test_distance_weights_inverse_of_distance():
    mask = np.zeros((5, 5), bool)
    mask[2, 2] = True
    w = distance_weights(mask)
    assert w[2, 2] == 1.0
    assert np.isclose(w[2, 4], 1 / 3)  # distance 2
    assert np.isclose(w[0, 0], 1 / (1 + np.sqrt(8)))
    with pytest.raises(ValueError):
        distance_weights(np.zeros((3, 3), bool))


def test_box_to_cells_and_back():
    # 100x50 image, 10x20 map -> cells are 5x5 px
    assert box_to_cells((10, 10, 30, 20), (100, 50), (10, 20)) == (2, 2, 6, 4)
    assert cell_box_to_pixels((2, 2, 6, 4), (100, 50), (10, 20)) == [10, 10, 30, 20]
    # a box smaller than a cell still selects the cell it falls in
    assert box_to_cells((11, 11, 12, 12), (100, 50), (10, 20)) == (2, 2, 3, 3)
    assert box_mask((0, 0, 100, 50), (100, 50), (10, 20)).all()
    with pytest.raises(ValueError):
        box_to_cells((5, 5, 5, 9), (100, 50), (10, 20))


def test_resize_mask_keeps_tiny_objects():
    mask = np.zeros((40, 40), bool)
    mask[21, 21] = True
    cells = resize_mask(mask, (4, 4))
    assert cells.sum() == 1 and cells[2, 2]


def test_bow_counts_and_weights():
    amap = np.array([[0, 1], [1, 3]], np.uint16)
    assert bow(amap, 5).tolist() == [1, 2, 0, 1, 0]
    weights = np.array([[1.0, 0.5], [0.0, 2.0]])
    assert bow(amap, 5, weights).tolist() == [1, 0.5, 0, 2, 0]


def test_bow_matrix_matches_bow():
    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 30, (4, 6)).astype(np.uint16) for _ in range(5)]
    mat = bow_matrix(maps, 30, centre=True).toarray()
    for i, m in enumerate(maps):
        assert np.allclose(mat[i], bow(m, 30, centre_prior(m.shape)))
