"""Shared set-dataset helpers: records, deterministic splits, vocabulary restriction, dispatch."""

from __future__ import annotations

import pytest

from beyondvis.data.sets_readers import (
    SetDataError,
    SetRecord,
    load_set_dataset,
    restrict_to_vocab,
    split_train_val,
)


def test_record_drops_duplicates_in_order():
    assert SetRecord("a.jpg", ["b", "a", "b"]).labels == ["b", "a"]


def test_split_is_deterministic_and_disjoint():
    records = [SetRecord(f"{i}.jpg", []) for i in range(50)]
    train, val = split_train_val(records[::-1], 0.1, seed=3)
    train2, val2 = split_train_val(records, 0.1, seed=3)
    assert [r.image for r in val] == [r.image for r in val2] and len(val) == 5
    assert not {r.image for r in train} & {r.image for r in val}
    assert len(train) + len(val) == 50
    with pytest.raises(ValueError):
        split_train_val(records, 1.0)


def test_restrict_to_vocab_counts_dropped_labels():
    notes: list[str] = []
    out = restrict_to_vocab([SetRecord("x", ["a", "zz"]), SetRecord("y", [])], ["a"], "t", notes)
    assert [r.labels for r in out] == [["a"], []]
    assert notes and "1 label" in notes[0]


def test_unknown_dataset_and_missing_root(monkeypatch):
    with pytest.raises(SetDataError, match="unknown set dataset"):
        load_set_dataset("imagenet")
    monkeypatch.delenv("BEYONDVIS_DATA", raising=False)
    with pytest.raises(SetDataError, match="BEYONDVIS_DATA"):
        load_set_dataset("miml")
