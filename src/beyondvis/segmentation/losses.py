"""RSIS training objective (thesis ch. 6, "Training"): Hungarian matching and four losses.

Predictions are a sequence, ground truth a set: for each image the first ``min(T, n)`` predicted
masks are assigned to ground-truth masks by the Hungarian algorithm (SciPy) on the soft-IoU
cost, and the mask (soft IoU), box (MSE) and class (cross-entropy) losses are taken on the
matched pairs. Predictions after the n-th get no mask/box/class gradient (as in the thesis).
The stop loss is a BCE between the objectness of step ``t`` (0-based) and ``1[t < n]``.

Total: ``L_m + alpha L_b + lambda L_c + gamma L_s``; the experiment switches terms on in stages.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

EPS = 1e-6


def soft_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - <p, y> / (|p|_1 + |y|_1 - <p, y>)`` over the last two dims (thesis' sIoU loss)."""
    inter = (pred * target).flatten(-2).sum(-1)
    union = pred.flatten(-2).sum(-1) + target.flatten(-2).sum(-1) - inter
    return 1.0 - inter / (union + EPS)


def soft_iou_matrix(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pairwise sIoU cost: ``pred`` (T, H, W), ``target`` (N, H, W) -> (T, N)."""
    p = pred.flatten(1)
    y = target.flatten(1).to(p.dtype)
    inter = p @ y.T
    union = p.sum(1)[:, None] + y.sum(1)[None, :] - inter
    return 1.0 - inter / (union + EPS)


def hungarian_match(cost: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min-cost assignment of rows (predictions) to columns (ground truth); SciPy's solver."""
    matrix = cost.detach().cpu().numpy() if isinstance(cost, torch.Tensor) else np.asarray(cost)
    if matrix.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows, cols = linear_sum_assignment(matrix)
    return rows.astype(np.int64), cols.astype(np.int64)


@dataclasses.dataclass
class LossWeights:
    """Weights of the four terms; 0 switches a term off (thesis: alpha 10, lambda 0.1, gamma 0.1/0.5)."""

    mask: float = 1.0
    box: float = 10.0
    cls: float = 0.1
    stop: float = 0.1


def rsis_loss(
    outputs: dict[str, torch.Tensor],
    masks: torch.Tensor,
    counts: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    weights: LossWeights,
    steps: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Matched losses for a batch.

    ``outputs`` from :class:`~beyondvis.segmentation.model.RSIS` (``mask_logits`` (B, T, H, W),
    ``boxes`` (B, T, 4), ``class_logits`` (B, T, C), ``stop_logits`` (B, T)); ground truth padded
    to ``N`` objects: ``masks`` (B, N, H, W) in {0, 1}, ``counts`` (B,) objects per image,
    ``boxes`` (B, N, 4) normalised, ``labels`` (B, N). ``steps`` (B,) is how many of the T steps
    count for each image (default all). Returns ``loss`` and each term (``mask``, ``box``,
    ``cls``, ``stop``) as tensors, plus ``matched`` (number of matched pairs).
    """
    probs = torch.sigmoid(outputs["mask_logits"])
    batch, t_max = probs.shape[:2]
    device = probs.device
    if steps is None:
        steps = torch.full((batch,), t_max, dtype=torch.long)
    steps = steps.detach().cpu()
    counts_cpu = counts.detach().cpu()
    b_idx, t_idx, g_idx = [], [], []
    for b in range(batch):
        n = int(counts_cpu[b])
        usable = min(int(steps[b]), n)  # only the first n predictions take part in matching
        if usable == 0:
            continue
        cost = soft_iou_matrix(probs[b, :usable].detach(), masks[b, :n])
        rows, cols = hungarian_match(cost)
        b_idx += [b] * len(rows)
        t_idx += rows.tolist()
        g_idx += cols.tolist()
    zero = probs.sum() * 0.0
    if b_idx:
        bi = torch.tensor(b_idx, device=device)
        ti = torch.tensor(t_idx, device=device)
        gi = torch.tensor(g_idx, device=device)
        l_mask = soft_iou(probs[bi, ti], masks[bi, gi].to(probs.dtype)).mean()
        l_box = F.mse_loss(outputs["boxes"][bi, ti], boxes[bi, gi].to(probs.dtype))
        l_cls = F.cross_entropy(outputs["class_logits"][bi, ti], labels[bi, gi].long())
    else:
        l_mask = l_box = l_cls = zero
    step_ids = torch.arange(t_max, device=device)[None, :]
    stop_target = (step_ids < counts.to(device)[:, None]).to(probs.dtype)
    valid = (step_ids < steps.to(device)[:, None]).to(probs.dtype)
    l_stop = F.binary_cross_entropy_with_logits(
        outputs["stop_logits"], stop_target, weight=valid, reduction="sum"
    ) / valid.sum().clamp(min=1.0)
    total = (
        weights.mask * l_mask + weights.box * l_box + weights.cls * l_cls + weights.stop * l_stop
    )
    return {
        "loss": total,
        "mask": l_mask.detach(),
        "box": l_box.detach(),
        "cls": l_cls.detach(),
        "stop": l_stop.detach(),
        "matched": torch.tensor(float(len(b_idx))),
    }


def training_steps(counts: torch.Tensor, max_objects: int | None) -> torch.Tensor:
    """Decoding steps per image for training: ``n + 1`` (the extra one learns to stop).

    With curriculum ``max_objects = k`` an image with more than ``k`` objects is decoded for
    ``k`` steps only (all "keep going"), so the model first learns to find ``k`` objects of its
    choice before it has to find them all.
    """
    counts = counts.detach().cpu().long()
    steps = counts + 1
    if max_objects is not None:
        steps = torch.where(counts > max_objects, torch.full_like(counts, max_objects), steps)
    return steps
