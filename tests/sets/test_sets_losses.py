"""Each loss of the study against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from beyondvis.sets import losses


def test_bce_matches_hand_value_and_smoothing():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    # -log(sigmoid(0)) = log 2 ; -log(1 - sigmoid(2)) = log(1 + e^2)
    expected = (math.log(2) + math.log(1 + math.e**2)) / 2
    assert losses.bce_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    # smoothing 0.2: targets become 0.9 / 0.1
    p = torch.sigmoid(torch.tensor(2.0)).item()
    smoothed = (math.log(2) - (0.1 * math.log(p) + 0.9 * math.log(1 - p))) / 2
    assert losses.bce_loss(logits, targets, 0.2).item() == pytest.approx(smoothed, rel=1e-6)
    with pytest.raises(ValueError):
        losses.smooth_targets(targets, 1.0)


def test_soft_iou_hand_value_and_empty_set():
    logits = torch.tensor([[0.0, 0.0, 100.0]])  # probs 0.5, 0.5, 1
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    inter = 0.5 + 1.0
    union = (0.5 + 1 - 0.5) + 0.5 + (1 + 1 - 1)
    assert losses.soft_iou_loss(logits, targets).item() == pytest.approx(1 - inter / union, 1e-5)
    # Empty target: loss ~ 1 unless every probability is ~0.
    empty = torch.zeros(1, 3)
    assert losses.soft_iou_loss(logits, empty).item() == pytest.approx(1.0, abs=1e-6)
    assert losses.soft_iou_loss(torch.full((1, 3), -50.0), empty).item() < 1e-3


def test_target_distribution_loss():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    log_p = torch.log_softmax(logits, -1)[0]
    expected = -(0.5 * log_p[0] + 0.5 * log_p[2]).item()
    assert losses.target_distribution_loss(logits, targets).item() == pytest.approx(expected)
    # The empty set falls back to the uniform distribution (finite, never NaN).
    uniform = losses.target_distribution(torch.zeros(1, 4))
    assert torch.allclose(uniform, torch.full((1, 4), 0.25))


def test_cardinality_and_dirichlet_categorical():
    card_logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [0.25, 0.75]
    assert losses.cardinality_loss(card_logits, torch.tensor([1])).item() == pytest.approx(
        -math.log(0.75)
    )
    alphas = torch.tensor([[1.0, 3.0, 0.0]])
    prior = torch.tensor([2.0, 2.0, 4.0])  # posterior predictive (alpha+c)/(sum) = [3, 5, 4]/12
    probs = losses.dirichlet_categorical_probs(alphas, prior)
    assert torch.allclose(probs, torch.tensor([[3 / 12, 5 / 12, 4 / 12]]))
    nll = losses.dirichlet_categorical_loss(alphas, prior, torch.tensor([1]))
    assert nll.item() == pytest.approx(-math.log(5 / 12), rel=1e-6)


def test_sequence_ce_ignores_padding():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]]))
    tokens = torch.tensor([[0, 2, -100]])
    expected = -(math.log(0.5) + math.log(0.8)) / 2
    assert losses.sequence_ce_loss(logits, tokens, -100).item() == pytest.approx(expected, 1e-6)


def test_eos_loss_is_balanced_unit_step():
    eos = torch.tensor([[0.2, 0.4, 0.9, 0.5]])
    card = torch.tensor([2])  # steps 0,1 -> 0 ; step 2 -> 1 ; step 3 not scored
    before = -(math.log(0.8) + math.log(0.6)) / 2
    at = -math.log(0.9)
    assert losses.eos_loss(eos, card).item() == pytest.approx(0.5 * before + 0.5 * at, 1e-5)
    # Empty set: only the eos at step 0 counts.
    assert losses.eos_loss(eos, torch.tensor([0])).item() == pytest.approx(
        0.5 * -math.log(0.2), 1e-5
    )


def test_cardinality_l1_penalty():
    probs = torch.tensor([[0.9, 0.5, 0.2]])
    targets = torch.tensor([[1.0, 1.0, 0.0]])
    # |0.9 + 0.5 - 2| + 0.2
    assert losses.cardinality_l1_penalty(probs, targets).item() == pytest.approx(0.8)
