"""Losses of the joint embedding.

* :func:`cosine_pair_loss` — thesis eq. 7.9: ``1 - cos`` for positive pairs, ``max(0, cos - a)``
  for negative pairs (``a`` = margin, 0.1 in the thesis), averaged over the batch.
* :func:`semantic_loss` — semantic regularisation: one classifier shared by both modalities,
  cross-entropy of the image and of the recipe embedding against their category.
* :func:`bidirectional_triplet_loss` / :func:`contrastive_loss` — the modern alternatives:
  in-batch negatives, both retrieval directions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def cosine_pair_loss(
    a: torch.Tensor, b: torch.Tensor, target: torch.Tensor, margin: float = 0.1
) -> torch.Tensor:
    """Eq. 7.9; ``target`` is +1 (positive pair) or -1 (negative pair) per row."""
    return F.cosine_embedding_loss(a, b, target.to(a.dtype), margin=margin)


def semantic_loss(
    classifier: nn.Module,
    image_emb: torch.Tensor,
    recipe_emb: torch.Tensor,
    image_class: torch.Tensor,
    recipe_class: torch.Tensor,
) -> torch.Tensor:
    """``CE(W_c phi_v, c_v) + CE(W_c phi_r, c_r)`` with the same ``W_c`` for both."""
    return F.cross_entropy(classifier(image_emb), image_class) + F.cross_entropy(
        classifier(recipe_emb), recipe_class
    )


def _cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def bidirectional_triplet_loss(
    image_emb: torch.Tensor, recipe_emb: torch.Tensor, margin: float = 0.3, hardest: bool = True
) -> torch.Tensor:
    """Triplet loss with in-batch negatives, image->recipe and recipe->image.

    Row ``i`` of both inputs is a matching pair. ``hardest`` uses the hardest negative per query
    (VSE++); otherwise all violating negatives are averaged.
    """
    sim = _cosine_matrix(image_emb, recipe_emb)
    pos = sim.diag()
    eye = torch.eye(len(sim), dtype=torch.bool, device=sim.device)
    cost_recipe = (margin + sim - pos[:, None]).clamp(min=0).masked_fill(eye, 0)  # image queries
    cost_image = (margin + sim - pos[None, :]).clamp(min=0).masked_fill(eye, 0)  # recipe queries
    if hardest:
        return cost_recipe.max(dim=1).values.mean() + cost_image.max(dim=0).values.mean()
    n = max(len(sim) - 1, 1)
    return cost_recipe.sum(dim=1).mean() / n + cost_image.sum(dim=0).mean() / n


def contrastive_loss(
    image_emb: torch.Tensor, recipe_emb: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """Symmetric InfoNCE over the batch (CLIP-style), averaged over both directions."""
    logits = _cosine_matrix(image_emb, recipe_emb) / temperature
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
