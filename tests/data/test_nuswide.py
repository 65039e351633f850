"""NUS-WIDE reader on a tiny official-layout folder."""

from __future__ import annotations

import pytest

from beyondvis.data.nuswide import read_nuswide
from beyondvis.data.sets_readers import SetDataError


def _write(root, concepts, train, test):
    (root / "ImageList").mkdir()
    gt = root / "Groundtruth" / "TrainTestLabels"
    gt.mkdir(parents=True)
    (root / "Concepts81.txt").write_text("\n".join(concepts) + "\n")
    for tag, items in (("Train", train), ("Test", test)):
        (root / "ImageList" / f"{tag}Imagelist.txt").write_text(
            "\n".join(n for n, _ in items) + "\n"
        )
        for concept in concepts:
            flags = ["1" if concept in labels else "0" for _, labels in items]
            (gt / f"Labels_{concept}_{tag}.txt").write_text("\n".join(flags) + "\n")


def test_reads_alphabetical_sets(tmp_path):
    train = [(f"sky\\{i}.jpg", ["sky", "clouds"] if i % 2 else []) for i in range(10)]
    _write(tmp_path, ["sky", "clouds"], train, [("a\\t.jpg", ["clouds"])])
    splits = read_nuswide(tmp_path)
    assert splits.vocab == ["clouds", "sky"]
    every = {r.image.rsplit("/", 1)[1]: r.labels for r in splits.train + splits.val}
    assert every["1.jpg"] == ["clouds", "sky"] and every["2.jpg"] == []
    assert splits.test[0].image.endswith("Flickr/a/t.jpg")


def test_length_mismatch(tmp_path):
    _write(tmp_path, ["sky"], [("a.jpg", ["sky"])], [("b.jpg", [])])
    (tmp_path / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Train.txt").write_text("1\n0\n")
    with pytest.raises(SetDataError, match="2 lines for 1 images"):
        read_nuswide(tmp_path)
