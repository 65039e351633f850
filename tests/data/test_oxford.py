import os
import pickle

import numpy as np
import pytest

from beyondvis.data.oxford import (
    GroundTruthError,
    OxfordQuery,
    read_gt_files,
    read_revisited_gnd,
    write_gt_files,
)
from beyondvis.retrieval.evaluate import mean_average_precision, revisited_map


def _write(folder, name, text):
    (folder / name).write_text(text, encoding="utf-8")


def test_read_official_gt_layout(tmp_path):
    _write(tmp_path, "all_souls_1_query.txt", "oxc1_all_souls_000013 136.5 34.1 648.5 955.7\n")
    _write(tmp_path, "all_souls_1_good.txt", "all_souls_000013\nall_souls_000026\n")
    _write(tmp_path, "all_souls_1_ok.txt", "oxford_003410\n")
    _write(tmp_path, "all_souls_1_junk.txt", "all_souls_000027\n")
    _write(tmp_path, "defense_1_query.txt", "paris_defense_000605 0 0 10 20\n")
    for k in ("good", "ok", "junk"):
        _write(tmp_path, f"defense_1_{k}.txt", "paris_defense_000001\n" if k == "good" else "")
    queries = read_gt_files(tmp_path)
    assert [q.name for q in queries] == ["all_souls_1", "defense_1"]
    q = queries[0]
    assert q.image == "all_souls_000013" and q.box == (136.5, 34.1, 648.5, 955.7)
    assert q.good == ["all_souls_000013", "all_souls_000026"] and q.ok == ["oxford_003410"]
    assert queries[1].image == "paris_defense_000605" and queries[1].ok == []
    gt = {q.name: q.as_gt() for q in queries}
    rankings = {
        "all_souls_1": [
            "all_souls_000027",
            "all_souls_000013",
            "oxford_003410",
            "all_souls_000026",
        ],
        "defense_1": ["paris_defense_000001"],
    }
    assert mean_average_precision(rankings, gt) == pytest.approx(1.0)


def test_gt_roundtrip_and_errors(tmp_path):
    q = OxfordQuery("obj_1", "img_3", (1.0, 2.0, 30.0, 40.0), ["img_4"], ["img_5"], ["img_6"])
    write_gt_files(tmp_path, [q])
    assert read_gt_files(tmp_path) == [q]
    os.remove(tmp_path / "obj_1_ok.txt")
    with pytest.raises(GroundTruthError, match="obj_1_ok.txt"):
        read_gt_files(tmp_path)
    with pytest.raises(GroundTruthError):
        read_gt_files(tmp_path / "missing")
    _write(tmp_path, "obj_1_ok.txt", "")
    _write(tmp_path, "obj_1_query.txt", "img_3 1 2 x 4\n")
    with pytest.raises(GroundTruthError, match="not numeric"):
        read_gt_files(tmp_path)


def _gnd_dict():
    return {
        "imlist": ["a", "b", "c", "d"],
        "qimlist": ["q0"],
        "gnd": [
            {
                "bbx": np.array([1.0, 2.0, 3.0, 4.0]),
                "easy": np.array([0, 2]),
                "hard": np.array([1]),
                "junk": np.array([3]),
            }
        ],
    }


def test_read_revisited_pkl(tmp_path):
    path = tmp_path / "gnd_test.pkl"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps(_gnd_dict(), protocol=protocol))
        gt = read_revisited_gnd(path)
        assert gt.imlist == ["a", "b", "c", "d"] and gt.qimlist == ["q0"]
        assert gt.gnd[0]["easy"] == [0, 2] and gt.gnd[0]["bbx"] == [1, 2, 3, 4]
    out = revisited_map(np.array([[0, 2, 3, 1]]), gt.gnd)
    assert out["easy"] == pytest.approx(1.0) and out["hard"] == pytest.approx(1.0)
    assert out["medium"] == pytest.approx(1.0)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_revisited_pkl_refuses_code(tmp_path):
    path = tmp_path / "gnd_evil.pkl"
    path.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [_Evil()]}))
    with pytest.raises(GroundTruthError, match="refusing"):
        read_revisited_gnd(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(GroundTruthError):
        read_revisited_gnd(path)
    path.write_bytes(pickle.dumps({"imlist": []}))
    with pytest.raises(GroundTruthError, match="imlist, qimlist and gnd"):
        read_revisited_gnd(path)
