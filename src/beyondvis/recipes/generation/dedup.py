"""De-duplication of predicted ingredient lists.

Auto-regressive ingredient decoders (and top-k readouts) can name the same ingredient twice, or
two labels that the vocabulary merges into one cluster (thesis 9.2.1: "olive oil", "virgin olive
oil" -> "olive_oil"). The instruction decoder should see each ingredient once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import torch
from torch import Tensor

ClusterMap = Mapping[int, int] | Sequence[int] | Tensor


def _cluster(label: int, cluster_of: ClusterMap | None) -> int:
    if cluster_of is None:
        return label
    if isinstance(cluster_of, Mapping):
        return int(cluster_of.get(label, label))
    if not 0 <= label < len(cluster_of):
        raise ValueError(f"ingredient id {label} outside the cluster map of {len(cluster_of)}")
    return int(cluster_of[label])


def dedup_ingredients(
    labels: Sequence[int] | Tensor,
    probs: Sequence[float] | Tensor | None = None,
    *,
    cluster_of: ClusterMap | None = None,
    ignore_ids: Collection[int] = (),
    eos_id: int | None = None,
) -> tuple[list[int], list[float] | None]:
    """One entry per ingredient (cluster), in the order the clusters first appear.

    Without ``probs`` the first occurrence is kept; with ``probs`` the most probable occurrence
    of each cluster is kept (its label and probability). Reading stops at ``eos_id``;
    ``ignore_ids`` (e.g. padding) are skipped.
    """
    labels = labels.tolist() if isinstance(labels, Tensor) else list(labels)
    if probs is not None:
        probs = probs.tolist() if isinstance(probs, Tensor) else list(probs)
        if len(probs) != len(labels):
            raise ValueError(f"{len(labels)} labels but {len(probs)} probabilities")
    kept: dict[int, int] = {}  # cluster -> position of the kept occurrence (insertion = order)
    for pos, label in enumerate(labels):
        if eos_id is not None and label == eos_id:
            break
        if label in ignore_ids:
            continue
        key = _cluster(label, cluster_of)
        if key not in kept:
            kept[key] = pos
        elif probs is not None and probs[pos] > probs[kept[key]]:
            kept[key] = pos
    positions = list(kept.values())
    out_labels = [labels[p] for p in positions]
    out_probs = None if probs is None else [float(probs[p]) for p in positions]
    return out_labels, out_probs


def dedup_ingredient_batch(
    ids: Tensor,
    probs: Tensor | None = None,
    *,
    pad_id: int,
    eos_id: int | None = None,
    cluster_of: ClusterMap | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Row-wise :func:`dedup_ingredients` on (B, K) ids; rows re-padded with ``pad_id``.

    Returns ids (B, K) and, if given, probabilities (B, K) with 0 at padded slots. The end token
    is dropped: the instruction decoder masks padding, so it needs no terminator.
    """
    if ids.dim() != 2:
        raise ValueError(f"expected (B, K) ingredient ids, got {tuple(ids.shape)}")
    if probs is not None and probs.shape != ids.shape:
        raise ValueError(f"probs shape {tuple(probs.shape)} != ids shape {tuple(ids.shape)}")
    out = torch.full_like(ids, pad_id)
    out_probs = None if probs is None else torch.zeros_like(probs)
    for row in range(ids.shape[0]):
        labels, row_probs = dedup_ingredients(
            ids[row],
            None if probs is None else probs[row],
            cluster_of=cluster_of,
            ignore_ids={pad_id},
            eos_id=eos_id,
        )
        out[row, : len(labels)] = torch.tensor(labels, dtype=ids.dtype)
        if out_probs is not None and row_probs:
            out_probs[row, : len(row_probs)] = torch.tensor(row_probs, dtype=probs.dtype)
    return out, out_probs
