"""JSONL set reader: relative paths, vocabulary from train, malformed lines."""

from __future__ import annotations

import json

import pytest

from beyondvis.data.jsonl_sets import read_jsonl_splits
from beyondvis.data.sets_readers import SetDataError


def _jsonl(path, items):
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    return path


def test_reads_splits(tmp_path):
    train = _jsonl(
        tmp_path / "train.jsonl",
        [{"image": f"im/{i}.jpg", "labels": ["b", "a"] if i else []} for i in range(10)],
    )
    test = _jsonl(tmp_path / "test.jsonl", [{"image": "/abs/t.jpg", "labels": ["a", "new"]}])
    splits = read_jsonl_splits(train, test)
    assert splits.vocab == ["a", "b"]
    assert len(splits.train) == 9 and len(splits.val) == 1
    assert splits.test[0].labels == ["a"] and splits.test[0].image == "/abs/t.jpg"
    assert any("dropped 1" in n for n in splits.notes)
    assert all(r.image.startswith(str(tmp_path / "im")) for r in splits.train)


@pytest.mark.parametrize(
    "line,match",
    [
        ("{bad", "malformed JSON"),
        ('{"labels": []}', "'image'"),
        ('{"image": "x", "labels": "a"}', "list of strings"),
    ],
)
def test_malformed_lines(tmp_path, line, match):
    path = tmp_path / "train.jsonl"
    path.write_text('{"image": "a.jpg", "labels": ["x"]}\n' + line + "\n")
    with pytest.raises(SetDataError, match=f"train.jsonl:2: .*{match}"):
        read_jsonl_splits(path, path)
