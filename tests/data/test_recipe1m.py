"""Recipe1M reader: streaming, malformed records, layer 2, images, cleaning."""

from __future__ import annotations

import json

import pytest

from beyondvis.data import recipe1m
from beyondvis.data.recipe1m import (
    ReadReport,
    Recipe,
    Recipe1MError,
    clean_recipes,
    image_path,
    iter_json_array,
    iter_layer1,
    load_recipe1m,
    read_det_ingrs,
    read_layer2,
)


def _rec(rid, partition="train", n_ing=2, n_ins=2, title="Soup"):
    return {
        "id": rid,
        "title": title,
        "partition": partition,
        "url": "",
        "ingredients": [{"text": f"{i} cup water"} for i in range(n_ing)],
        "instructions": [{"text": f"step {i} {rid}"} for i in range(n_ins)],
    }


def test_streams_array_across_small_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe1m, "_CHUNK", 16)  # force many buffer refills mid-element
    records = [_rec(f"id{i}", title="T" * (i * 7)) for i in range(30)]
    path = tmp_path / "layer1.json"
    path.write_text(json.dumps(records, indent=1))
    out = list(iter_json_array(path))
    assert [r["id"] for r in out] == [f"id{i}" for i in range(30)]


def test_malformed_records_are_reported_and_skipped(tmp_path):
    good = [json.dumps(_rec(f"g{i}")) for i in range(3)]
    broken_json = '{"id": "bad1", "title": "x", "ingredients": [{"text": "a"},,]}'
    no_partition = json.dumps({**_rec("bad2"), "partition": "elsewhere"})
    no_text = json.dumps({**_rec("bad3"), "ingredients": [{"name": "salt"}]})
    text = "[" + ", ".join([good[0], broken_json, good[1], no_partition, no_text, good[2]]) + "]"
    path = tmp_path / "layer1.json"
    path.write_text(text)
    report = ReadReport()
    recipes = list(iter_layer1(path, report))
    assert [r.id for r in recipes] == ["g0", "g1", "g2"]
    assert report.ok == 3
    reasons = " | ".join(f"{w}: {r}" for w, r in report.bad)
    assert len(report.bad) == 3, reasons
    assert "invalid JSON" in reasons and "bad partition" in reasons and "without text" in reasons


def test_truncated_file_keeps_complete_records(tmp_path):
    path = tmp_path / "layer1.json"
    path.write_text("[" + json.dumps(_rec("a")) + ", " + json.dumps(_rec("b"))[:40])
    report = ReadReport()
    assert [r.id for r in iter_layer1(path, report)] == ["a"]
    assert report.bad


@pytest.mark.parametrize("content", ["", '{"id": 1}', "not json"])
def test_not_an_array_is_an_error(tmp_path, content):
    path = tmp_path / "layer1.json"
    path.write_text(content)
    with pytest.raises(Recipe1MError):
        list(iter_json_array(path))


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(Recipe1MError, match="no such file"):
        list(iter_json_array(tmp_path / "nope.json"))


def test_layer2_det_ingrs_and_image_layout(tmp_path):
    (tmp_path / "layer1.json").write_text(json.dumps([_rec("r1"), _rec("r2", "test")]))
    (tmp_path / "layer2.json").write_text(
        json.dumps(
            [
                {"id": "r1", "images": [{"id": "abcd1234.jpg"}, {"id": "ffff0000.jpg"}]},
                {"id": "r2", "images": "oops"},
            ]
        )
    )
    (tmp_path / "det_ingrs.json").write_text(
        json.dumps(
            [
                {
                    "id": "r1",
                    "ingredients": [{"text": "water"}, {"text": "x"}],
                    "valid": [True, False],
                }
            ]
        )
    )
    img = image_path(tmp_path, "train", "abcd1234.jpg")
    assert img.relative_to(tmp_path).as_posix() == "images/train/a/b/c/d/abcd1234.jpg"
    img.parent.mkdir(parents=True)
    img.write_bytes(b"jpeg")
    data = load_recipe1m(tmp_path)
    r1 = next(r for r in data.recipes if r.id == "r1")
    assert r1.images == ["abcd1234.jpg"]  # the second image file is missing: dropped
    assert data.missing_images == ["ffff0000.jpg (recipe r1)"]
    assert [w for w, _ in data.report.bad] == ["layer2[1]"]
    assert data.det_ingrs == {"r1": ["water"]}
    assert read_layer2(tmp_path / "layer2.json") == {"r1": ["abcd1234.jpg", "ffff0000.jpg"]}
    assert read_det_ingrs(tmp_path / "det_ingrs.json")["r1"] == ["water"]


def _recipe(rid, partition="train", images=(), n_ing=2, n_ins=2, title="Soup"):
    return Recipe(
        id=rid,
        title=title,
        ingredients=[f"{i} cup water" for i in range(n_ing)],
        instructions=[f"step {i}" for i in range(n_ins)],
        partition=partition,
        images=list(images),
    )


def test_cleaning_rules():
    recipes = [
        _recipe("ok", images=["i1"]),
        _recipe("one_ingredient", n_ing=1),
        _recipe("one_step", n_ins=1),
        _recipe("dup"),  # same title/ingredients/instructions as "ok"
        _recipe("shares_image", partition="test", images=["i1"], title="Other"),
        _recipe("own_image", partition="test", images=["i2"], title="Third"),
    ]
    kept, report = clean_recipes(recipes)
    assert [r.id for r in kept] == ["ok", "own_image"]
    assert report.too_few_ingredients == 1
    assert report.too_few_instructions == 1
    assert report.duplicates == 1
    assert report.shared_image_across_splits == 1
    assert report.before == 6 and report.after == 2


@pytest.mark.data
def test_real_mini_dataset_reads(shared_data):
    root = shared_data("recipe1m_mini")
    data = load_recipe1m(root)
    assert len(data.recipes) == 13176
    assert sum(1 for r in data.recipes if r.images) > 200


def test_provenance_reader_and_prefix(tmp_path):
    path = tmp_path / "provenance.jsonl"
    rows = [
        {"id": "a1", "source_id": "pdr:soup", "source": "x"},
        {"id": "b2", "source_id": "epi:c"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    got = recipe1m.read_provenance(path)
    assert got == {"a1": "pdr:soup", "b2": "epi:c"}
    assert [recipe1m.source_prefix(v) for v in got.values()] == ["pdr", "epi"]
    assert recipe1m.source_prefix("no-prefix") == ""
    path.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(Recipe1MError, match=r"provenance.jsonl:2"):
        recipe1m.read_provenance(path)
