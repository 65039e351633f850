"""Decoding rules: label scores (+ cardinality) -> a predicted set as a multi-hot (B, N) tensor."""

from __future__ import annotations

import torch


def threshold_decode(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Keep every label with probability >= threshold (``ff_bce``, ``ff_siou``); may be empty."""
    return (probs >= threshold).float()


def cumulative_decode(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Take labels in decreasing probability until their cumulative probability exceeds th.

    The rule of ``ff_td``: ``probs`` is a distribution over labels, so at least one label is
    always selected and the empty set can never be predicted.
    """
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the labels ranked above each one
    keep_sorted = (before <= threshold).float()  # keep while the mass so far has not passed th
    keep_sorted[:, 0] = 1.0
    out = torch.zeros_like(probs)
    return out.scatter(1, order, keep_sorted)


def topk_decode(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Keep the ``k[i]`` highest-scoring labels of sample i (cardinality models; k may be 0)."""
    k = k.clamp(0, scores.shape[-1]).long()
    ranks = scores.argsort(dim=-1, descending=True).argsort(dim=-1)
    return (ranks < k.unsqueeze(1)).float()


def repeat_mask(tokens: torch.Tensor, num_labels: int, vocab_size: int) -> torch.Tensor:
    """Additive mask (B, T, V): -inf for labels fed at or before each step (no repetition).

    ``tokens`` (B, T) are the decoder inputs (start token then previous labels); step t may
    not predict any label among tokens[:, :t+1]. Tokens >= num_labels (start, eos, padding)
    never mask anything, so eos always stays available.
    """
    batch, steps = tokens.shape
    is_label = (tokens >= 0) & (tokens < num_labels)
    onehot = torch.zeros(batch, steps, vocab_size, device=tokens.device)
    onehot.scatter_(
        2, tokens.clamp(0, vocab_size - 1).unsqueeze(-1), is_label.float().unsqueeze(-1)
    )
    seen = onehot.cumsum(1) > 0
    mask = torch.zeros(batch, steps, vocab_size, device=tokens.device)
    return mask.masked_fill(seen, float("-inf"))


def sequence_to_multihot(sequences: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(B, T) label ids with eos/padding >= num_labels (or < 0) -> multi-hot (B, N)."""
    out = torch.zeros(sequences.shape[0], num_labels + 1, device=sequences.device)
    ids = sequences.clone()
    ids[(ids < 0) | (ids >= num_labels)] = num_labels
    out.scatter_(1, ids, 1.0)
    return out[:, :num_labels]
