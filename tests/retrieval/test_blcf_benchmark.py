"""The thesis-table runner on a tiny make-instances benchmark (fake features, real photos)."""

import pytest
from _fake_features import PatchFeatures

from beyondvis.data.instances import InstanceConfig, make_instances
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
    cfg = IndexConfig(features=FeatureConfig(backbone="fake"), codebook_size=16, centre_prior=False)
    bench = InstanceBenchmark(tmp_path / "bench", cfg, tmp_path / "cache")
    bench._extractor = PatchFeatures()
    bench.fit_bow()
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
