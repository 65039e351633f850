"""The detector tables on a tiny Oxford-format benchmark written here (random-init backbone)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from beyondvis.retrieval.detector import DetectorBenchmark, DetectorConfig, DetectorSearchConfig
from beyondvis.retrieval.detector.benchmark import pooling_rows, stage_rows


def _bench(root):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "queries").mkdir()
    (root / "gt_files").mkdir()
    for i in range(5):
        a = (rng.random((48, 64, 3)) * 80).astype(np.uint8)
        if i < 2:
            a[10:30, 20:40] = [230, 20, 20]  # the object, in photos 0 and 1
        Image.fromarray(a).save(root / "images" / f"db{i}.jpg")
    q = (rng.random((48, 64, 3)) * 80).astype(np.uint8)
    q[5:25, 5:25] = [230, 20, 20]
    Image.fromarray(q).save(root / "queries" / "q0.jpg")
    (root / "gt_files" / "red_query.txt").write_text("q0 5 5 25 25\n")
    (root / "gt_files" / "red_good.txt").write_text("db0\ndb1\n")
    (root / "gt_files" / "red_ok.txt").write_text("")
    (root / "gt_files" / "red_junk.txt").write_text("")
    return root


def test_tables_run_on_cached_indexes(tmp_path):
    root = _bench(tmp_path / "bench")
    cfg = DetectorConfig(pretrained=False, max_side=64, proposals=8)
    bench = DetectorBenchmark(root, cfg, tmp_path / "cache")
    rows = pooling_rows(bench)
    assert [(r["filtering"], r["reranking"]) for r in rows][:3] == [
        ("IPA-sum", "none"), ("IPA-sum", "RPA-sum"), ("IPA-sum", "RPA-max")
    ]  # fmt: skip
    assert all(0.0 < r["map"] <= 1.0 for r in rows)
    stages = stage_rows(bench, networks=("off-the-shelf",))
    assert stages[0]["off-the-shelf"] == rows[0]["map"]  # same search, same number
    assert next(r for r in stages if r["stage"] == "CS-SR")["off-the-shelf"] is None
    # a second benchmark object reuses the saved index and its build time
    again = DetectorBenchmark(root, cfg, tmp_path / "cache")
    assert again.run("off-the-shelf", DetectorSearchConfig(rerank=None)) == rows[0]["map"]
    assert again.build_seconds["off-the-shelf"] == bench.build_seconds["off-the-shelf"]
