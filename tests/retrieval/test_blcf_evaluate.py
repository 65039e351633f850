import numpy as np
import pytest

from beyondvis.retrieval.evaluate import (
    average_precision,
    mean_average_precision,
    revisited_ap,
    revisited_map,
)


def test_ap_perfect_and_known_values():
    assert average_precision(["a", "b", "c"], ["a", "b"]) == pytest.approx(1.0)
    # positives at ranks 1 and 3: compute_ap.cpp's trapezoids use the precision of the previous
    # rank (1/2 after the miss): 0.5 * (1 + 1) / 2 + 0.5 * (1/2 + 2/3) / 2
    assert average_precision(["a", "x", "b"], ["a", "b"]) == pytest.approx(
        0.5 + 0.5 * (0.5 + 2 / 3) / 2
    )
    # junk is removed from the ranking, not counted as a miss
    assert average_precision(["j", "a", "b"], ["a", "b"], junk=["j"]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        average_precision(["a"], [])


def test_map_uses_good_plus_ok():
    gt = {
        "q1": {"good": ["a"], "ok": ["b"], "junk": ["c"]},
        "q2": {"good": ["z"], "ok": [], "junk": []},
    }
    rankings = {"q1": ["c", "a", "b", "z"], "q2": ["a", "z"]}
    q2 = 1.0 * (0 + 0.5) / 2  # hit at rank 2 after a miss (precision 0 -> 1/2)
    assert mean_average_precision(rankings, gt) == pytest.approx((1.0 + q2) / 2)
    with pytest.raises(KeyError):
        mean_average_precision({}, gt)


def test_revisited_ap_matches_official_formula():
    # official: ranks after junk removal, precision_0 = j/rank, precision_1 = (j+1)/(rank+1)
    assert revisited_ap([0, 1, 2], [0, 1], []) == pytest.approx(1.0)
    assert revisited_ap([5, 0, 1], [0, 1], [5]) == pytest.approx(1.0)
    expected = ((0 / 1 + 1 / 2) + (1 / 3 + 2 / 4)) / 2 / 2  # positives at ranks 1 and 3
    assert revisited_ap([9, 0, 8, 1], [0, 1], []) == pytest.approx(expected)


def test_revisited_setups():
    gnd = [{"easy": [0], "hard": [1], "junk": [2]}, {"easy": [], "hard": [3], "junk": []}]
    ranks = np.array([[1, 2, 0, 3], [3, 0, 1, 2]])
    out = revisited_map(ranks, gnd)
    # easy: q0 ranking without junk {2, 1} -> [0, 3]: AP 1; q1 has no easy -> skipped
    assert out["easy"] == pytest.approx(1.0)
    # medium: q0 positives {0,1} at ranks 0,1 after removing 2 -> 1; q1 hard at rank 0 -> 1
    assert out["medium"] == pytest.approx(1.0)
    # hard: q0 positives {1} with {2,0} junk -> rank 0 -> 1; q1 -> 1
    assert out["hard"] == pytest.approx(1.0)
    ranks_bad = np.array([[3, 0, 2, 1], [0, 1, 2, 3]])
    worse = revisited_map(ranks_bad, gnd)
    assert worse["hard"] < 1.0
