"""Losses of the image-to-set study (thesis chapter 5, Table 5.1).

Every function returns one value per sample (shape ``(B,)``) so callers can weight or mask
samples; models average them. ``targets`` are multi-hot float tensors ``(B, N)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8


def smooth_targets(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Binary label smoothing: 1 -> 1 - s/2, 0 -> s/2 (s = 0 leaves targets unchanged)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    return targets * (1.0 - smoothing) + 0.5 * smoothing


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy averaged over the N labels (labels treated as independent)."""
    soft = smooth_targets(targets, smoothing)
    return F.binary_cross_entropy_with_logits(logits, soft, reduction="none").mean(-1)


def bce_prob_loss(
    probs: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """BCE on probabilities (the pooled softmax outputs of ``*_set`` models have no logits)."""
    soft = smooth_targets(targets, smoothing)
    probs = probs.clamp(EPS, 1.0 - EPS)
    return F.binary_cross_entropy(probs, soft, reduction="none").mean(-1)


def soft_iou_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """1 - soft IoU between sigmoid probabilities and the target set (a structured loss).

    soft IoU = sum(p*y) / sum(p + y - p*y); the eps keeps the empty set defined (its loss then
    pushes every probability towards 0).
    """
    probs = torch.sigmoid(logits)
    inter = (probs * targets).sum(-1)
    union = (probs + targets - probs * targets).sum(-1)
    return 1.0 - (inter + eps) / (union + eps)


def target_distribution(targets: torch.Tensor) -> torch.Tensor:
    """p = s / sum(s); an empty set has no valid distribution and gets the uniform one.

    The uniform fallback (as in the study's code) only keeps the loss finite: a softmax output
    cannot express "no label", which is why ``ff_td`` cannot predict the empty set.
    """
    card = targets.sum(-1, keepdim=True)
    uniform = torch.full_like(targets, 1.0 / targets.shape[-1])
    return torch.where(card > 0, targets / card.clamp(min=1.0), uniform)


def target_distribution_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the target distribution s/sum(s) and softmax(logits)."""
    return -(target_distribution(targets) * F.log_softmax(logits, dim=-1)).sum(-1)


def cardinality_loss(card_logits: torch.Tensor, cardinality: torch.Tensor) -> torch.Tensor:
    """Categorical cross-entropy over set sizes 0..K_max (the ``_c`` models)."""
    return F.cross_entropy(card_logits, cardinality, reduction="none")


def dirichlet_categorical_probs(alphas: torch.Tensor, prior_counts: torch.Tensor) -> torch.Tensor:
    """Posterior predictive of a Dirichlet-categorical: (alpha_k + c_k) / (sum alpha + sum c).

    ``alphas`` (B, K+1) are the network's positive concentration outputs and ``prior_counts``
    (K+1,) the training-set histogram of set sizes (Rezatofighi et al.; Pineda et al. 2019).
    """
    num = alphas + prior_counts.unsqueeze(0)
    return num / num.sum(-1, keepdim=True)


def dirichlet_categorical_loss(
    alphas: torch.Tensor, prior_counts: torch.Tensor, cardinality: torch.Tensor
) -> torch.Tensor:
    """Negative log-likelihood of the true set size under the Dirichlet-categorical."""
    probs = dirichlet_categorical_probs(alphas, prior_counts)
    return -torch.log(probs.gather(1, cardinality.unsqueeze(1)).squeeze(1) + EPS)


def sequence_ce_loss(logits: torch.Tensor, tokens: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Per-step cross-entropy (teacher forcing), summed over the valid steps of each sample.

    ``logits`` (B, T, V) must already carry the -inf mask of repeated labels; ``tokens``
    (B, T) hold the label sequence followed by eos, then ``ignore_index`` padding.
    """
    steps = F.cross_entropy(
        logits.transpose(1, 2), tokens, ignore_index=ignore_index, reduction="none"
    )
    valid = (tokens != ignore_index).float()
    return (steps * valid).sum(-1) / valid.sum(-1).clamp(min=1.0)


def eos_loss(eos_probs: torch.Tensor, cardinality: torch.Tensor) -> torch.Tensor:
    """BCE between per-step eos probabilities and a unit step at step K (the set size).

    Steps 0..K-1 should say "not yet" (0) and step K "stop" (1); later steps are not scored.
    The two parts are averaged separately and weighted equally, as in the study's code, so a
    long set does not drown the single eos step.
    """
    steps = torch.arange(eos_probs.shape[1], device=eos_probs.device).unsqueeze(0)
    card = cardinality.unsqueeze(1)
    target = (steps >= card).float()
    bce = F.binary_cross_entropy(eos_probs.clamp(EPS, 1 - EPS), target, reduction="none")
    at_eos = (steps == card).float()
    before = (steps < card).float()
    return 0.5 * (bce * at_eos).sum(-1) / (at_eos.sum(-1) + EPS) + 0.5 * (bce * before).sum(-1) / (
        before.sum(-1) + EPS
    )


def cardinality_l1_penalty(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L1 cardinality penalty on pooled probabilities: |sum p*y - |S|| + sum p*(1-y)."""
    return (probs * targets).sum(-1).sub(targets.sum(-1)).abs() + (probs * (1 - targets)).sum(-1)
