"""``evaluate_blcf``: the asked thesis tables as one ``beyondvis-blcf-evaluation`` object, on a
tiny Oxford-format benchmark the test writes (stand-in features, no backbone)."""

from __future__ import annotations

import json

import pytest
from _fake_features import PatchFeatures
from test_blcf_index import _config, _photos

from beyondvis.retrieval import blcf_table_text, check_evaluation_tables, evaluate_blcf
from beyondvis.validation import ValidationError


def _benchmark(root):
    """12 database photos; queries q0, q1 are photos 0 and 1, each the only good match."""
    paths = _photos(root / "png", 12)
    images = root / "images"
    images.mkdir(parents=True)
    for p in paths:
        from PIL import Image

        Image.open(p).convert("RGB").save(images / f"{p.stem}.jpg", quality=95)
    gt = root / "gt_files"
    gt.mkdir()
    for k in range(2):
        stem = paths[k].stem
        (gt / f"q{k}_query.txt").write_text(f"oxc1_{stem} 10 10 80 60\n")
        (gt / f"q{k}_good.txt").write_text(f"{stem}\n")
        (gt / f"q{k}_ok.txt").write_text("")
        (gt / f"q{k}_junk.txt").write_text("")
    return root


def test_evaluation_object_has_the_asked_tables(tmp_path):
    bench = _benchmark(tmp_path / "bench")
    said = []
    out = evaluate_blcf(
        bench, _config(centre_prior=False), tmp_path / "cache", tables=["stages", " pooling"],
        stages=["GS", "LS"], report=said.append, extractor=PatchFeatures(),
    )  # fmt: skip
    assert list(out) == ["format", "format_version", "config", "codebook", "database_images",
                         "queries", "pooling", "stages"]  # fmt: skip
    assert out["format"] == "beyondvis-blcf-evaluation" and out["format_version"] == 1
    assert (out["database_images"], out["queries"], out["codebook"]) == (12, 2, "fitted")
    assert out["config"]["features"]["backbone"] == "fake"
    assert [r["stage"] for r in out["stages"]] == ["GS", "LS"]
    # each query is a database photo: its own copy ranks first, so AP is 1 for GS
    assert out["stages"][0]["map"] == pytest.approx(1.0)
    assert all(0.0 < r["map"] <= 1.0 for r in out["pooling"])
    json.dumps(out)  # the object is JSON as it stands
    # the summary first, then each table as it is ready, in the object's order
    assert said[0].startswith("12 database images, 2 queries, fitted codebook of ")
    assert said[1].startswith("\nBoW vs pooling (mAP)\n") and "| method |" in said[1]
    assert said[2].startswith("\nPipeline stages (mAP)\n") and "| GS |" in said[2]
    assert len(said) == 3


def test_unknown_tables_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValidationError, match=r"unknown table\(s\) \['maps'\]"):
        evaluate_blcf(tmp_path / "nothing", _config(), tmp_path / "cache", tables=["maps"])
    assert not (tmp_path / "cache").exists()
    assert check_evaluation_tables(["stages", "", " localisation "]) == {"stages", "localisation"}
    text = blcf_table_text("localisation", [{"stage": "GS + R", "positives_reranked": 3,
                           "mean_iou": 0.5, "iou_ge_0.3": 1.0, "iou_ge_0.5": 0.5}])  # fmt: skip
    assert text.startswith("\nLocalisation of reranked positives\n") and "iou_ge_0.5" in text


def test_localisation_without_annotations_is_a_clear_error(tmp_path):
    bench = _benchmark(tmp_path / "bench")
    with pytest.raises(FileNotFoundError):
        evaluate_blcf(bench, _config(), tmp_path / "cache", tables=["localisation"],
                      extractor=PatchFeatures())  # fmt: skip


def test_detector_evaluation_refuses_unknown_networks_and_titles_its_tables(tmp_path):
    from beyondvis.retrieval import detector_table_text, evaluate_detector

    with pytest.raises(ValidationError, match=r"unknown network\(s\) \['FT_x'\]"):
        evaluate_detector(tmp_path / "nothing", networks=["FT_fc", " FT_x"])
    rows = [{"stage": "IPA", "off-the-shelf": 0.5, "FT_fc": 0.75}]
    text = detector_table_text("stages", rows, ["off-the-shelf", "FT_fc"])
    assert text.startswith("\nReranking and query expansion (mAP;")
    assert "| stage | off-the-shelf | FT_fc |" in text and "| IPA | 0.500 | 0.750 |" in text
