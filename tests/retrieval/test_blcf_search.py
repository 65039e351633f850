"""The search pipeline (GS / LS / WS, reranking, GQE / LQE / WQE) on crafted assignment maps."""

import numpy as np
import pytest

from beyondvis.retrieval import qe
from beyondvis.retrieval.bow import bow, bow_matrix
from beyondvis.retrieval.inverted import InvertedIndex
from beyondvis.retrieval.rerank import RerankConfig
from beyondvis.retrieval.search import BLCFSearcher, SearchConfig, augment_query, make_view

VOCAB = 400
OBJ = np.arange(8).reshape(2, 4) + 10  # object words 10..17


def _collection(seed=0, n=40):
    """Images whose background words come from per-image "scenes"; the object sits in a few."""
    rng = np.random.default_rng(seed)
    maps, holders = [], []
    for i in range(n):
        scene = rng.integers(100, VOCAB, 30)  # each image a different context
        amap = rng.choice(scene, (12, 16))
        if i % 8 == 3:
            r, c = rng.integers(0, 10), rng.integers(0, 12)
            amap[r : r + 2, c : c + 4] = OBJ
            holders.append((i, (c, r, c + 4, r + 2)))
        maps.append(amap.astype(np.uint16))
    return maps, holders


def _searcher(maps):
    inv = InvertedIndex.from_bows(bow_matrix(maps, VOCAB, centre=False))
    return BLCFSearcher(maps, np.array([(160, 120)] * len(maps)), inv, centre=False)


def _query(rng, context_words):
    amap = rng.choice(context_words, (12, 16)).astype(np.uint16)
    amap[5:7, 6:10] = OBJ
    # box in pixels: cells are 10x10 px
    return make_view(amap, (160, 120), box=(60, 50, 100, 70))


def test_local_search_beats_global_when_context_differs():
    maps, holders = _collection()
    s = _searcher(maps)
    rng = np.random.default_rng(9)
    # the query's context is the scene of a non-holder image: GS ranks that image first
    view = _query(rng, np.unique(maps[0]))
    gs = s.search([view], SearchConfig(mode="gs", centre_prior=False))
    ls = s.search([view], SearchConfig(mode="ls", centre_prior=False))
    ws = s.search([view], SearchConfig(mode="ws", centre_prior=False))
    positives = {i for i, _ in holders}
    assert gs.ids[0] == 0
    assert set(ls.ids[: len(positives)].tolist()) == positives

    def mean_rank(r):
        return np.mean([np.flatnonzero(r.ids == i)[0] for i in positives])

    # WS weights the object most but keeps the context: between GS and LS
    assert mean_rank(ls) <= mean_rank(ws) < mean_rank(gs)


def test_rerank_returns_localisation_boxes():
    maps, holders = _collection()
    s = _searcher(maps)
    view = _query(np.random.default_rng(1), np.unique(maps[1]))
    cfg = SearchConfig(
        mode="ls", rerank=True, rerank_config=RerankConfig(top_k=10), centre_prior=False
    )
    r = s.search([view], cfg)
    assert len(r.boxes) == 10
    assert np.all(np.diff(r.scores) <= 1e-9)
    for i, cells in holders:
        box = r.boxes[i]
        c0, r0, c1, r1 = cells
        # the found window overlaps the planted object
        ix = min(box[2], c1 * 10) - max(box[0], c0 * 10)
        iy = min(box[3], r1 * 10) - max(box[1], r0 * 10)
        assert ix > 0 and iy > 0


def test_query_expansion_variants():
    maps, holders = _collection()
    s = _searcher(maps)
    view = _query(np.random.default_rng(2), np.unique(maps[2]))
    rc = RerankConfig(top_k=20)
    for kind in ("gqe", "lqe", "wqe"):
        cfg = SearchConfig(
            mode="ls", rerank=True, rerank_config=rc, qe=kind, qe_top=3, centre_prior=False
        )
        r = s.search([view], cfg)
        assert r.ids[0] in {i for i, _ in holders}
    gqe_first = SearchConfig(mode="gs", qe="gqe", qe_top=2, centre_prior=False)
    assert s.search([view], gqe_first).ids.size == len(maps)
    with pytest.raises(ValueError):
        SearchConfig(qe="lqe", rerank=False)
    with pytest.raises(ValueError):
        SearchConfig(mode="xx")


def test_expansion_bows_select_the_right_cells():
    amap = np.array([[1, 2, 3], [4, 5, 6]])
    glob = qe.global_expansion_bows([amap], 8, [None])[0]
    loc = qe.local_expansion_bows([amap], [(1, 0, 3, 1)], 8)[0]
    wq = qe.weighted_expansion_bows([amap], [(0, 0, 1, 1)], 8)[0]
    assert glob.tolist() == [0, 1, 1, 1, 1, 1, 1, 0]
    assert loc.tolist() == [0, 0, 1, 1, 0, 0, 0, 0]
    assert wq[1] == 1.0 and np.isclose(wq[2], 0.5) and np.isclose(wq[6], 1 / (1 + np.sqrt(5)))
    avg = qe.average_query(np.array([2.0, 0, 0]), [np.array([0, 3.0, 0])])
    assert np.allclose(avg, [0.5, 0.5, 0])


def test_augmented_views_are_summed():
    maps, _ = _collection()
    s = _searcher(maps)
    v = make_view(maps[3], (160, 120))
    one = s.query_counts([v], "gs", centre=False)
    two = s.query_counts([v, v], "gs", centre=False)
    assert np.allclose(two, 2 * one)
    assert np.allclose(one, bow(maps[3], VOCAB))


def test_augment_query_transforms_boxes_and_masks():
    from PIL import Image

    image = Image.new("RGB", (100, 60))
    views = augment_query(image, box=(10, 20, 30, 40))
    assert len(views) == 3
    assert views[1][1] == (70, 20, 90, 40)  # mirrored
    x0, y0, x1, y1 = views[2][1]  # zoomed 1.5x around the centre: (box * 1.5 - offset)
    assert (x0, y0, x1, y1) == (0, 15, 20, 45)  # 150x90 cropped at (25, 15); x0 clipped to 0
    mask = np.zeros((60, 100), bool)
    mask[0:3, 0:3] = True  # in the corner: the zoomed crop loses it, that view is dropped
    assert len(augment_query(image, mask=mask)) == 2


def test_top_k_ranking_is_the_head_of_the_full_ranking():
    maps, _ = _collection(seed=5, n=300)
    s = _searcher(maps)
    view = _query(np.random.default_rng(3), np.unique(maps[4]))
    for cfg in (
        SearchConfig(mode="gs", centre_prior=False),
        SearchConfig(mode="ls", rerank=True, rerank_config=RerankConfig(top_k=10)),
        SearchConfig(mode="ls", rerank=True, rerank_config=RerankConfig(top_k=10), qe="lqe"),
    ):
        full, head = s.search([view], cfg), s.search([view], cfg, k=5)
        # the reranking and QE still see their own top lists: only the tail is cut
        assert head.ids.size == max(5, 10 if cfg.rerank else 0, 10 if cfg.qe else 0)
        assert np.array_equal(head.ids, full.ids[: head.ids.size])
        assert np.allclose(head.scores, full.scores[: head.ids.size])
