import numpy as np

from beyondvis.retrieval.codebook import Codebook


def _clusters(k=1200, d=8, per=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32) * 5
    x = np.repeat(centres, per, axis=0) + rng.normal(0, 0.05, (k * per, d)).astype(np.float32)
    return centres, x


def test_fit_and_assign_maps():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    cb = Codebook.fit(x, 40, iterations=5)
    assert cb.size == 40 and cb.dim == 8
    amap = cb.assign(x[:600].reshape(20, 30, 8))
    assert amap.shape == (20, 30) and amap.dtype == np.uint16
    # nearest centroid, checked by brute force
    d = ((x[:600, None, :] - cb.centroids[None]) ** 2).sum(-1)
    assert np.array_equal(amap.ravel(), d.argmin(1))
    # too few features for 40 words: the size is capped (39 features per word), not an error
    assert Codebook.fit(x[:100], 40, iterations=2).size == 2


def test_ivf_assignment_is_close_to_exact():
    centres, x = _clusters()
    exact = Codebook(centres).assign(x)
    approx = Codebook(centres, nprobe=8).assign(x)
    assert np.array_equal(exact, np.repeat(np.arange(len(centres)), 3))
    assert (approx == exact).mean() > 0.95
