import numpy as np
import pytest

from beyondvis.retrieval.pooling import (
    DenseIndex,
    PCAWhitening,
    crow,
    gaussian_centre_prior,
    mac,
    rmac,
    rmac_regions,
    spoc,
)


def _fmap(seed=0, shape=(6, 8, 5)):
    return np.abs(np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def test_spoc_is_weighted_sum():
    f = _fmap()
    assert np.allclose(spoc(f, centre=False), f.sum(axis=(0, 1)), atol=1e-4)
    prior = gaussian_centre_prior((6, 8))
    assert np.allclose(spoc(f), np.tensordot(prior, f, axes=([0, 1], [0, 1])), atol=1e-4)
    box = np.zeros((6, 8))
    box[1:3, 2:4] = 1
    assert np.allclose(spoc(f, box, centre=False), f[1:3, 2:4].sum(axis=(0, 1)), atol=1e-4)


def test_mac_and_region_mac():
    f = _fmap(1)
    assert np.allclose(mac(f), f.max(axis=(0, 1)))
    box = np.zeros((6, 8))
    box[0, 0] = 1
    assert np.allclose(mac(f, box), f[0, 0])
    regions = rmac_regions((6, 8), levels=3)
    assert (0, 0, 8, 6) in regions and all(r[2] <= 8 and r[3] <= 6 for r in regions)
    assert rmac(f).shape == (5,)


def test_crow_weights_sparse_channels_up():
    f = _fmap(2)
    f[..., 0] = 0
    f[0, 0, 0] = 1.0  # channel 0 fires once: rare -> high channel weight
    f[..., 1] = 1.0  # channel 1 fires everywhere: weight ~ log(sum q / 1)
    v = crow(f)
    assert v.shape == (5,) and np.all(np.isfinite(v))
    spatial_sum = crow(np.ones((2, 2, 2)))
    assert np.allclose(spatial_sum[0], spatial_sum[1])


def test_pca_whitening_decorrelates():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6)) @ rng.normal(size=(6, 6))
    pca = PCAWhitening.fit(x)
    y = pca(x)
    assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    assert PCAWhitening.fit(x, dim=3).dim == 3
    with pytest.raises(ValueError):
        PCAWhitening.fit(x[:1])


def test_dense_index_exact_search():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids, scores = DenseIndex(x).search(x[7], 3)
    assert ids[0, 0] == 7 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
