"""The fast extractor agrees with the plain model, caches its export, and skips bad files."""

from __future__ import annotations

import sys

import pytest
import torch

from beyondvis.backbones import FeatureExtractor, default_cache_dir
from beyondvis.backbones.extractor import ONNX_ATOL, ONNX_RTOL
from beyondvis.io import load_image


def assert_within_tolerance(fast, plain):
    scale = float(plain.abs().max().clamp(min=1))
    torch.testing.assert_close(fast, plain, rtol=ONNX_RTOL, atol=ONNX_ATOL * scale)


@pytest.fixture(scope="module")
def photos(lite0, skimage_data):
    transform = lite0.transform()
    names = ["chelsea.png", "coffee.png", "astronaut.png"]
    return torch.stack([transform(load_image(skimage_data / n)) for n in names])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One ONNX cache for the module: each output kind is exported once, then reused."""
    return tmp_path_factory.mktemp("onnx-cache")


def plain(backbone, x, what):
    with torch.inference_mode():
        if what == "pooled":
            return backbone(x)
        return backbone.feature_map(x)


@pytest.mark.parametrize("output", ["pooled", "map"])
def test_onnxruntime_matches_plain_model(lite0, photos, cache, output):
    extractor = FeatureExtractor(lite0, output=output, cache_dir=cache)
    assert extractor.runtime == "onnxruntime"
    fast = extractor(photos)
    assert_within_tolerance(fast, plain(lite0, photos, output))
    assert extractor._sessions[(224, 224)] is not None  # ran in ONNX Runtime, no fallback


def test_all_five_maps(lite0, photos, cache):
    maps = FeatureExtractor(lite0, output="features", cache_dir=cache)(photos[:1])
    with torch.inference_mode():
        reference = lite0.forward_features(photos[:1])
    assert len(maps) == 5
    for fast, slow in zip(maps, reference):
        assert_within_tolerance(fast, slow)


def test_export_is_cached_atomically_and_reused(lite0, photos, cache, monkeypatch):
    first = FeatureExtractor(lite0, cache_dir=cache)
    expected = first(photos[:2])
    cached = first.onnx_path(224, 224)
    assert cached.is_file() and cached.parent == cache
    assert "efficientnet_lite0" in cached.name and "224x224" in cached.name
    assert not list(cache.glob(".*.tmp"))  # no temp file left behind
    second = FeatureExtractor(lite0, cache_dir=cache)

    def no_export(*args, **kwargs):
        raise AssertionError("the cached ONNX file should have been used")

    monkeypatch.setattr(second, "_export", no_export)
    torch.testing.assert_close(second(photos[:2]), expected)


def test_damaged_cache_file_is_rebuilt(lite0, photos, tmp_path):
    extractor = FeatureExtractor(lite0, cache_dir=tmp_path)
    extractor.onnx_path(224, 224).write_bytes(b"garbage")
    assert_within_tolerance(extractor(photos[:1]), plain(lite0, photos[:1], "pooled"))
    assert extractor.onnx_path(224, 224).stat().st_size > 1_000_000


def test_falls_back_to_torch_without_onnxruntime(lite0, photos, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    extractor = FeatureExtractor(lite0, cache_dir=tmp_path)
    assert extractor.runtime == "torch"
    assert_within_tolerance(extractor(photos), plain(lite0, photos, "pooled"))
    assert not list(tmp_path.iterdir())
    with pytest.raises(ImportError, match="onnxruntime"):
        FeatureExtractor(lite0, runtime="onnxruntime")


def test_mismatch_falls_back_to_torch(lite0, photos, cache, monkeypatch):
    extractor = FeatureExtractor(lite0, cache_dir=cache)
    real_run = extractor._run_session
    monkeypatch.setattr(extractor, "_run_session", lambda s, x: real_run(s, x) + 1.0)
    out = extractor(photos[:1])
    assert extractor._sessions[(224, 224)] is None
    assert_within_tolerance(out, plain(lite0, photos[:1], "pooled"))


def test_extract_paths_skips_and_reports_bad_files(lite0, skimage_data, cache, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    paths = [
        skimage_data / "chelsea.png",
        broken,
        tmp_path / "missing.png",
        skimage_data / "coffee.png",
    ]
    extractor = FeatureExtractor(lite0, cache_dir=cache)
    result = extractor.extract_paths(paths, batch_size=3)
    assert result.indices == [0, 3]
    assert result.paths == [str(paths[0]), str(paths[3])]
    assert sorted(e.path for e in result.errors) == sorted(
        [str(broken), str(tmp_path / "missing.png")]
    )
    assert result.features.shape == (2, 1280)
    transform = lite0.transform()
    x = torch.stack([transform(load_image(p)) for p in result.paths])
    assert_within_tolerance(result.features, plain(lite0, x, "pooled"))


def test_nothing_loadable_gives_an_empty_result(lite0, tmp_path):
    result = FeatureExtractor(lite0, runtime="torch").extract_paths([tmp_path / "nope.png"])
    assert len(result) == 0 and result.features.shape == (0, 1280) and len(result.errors) == 1


def test_bad_arguments(lite0):
    with pytest.raises(ValueError, match="output must be"):
        FeatureExtractor(lite0, output="logits")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        FeatureExtractor(lite0, runtime="torch")(torch.zeros(3, 224, 224))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BEYONDVIS_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BEYONDVIS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "beyondvis"
