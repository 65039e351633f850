"""MIML reader: one-hot CSV, deterministic 70/10/20 split, bad rows, and the real data."""

from __future__ import annotations

import pytest

from beyondvis.data.miml import read_miml
from beyondvis.data.sets_readers import SetDataError


def _write(tmp_path, rows, header="Filenames,desert,mountains,sea"):
    (tmp_path / "miml_labels_1.csv").write_text("\n".join([header, *rows]) + "\n")
    return tmp_path


def test_reads_and_splits(tmp_path):
    rows = [f"{i}.jpg,{i % 2},{(i // 2) % 2},0" for i in range(1, 21)]
    splits = read_miml(_write(tmp_path, rows))
    assert splits.vocab == ["desert", "mountains", "sea"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (14, 2, 4)
    every = splits.train + splits.val + splits.test
    assert sorted(r.image for r in every) == sorted(
        str(tmp_path / "images" / f"{i}.jpg") for i in range(1, 21)
    )
    by_name = {r.image.rsplit("/", 1)[1]: r.labels for r in every}
    assert by_name["3.jpg"] == ["desert", "mountains"] and by_name["4.jpg"] == []
    again = read_miml(tmp_path)
    assert [r.image for r in again.test] == [r.image for r in splits.test]
    assert [r.image for r in read_miml(tmp_path, split_seed=1).test] != [
        r.image for r in splits.test
    ]


@pytest.mark.parametrize(
    "rows,match",
    [(["1.jpg,1,0"], "expected 4 fields"), (["1.jpg,1,2,0"], "0/1"), ([], "no images")],
)
def test_bad_rows(tmp_path, rows, match):
    with pytest.raises(SetDataError, match=match):
        read_miml(_write(tmp_path, rows))


def test_bad_header(tmp_path):
    with pytest.raises(SetDataError, match="header"):
        read_miml(_write(tmp_path, ["1.jpg,1"], header="name,desert"))


@pytest.mark.data
def test_real_miml(shared_data):
    splits = read_miml(shared_data("miml_scenes"))
    assert splits.vocab == ["desert", "mountains", "sea", "sunset", "trees"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1119, 160, 320)
    assert all(len(r.labels) >= 1 for r in splits.train)
