import numpy as np
import scipy.sparse as sp

from beyondvis.retrieval.bow import bow, bow_matrix
from beyondvis.retrieval.inverted import InvertedIndex


def _dense_cosine(bows, q, idf):
    d = bows * idf
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    qv = q * idf
    return d @ (qv / np.linalg.norm(qv))


def test_scores_equal_brute_force_tfidf_cosine():
    rng = np.random.default_rng(1)
    maps = [rng.integers(0, 50, (6, 8)) for _ in range(30)]
    bows = bow_matrix(maps, 50)
    index = InvertedIndex.from_bows(bows)
    df = (bows.toarray() > 0).sum(0)
    idf = np.where(df > 0, np.log(30 / np.maximum(df, 1)), 0)
    q = bow(maps[4][:3, :3], 50)
    assert np.allclose(index.scores(q), _dense_cosine(bows.toarray(), q, idf), atol=1e-5)
    ids, scores = index.search(bow(maps[4], 50), top_k=3)
    assert ids[0] == 4 and np.isclose(scores[0], 1.0, atol=1e-5)
    assert np.all(np.diff(scores) <= 0)


def test_no_tfidf_is_plain_cosine():
    bows = sp.csr_matrix(np.array([[1, 0, 1], [0, 2, 0]], np.float32))
    index = InvertedIndex.from_bows(bows, tfidf=False)
    assert np.allclose(index.scores(np.array([1, 0, 0])), [1 / np.sqrt(2), 0])


def test_add_equals_building_at_once():
    rng = np.random.default_rng(2)
    maps = [rng.integers(0, 40, (5, 5)) for _ in range(12)]
    full = InvertedIndex.from_bows(bow_matrix(maps, 40))
    part = InvertedIndex.from_bows(bow_matrix(maps[:7], 40))
    part.add(bow_matrix(maps[7:], 40))
    q = bow(maps[9], 40)
    assert np.allclose(full.scores(q), part.scores(q), atol=1e-6)


def test_query_with_unknown_words_only_scores_zero():
    index = InvertedIndex.from_bows(sp.csr_matrix(np.eye(3, 5, dtype=np.float32)))
    assert not index.scores(np.array([0, 0, 0, 0, 1.0])).any()


def test_pruned_query_keeps_its_heaviest_words_and_postings_save_in_6_bytes():
    rng = np.random.default_rng(3)
    maps = [rng.integers(0, 200, (8, 8)) for _ in range(40)]
    index = InvertedIndex.from_bows(bow_matrix(maps, 200))
    disk = index.disk_arrays()
    assert disk["data"].dtype == np.float16 and disk["indices"].dtype == np.uint32
    assert index.disk_nbytes == 6 * index.postings.nnz and index.nbytes == 8 * index.postings.nnz
    q = index.weight(bow(maps[7], 200))
    p = InvertedIndex.prune(q, 10)
    assert np.count_nonzero(p) == 10 and np.isclose(np.linalg.norm(p), 1.0)
    assert np.allclose(np.sort(q[np.flatnonzero(p)]), np.sort(q)[-10:])  # ties may swap words
    assert InvertedIndex.prune(q, None) is q
    ids, _ = index.search(bow(maps[7], 200), top_k=1, max_words=10)
    assert ids[0] == 7


def test_top_k_order_equals_a_stable_full_sort():
    from beyondvis.retrieval.inverted import top_k_order

    rng = np.random.default_rng(3)
    for trial in range(60):
        n, k = int(rng.integers(1, 60_000)), int(rng.integers(1, 300))
        s = rng.random(n).astype(np.float32)
        if trial % 3 == 1:  # most images unmatched: ties at 0 across the cut
            s[rng.random(n) < 0.95] = 0
        if trial % 3 == 2:  # few distinct values: ties everywhere
            s = np.round(s * 4) / 4
        assert np.array_equal(top_k_order(s, k), np.argsort(-s, kind="stable")[:k]), (n, k)
    assert top_k_order(np.ones(5, np.float32), None).tolist() == [0, 1, 2, 3, 4]


def test_in_place_accumulation_equals_the_public_sparse_product(monkeypatch):
    from beyondvis.retrieval import inverted

    rng = np.random.default_rng(4)
    maps = [rng.integers(0, 300, (9, 12)) for _ in range(200)]
    index = InvertedIndex.from_bows(bow_matrix(maps, 300))
    q = index.weight(bow(maps[7], 300))
    fast = index.scores_vector(q)
    monkeypatch.setattr(inverted, "_csc_matvec", None)  # SciPy without the private kernel
    assert np.allclose(index.scores_vector(q), fast, atol=1e-6)
    assert fast.dtype == np.float32 and int(np.argmax(fast)) == 7
