"""Dataset readers against hostile files: duplicate ids and names, paths that leave the
dataset root, text that is not UTF-8, absurdly nested JSON (issue "Hardening")."""

from __future__ import annotations

import json

import pytest

from beyondvis.data.miml import read_miml_records
from beyondvis.data.recipe1m import (
    ReadReport,
    Recipe1MError,
    image_path,
    iter_layer1,
    load_recipe1m,
    read_layer2,
)
from beyondvis.data.sets_readers import SetDataError


def _recipe(rid, partition="train", title="Soup"):
    return {
        "id": rid,
        "title": title,
        "partition": partition,
        "ingredients": [{"text": "1 onion"}],
        "instructions": [{"text": "Cook it."}],
    }


def test_duplicate_recipe_ids_keep_the_first_and_are_counted(tmp_path):
    path = tmp_path / "layer1.json"
    rows = [_recipe("a"), _recipe("b"), _recipe("a", "test", "Other")]
    path.write_text(json.dumps(rows), encoding="utf-8")
    report = ReadReport()
    recipes = list(iter_layer1(path, report))
    assert [(r.id, r.partition, r.title) for r in recipes] == [
        ("a", "train", "Soup"),
        ("b", "train", "Soup"),
    ]
    assert report.duplicates == 1 and "duplicate id" in report.bad[0][1]


@pytest.mark.parametrize("bad", ["../../x.jpg", "/etc/passwd", "..", ".hidden", "a\\b.jpg"])
def test_layer2_ids_outside_the_root_are_refused(tmp_path, bad):
    path = tmp_path / "layer2.json"
    rows = [{"id": "a", "images": [{"id": bad}]}, {"id": "b", "images": [{"id": "f00d.jpg"}]}]
    path.write_text(json.dumps(rows), encoding="utf-8")
    report = ReadReport()
    assert read_layer2(path, report) == {"b": ["f00d.jpg"]}
    assert "not plain file names" in report.bad[0][1]
    with pytest.raises(Recipe1MError):
        image_path(tmp_path, "train", bad)


def test_a_latin1_layer1_is_a_clear_error_not_mangled_text(tmp_path):
    (tmp_path / "layer1.json").write_bytes(
        json.dumps([_recipe("a", title="Crème brûlée")], ensure_ascii=False).encode("latin-1")
    )
    with pytest.raises(Recipe1MError, match="not UTF-8"):
        load_recipe1m(tmp_path)


def test_deeply_nested_json_is_skipped_and_the_rest_read(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    text = "[" + json.dumps(_recipe("a")) + ', {"id": ' + deep + "}, " + json.dumps(_recipe("b"))
    (tmp_path / "layer1.json").write_text(text + "]", encoding="utf-8")
    report = ReadReport()
    ids = [r.id for r in iter_layer1(tmp_path / "layer1.json", report)]
    assert ids == ["a", "b"]
    assert any("nested too deeply" in reason for _, reason in report.bad)


def _miml(tmp_path, rows):
    lines = ["Filenames,desert,sea", *rows]
    (tmp_path / "miml_labels_1.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_miml_duplicate_rows_become_one_photo(tmp_path):
    records, _ = read_miml_records(_miml(tmp_path, ["1.jpg,1,0", "2.jpg,0,1", "1.jpg,1,0"]))
    assert [r.image.rsplit("/", 1)[-1] for r in records] == ["1.jpg", "2.jpg"]


def test_miml_conflicting_duplicates_and_escaping_names_are_errors(tmp_path):
    with pytest.raises(SetDataError, match="other labels"):
        read_miml_records(_miml(tmp_path, ["1.jpg,1,0", "1.jpg,0,1"]))
    with pytest.raises(SetDataError, match="plain file name"):
        read_miml_records(_miml(tmp_path, ["../../etc/passwd,1,0"]))


def test_deeply_nested_json_in_other_readers_is_a_one_line_error(tmp_path):
    from beyondvis.data.jsonl_sets import read_jsonl_sets

    deep = '{"image": "a.jpg", "labels": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (tmp_path / "train.jsonl").write_text(deep + "\n", encoding="utf-8")
    with pytest.raises(SetDataError, match="nested too deeply"):
        read_jsonl_sets(tmp_path / "train.jsonl")
