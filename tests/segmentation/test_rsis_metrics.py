"""SBD, DiC, mask AP, object-order correlation and RLE against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np

from beyondvis.segmentation.metrics import (
    SegmentationMetrics,
    best_dice,
    decode_rle,
    difference_in_count,
    encode_rle,
    order_correlations,
    pairwise_dice,
    symmetric_best_dice,
)


def box_mask(y0, y1, x0, x1, shape=(10, 10)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_dice_and_best_dice_hand_values():
    a = box_mask(0, 2, 0, 2)  # 4 px
    b = box_mask(0, 2, 0, 4)  # 8 px, overlap 4 -> dice 8/12
    c = box_mask(5, 7, 5, 7)  # disjoint
    d = pairwise_dice(np.stack([a]), np.stack([b, c]))
    assert np.allclose(d, [[8 / 12, 0.0]])
    gt = np.stack([a, c])
    pred = np.stack([b])
    # BD(pred, gt) = dice(b, a) = 2/3; BD(gt, pred) = (2/3 + 0) / 2 = 1/3
    assert math.isclose(best_dice(pred, gt), 2 / 3)
    assert math.isclose(best_dice(gt, pred), 1 / 3)
    assert math.isclose(symmetric_best_dice(pred, gt), 1 / 3)
    assert symmetric_best_dice(gt, gt) == 1.0


def test_empty_sets():
    none = np.zeros((0, 10, 10), bool)
    one = np.stack([box_mask(0, 2, 0, 2)])
    assert symmetric_best_dice(none, none) == 1.0
    assert symmetric_best_dice(none, one) == 0.0
    assert symmetric_best_dice(one, none) == 0.0


def test_difference_in_count():
    assert difference_in_count(3, 5) == -2
    assert difference_in_count(np.zeros((4, 2, 2)), np.zeros((1, 2, 2))) == 3


def test_report_means_dic_and_abs_dic():
    m = SegmentationMetrics()
    gt = np.stack([box_mask(0, 3, 0, 3), box_mask(5, 9, 5, 9)])
    m.add(gt, np.array([0.9, 0.8]), np.array([0, 0]), gt, np.array([0, 0]))  # perfect
    m.add(gt[:1], np.array([0.9]), np.array([0]), gt, np.array([0, 0]))  # one missed
    m.add(
        np.concatenate([gt, gt[:1]]),
        np.array([0.9, 0.8, 0.1]),
        np.zeros(3, int),
        gt,
        np.zeros(2, int),
    )
    r = m.compute()
    assert r["num_images"] == 3
    assert math.isclose(r["dic"], (0 - 1 + 1) / 3)
    assert math.isclose(r["abs_dic"], 2 / 3)
    assert math.isclose(r["sbd"], (1.0 + 0.5 + 1.0) / 3)
    assert r["iou_by_step"]["1"] == 1.0


def test_mask_ap_perfect_and_wrong():
    gt = np.stack([box_mask(0, 4, 0, 4), box_mask(5, 10, 5, 10)])
    m = SegmentationMetrics()
    m.add(gt, np.array([0.9, 0.8]), np.array([0, 0]), gt, np.array([0, 0]))
    r = m.compute()
    assert math.isclose(r["ap50"], 1.0) and math.isclose(r["ap"], 1.0)
    # half-overlapping prediction: IoU = 8/16 -> counts at 0.5, not at 0.6+
    pred = np.stack([box_mask(0, 4, 0, 2), box_mask(5, 10, 5, 10)])
    pred[0] = box_mask(0, 4, 0, 2) | box_mask(0, 4, 0, 2)
    half = np.stack([box_mask(0, 4, 0, 4) & box_mask(0, 4, 0, 2)])  # 8 px inside a 16 px object
    m2 = SegmentationMetrics()
    m2.add(half, np.array([0.9]), np.array([0]), gt[:1], np.array([0]))
    r2 = m2.compute()
    assert math.isclose(r2["ap50"], 1.0) and r2["ap60"] == 0.0


def test_order_correlations():
    # masks found right to left, bottom to top, large to small: tau = +1 for all three
    masks = np.stack([box_mask(6, 10, 6, 10), box_mask(3, 6, 3, 6), box_mask(0, 2, 0, 2)])
    taus = order_correlations(masks)
    assert all(math.isclose(taus[k], 1.0) for k in ("r2l", "b2t", "l2s"))
    taus = order_correlations(masks[::-1])
    assert all(math.isclose(taus[k], -1.0) for k in ("r2l", "b2t", "l2s"))
    assert math.isnan(order_correlations(masks[:1])["r2l"])


def test_rle_round_trip():
    mask = box_mask(1, 7, 2, 5, shape=(9, 11))
    rle = encode_rle(mask)
    assert rle["size"] == [9, 11] and isinstance(rle["counts"], str)
    assert (decode_rle(rle) == mask).all()
