"""Hungarian matching on crafted masks and each RSIS loss term against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import torch

from beyondvis.segmentation.losses import (
    LossWeights,
    hungarian_match,
    rsis_loss,
    soft_iou,
    soft_iou_matrix,
    training_steps,
)


def squares() -> torch.Tensor:
    m = torch.zeros(3, 8, 8)
    m[0, :4, :4] = 1
    m[1, 4:, 4:] = 1
    m[2, :4, 4:] = 1
    return m


def test_soft_iou_hand_values():
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    p = torch.tensor([[0.5, 1.0], [0.5, 0.0]])
    # <p,y> = 1.5, |p| = 2, |y| = 2 -> 1 - 1.5 / 2.5 = 0.4
    assert math.isclose(float(soft_iou(p, y)), 0.4, rel_tol=1e-5)
    assert float(soft_iou(y, y)) < 1e-5
    assert math.isclose(float(soft_iou(1 - y, y)), 1.0, rel_tol=1e-5)


def test_matching_recovers_a_permutation():
    gt = squares()
    perm = [2, 0, 1]
    pred = gt[perm] * 0.9 + 0.05
    rows, cols = hungarian_match(soft_iou_matrix(pred, gt))
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == perm


def test_matching_more_predictions_than_objects():
    gt = squares()[:2]
    pred = torch.stack([torch.zeros(8, 8), gt[1], gt[0]])
    rows, cols = hungarian_match(soft_iou_matrix(pred, gt))
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {1: 1, 2: 0}
    assert hungarian_match(np.zeros((0, 2)))[0].size == 0


def _outputs(mask_probs, boxes, class_logits, stop_probs):
    return {
        "mask_logits": torch.logit(torch.as_tensor(mask_probs).clamp(1e-6, 1 - 1e-6)),
        "boxes": torch.as_tensor(boxes),
        "class_logits": torch.as_tensor(class_logits),
        "stop_logits": torch.logit(torch.as_tensor(stop_probs)),
    }


def test_each_loss_term_against_hand_values():
    gt = squares()[:2][None]  # (1, 2, 8, 8): objects A (top-left), B (bottom-right)
    # step 0 predicts B exactly, step 1 predicts half of A (0.5 everywhere on A), step 2 extra
    half_a = gt[0, 0] * 0.5
    probs = torch.stack([gt[0, 1], half_a, torch.zeros(8, 8)])[None]
    boxes_gt = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]])
    pred_boxes = torch.tensor([[[0.5, 0.5, 1.0, 1.0], [0.1, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]])
    class_logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[0, 1]])  # A is class 0, B class 1
    stop = torch.tensor([[0.8, 0.5, 0.25]])
    out = _outputs(probs, pred_boxes, class_logits, stop)
    w = LossWeights(mask=1.0, box=10.0, cls=0.1, stop=0.5)
    res = rsis_loss(out, gt, torch.tensor([2]), boxes_gt, labels, w)
    # masks: B exact -> 0; half of A: <p,y> = 8, |p| = 8, |y| = 16 -> 1 - 8/16 = 0.5; mean 0.25
    assert math.isclose(float(res["mask"]), 0.25, abs_tol=1e-4)
    # boxes: only step 1 differs, by 0.1 in one of 8 coordinates -> 0.01 / 8
    assert math.isclose(float(res["box"]), 0.01 / 8, rel_tol=1e-4)
    # classes: step 0 (uniform, target 1) -> ln 2; step 1 target 0, p = 3/4 -> -ln 0.75
    assert math.isclose(float(res["cls"]), (math.log(2) - math.log(0.75)) / 2, rel_tol=1e-4)
    # stop: targets 1, 1, 0 -> (-ln .8 - ln .5 - ln .75) / 3
    expected_stop = (-math.log(0.8) - math.log(0.5) - math.log(0.75)) / 3
    assert math.isclose(float(res["stop"]), expected_stop, rel_tol=1e-4)
    total = 0.25 + 10 * 0.01 / 8 + 0.1 * float(res["cls"]) + 0.5 * expected_stop
    assert math.isclose(float(res["loss"]), total, rel_tol=1e-4)
    assert float(res["matched"]) == 2


def test_predictions_after_n_get_no_mask_gradient():
    gt = squares()[:1][None]
    logits = torch.zeros(1, 3, 8, 8, requires_grad=True)
    out = {
        "mask_logits": logits,
        "boxes": torch.zeros(1, 3, 4),
        "class_logits": torch.zeros(1, 3, 1),
        "stop_logits": torch.zeros(1, 3),
    }
    res = rsis_loss(out, gt, torch.tensor([1]), torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.long),
                    LossWeights())  # fmt: skip
    res["loss"].backward()
    assert logits.grad[0, 0].abs().sum() > 0
    assert logits.grad[0, 1:].abs().sum() == 0


def test_image_without_objects_only_learns_to_stop():
    out = _outputs(
        torch.full((1, 1, 4, 4), 0.5),
        torch.zeros(1, 1, 4),
        torch.zeros(1, 1, 1),
        torch.tensor([[0.5]]),
    )
    res = rsis_loss(out, torch.zeros(1, 1, 4, 4), torch.tensor([0]), torch.zeros(1, 1, 4),
                    torch.zeros(1, 1, dtype=torch.long), LossWeights())  # fmt: skip
    assert float(res["mask"]) == 0 and math.isclose(float(res["stop"]), math.log(2), rel_tol=1e-5)


def test_training_steps_and_curriculum():
    counts = torch.tensor([0, 2, 5])
    assert training_steps(counts, None).tolist() == [1, 3, 6]
    assert training_steps(counts, 2).tolist() == [1, 3, 2]  # 5 objects: only 2 steps, no stop
