import numpy as np
import pytest

from beyondvis.retrieval.bow import bow
from beyondvis.retrieval.rerank import (
    LocalReranker,
    RerankConfig,
    aspect_scores,
    enumerate_windows,
    pyramid_regions,
    pyramid_weights,
    region_bows,
)


def test_window_enumeration_sizes_and_overlap():
    wins = enumerate_windows((8, 16))
    sizes = {(c1 - c0, r1 - r0) for c0, r0, c1, r1 in wins}
    assert sizes == {(w, h) for w in (16, 8, 4) for h in (8, 4, 2)}
    # width W/4 = 4 with 50% overlap: x starts 0, 2, ..., 12 -> 7 positions; heights 8/2=4: 0,2,4
    quarter_half = [tuple(w) for w in wins if w[2] - w[0] == 4 and w[3] - w[1] == 4]
    assert len(quarter_half) == 7 * 3
    assert {w[0] for w in quarter_half} == {0, 2, 4, 6, 8, 10, 12}
    assert np.all(wins[:, 2] <= 16) and np.all(wins[:, 3] <= 8)
    # one full-image window
    assert sum(1 for w in wins if tuple(w) == (0, 0, 16, 8)) == 1


def test_window_enumeration_covers_odd_borders():
    wins = enumerate_windows((5, 7))
    assert wins[:, 2].max() == 7 and wins[:, 3].max() == 5


def test_aspect_filter_score():
    wins = np.array([[0, 0, 4, 4], [0, 0, 8, 2], [0, 0, 2, 8]])
    s = aspect_scores(wins, (1.0, 1.0), 1.0)
    assert np.allclose(s, [1.0, 0.25, 0.25])
    # non-square cells: 4x4 cells of 2x1 px are 8x4 px, aspect 2
    assert np.isclose(aspect_scores(wins[:1], (2.0, 1.0), 2.0)[0], 1.0)


def test_pyramid_weights_follow_thesis():
    # w_r = 1 / 2^(L - l_r), L = 2: whole region (l=1) 1/2, quadrants (l=2) 1
    assert pyramid_weights(2).tolist() == [0.5, 1, 1, 1, 1]
    assert pyramid_weights(1).tolist() == [1.0]
    with pytest.raises(ValueError):
        pyramid_weights(3)
    regions = pyramid_regions((0, 0, 4, 6))
    assert regions == [(0, 0, 4, 6), (0, 0, 2, 3), (2, 0, 4, 3), (0, 3, 2, 6), (2, 3, 4, 6)]


def test_region_bows_match_slicing():
    rng = np.random.default_rng(0)
    amap = rng.integers(0, 20, (6, 9))
    regions = np.array([[0, 0, 9, 6], [2, 1, 5, 4], [8, 5, 9, 6]])
    mat = region_bows(amap, regions, 20).toarray()
    for k, (c0, r0, c1, r1) in enumerate(regions):
        assert np.allclose(mat[k], bow(amap[r0:r1, c0:c1], 20))


def _planted(rng, vocab, obj, shape, at):
    amap = rng.integers(vocab // 2, vocab, shape)  # background words
    r, c = at
    amap[r : r + obj.shape[0], c : c + obj.shape[1]] = obj
    return amap


def test_reranker_localises_planted_object():
    rng = np.random.default_rng(3)
    vocab = 200
    obj = rng.integers(0, vocab // 2, (4, 8))  # object words never occur in the background
    query = _planted(rng, vocab, obj, (16, 16), (6, 4))
    image = _planted(rng, vocab, obj, (16, 32), (8, 16))
    rr = LocalReranker(np.ones(vocab, np.float32), RerankConfig(pyramid_levels=1))
    qv = rr.query_vectors(query, (4, 6, 12, 10))
    match = rr.match(image, qv, query_ar=2.0, cell_size=(1.0, 1.0))
    c0, r0, c1, r1 = match.cells
    assert (c1 - c0, r1 - r0) == (8, 4)
    assert (c0, r0) == (16, 8)
    assert match.score == pytest.approx(1.0, abs=1e-5)


def test_aspect_filter_rejects_wrong_shapes():
    rng = np.random.default_rng(4)
    vocab = 100
    obj = rng.integers(0, 50, (8, 2))  # tall object
    image = _planted(rng, vocab, obj, (8, 8), (0, 0))
    query_vecs_src = _planted(rng, vocab, obj, (8, 8), (0, 0))
    rr = LocalReranker(np.ones(vocab, np.float32), RerankConfig(pyramid_levels=1))
    qv = rr.query_vectors(query_vecs_src, (0, 0, 2, 8))
    tall = rr.match(image, qv, query_ar=0.25, cell_size=(1.0, 1.0))
    assert tall.cells == (0, 0, 2, 8)
    # a wide query aspect forbids the tall window (0.25 / 4 < 0.4) even though it matches best
    wide = rr.match(image, qv, query_ar=4.0, cell_size=(1.0, 1.0))
    w = wide.cells
    assert (w[2] - w[0]) / (w[3] - w[1]) >= 4.0 * 0.4
    off = LocalReranker(
        np.ones(vocab, np.float32), RerankConfig(pyramid_levels=1, aspect_threshold=None)
    )
    assert off.match(image, qv, query_ar=4.0, cell_size=(1.0, 1.0)).cells == (0, 0, 2, 8)


def test_pyramid_prefers_spatially_consistent_window():
    vocab = 10
    # query: word 1 on the left half, word 2 on the right half
    query = np.array([[1, 2]] * 2)
    rr2 = LocalReranker(
        np.ones(vocab, np.float32), RerankConfig(pyramid_levels=2, aspect_threshold=None)
    )
    rr1 = LocalReranker(
        np.ones(vocab, np.float32), RerankConfig(pyramid_levels=1, aspect_threshold=None)
    )
    same = np.array([[1, 2]] * 2)
    swapped = np.array([[2, 1]] * 2)
    q2, q1 = rr2.query_vectors(query, (0, 0, 2, 2)), rr1.query_vectors(query, (0, 0, 2, 2))
    # without the pyramid both layouts look identical; with it the swapped one loses
    s1 = rr1.match(same, q1, 1.0, (1, 1)).score, rr1.match(swapped, q1, 1.0, (1, 1)).score
    assert s1[0] == pytest.approx(s1[1])
    s_same = rr2.match(same, q2, 1.0, (1, 1)).score
    s_swap = rr2.match(swapped, q2, 1.0, (1, 1)).score
    assert s_same == pytest.approx(1.0) and s_swap < s_same
