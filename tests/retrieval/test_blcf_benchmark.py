"""The thesis-table runner on a tiny make-instances benchmark (fake features, real photos)."""

import numpy as np
import pytest
from _fake_features import PatchFeatures

from beyondvis.data.instances import InstanceConfig, make_instances
from beyondvis.engine import FeatureCache
from beyondvis.io import load_image
from beyondvis.retrieval.benchmark import (
    STAGES,
    InstanceBenchmark,
    localisation_table,
    pooling_table,
    stage_table,
)
from beyondvis.retrieval.features import FeatureConfig
from beyondvis.retrieval.index import IndexConfig
from beyondvis.retrieval.rerank import RerankConfig


@pytest.mark.data
def test_tables_run_and_give_valid_map(shared_data, tmp_path):
    root = shared_data("")
    shared_data("PennFudanPed")
    make_instances(root, tmp_path / "bench", InstanceConfig(pedestrians=2, plants=1,
                   pastes_per_object=2, distractors=3, seed=3))  # fmt: skip
    photos = sorted((tmp_path / "bench" / "images").glob("*.jpg"))
    (tmp_path / "bench" / "images" / "zz_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cfg = IndexConfig(features=FeatureConfig(backbone="fake"), codebook_size=16, centre_prior=False)
    bench = InstanceBenchmark(tmp_path / "bench", cfg, tmp_path / "cache")
    bench._extractor = PatchFeatures()
    bench.fit_bow()
    # the engine's ragged cache: every readable photo, its own map shape, the unreadable one
    # skipped (not a crash, not a zero map)
    names, feats, sizes = bench.database()
    assert names == [p.stem for p in photos]
    for path, f, size in zip(photos, feats, sizes):
        image = load_image(path)
        assert tuple(size) == image.size
        np.testing.assert_allclose(f, PatchFeatures()(image), rtol=1e-3, atol=1e-3)  # float16
    assert len({f.shape for f in feats}) > 1
    (db_cache,) = (tmp_path / "cache").glob("*/database-*")
    assert [s["id"] for s in FeatureCache(db_cache).skipped] == ["zz_broken.jpg"]
    stages = stage_table(bench, RerankConfig(top_k=5), qe_top=2)
    assert [r["stage"] for r in stages] == [s for s, _ in STAGES]
    for r in stages:
        assert 0.0 < r["map"] <= 1.0 and 0.0 < r["map_qaug"] <= 1.0
    loc = localisation_table(bench, RerankConfig(top_k=10))
    assert [r["stage"] for r in loc] == ["GS + R", "LS + R"]
    for r in loc:
        assert r["positives_reranked"] > 0 and 0.0 <= r["mean_iou"] <= 1.0
    pooled = pooling_table(bench)
    assert {r["method"] for r in pooled} == {"BoW (BLCF)", "spoc", "crow", "mac", "rmac"}
    assert all(0.0 < r["map"] <= 1.0 for r in pooled)
    # features are cached: a second run does not call the extractor again
    again = InstanceBenchmark(tmp_path / "bench", cfg, tmp_path / "cache")
    again._extractor = PatchFeatures()
    again.fit_bow()
    assert again._extractor.calls == 0
