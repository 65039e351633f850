"""Metrics against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from beyondvis.sets import SetMetrics, plot_f1_by_cardinality


def _metrics():
    m = SetMetrics(3, topk=(1, 2))
    pred = torch.tensor([[1, 1, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1]])
    true = torch.tensor([[1, 0, 0], [0, 0, 0], [1, 1, 0], [1, 0, 0]])
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.3, 0.2, 0.1], [0.2, 0.9, 0.5], [0.6, 0.1, 0.7]])
    m.update(pred[:2], true[:2], scores[:2])
    m.update(pred[2:], true[2:], scores[2:])
    return m


def test_metrics_hand_computed():
    out = _metrics().compute()
    # TP = 2 (img0 l0, img2 l1); FP = 2 (img0 l1, img3 l2); FN = 2 (img2 l0, img3 l0)
    assert out["o_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))
    assert out["iou"] == pytest.approx(2 / 6)
    # per class F1 = 2TP/(2TP+FP+FN): l0 tp1 fp0 fn2 -> 2/4 ; l1 tp1 fp1 fn0 -> 2/3 ; l2 -> 0
    assert out["c_f1"] == pytest.approx((2 / 4 + 2 / 3 + 0) / 3)
    # per image: 2/3, empty-empty = 1, 2*1/(1+2) = 2/3, 0
    assert out["i_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3 + 0) / 4)
    assert out["card_err"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    # P@1: img0 l0 hit, img1 miss, img2 l1 hit, img3 l2 miss -> 0.5
    assert out["p@1"] == pytest.approx(0.5)
    # P@2: img0 {0,1} 1/2, img1 0, img2 {1,2} 1/2, img3 {2,0} 1/2
    assert out["p@2"] == pytest.approx((0.5 + 0 + 0.5 + 0.5) / 4)
    assert out["num_images"] == 4


def test_unseen_class_counts_as_perfect_and_errors():
    m = SetMetrics(2)
    m.update(torch.tensor([[1, 0]]), torch.tensor([[1, 0]]))
    out = m.compute()
    assert out["c_f1"] == 1.0 and out["o_f1"] == 1.0 and out["i_f1"] == 1.0
    with pytest.raises(ValueError):
        m.update(torch.ones(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError):
        SetMetrics(2).compute()


def test_f1_by_cardinality_and_plot(tmp_path):
    m = _metrics()
    curve = m.f1_by_cardinality()
    assert sorted(curve) == [0, 1, 2]
    assert curve[0] == (1.0, 0.0, 1)
    assert curve[1][0] == pytest.approx((2 / 3 + 0) / 2) and curve[1][2] == 2
    path = plot_f1_by_cardinality({"model": curve}, tmp_path / "f1.png")
    assert path.stat().st_size > 1000
