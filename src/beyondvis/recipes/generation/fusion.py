"""The four ways an instruction-decoder block attends to the image and the ingredients.

Thesis Figure 9.2: ``concat`` attends once over the image and ingredient tokens stacked;
``independent`` attends to each separately and sums the two outputs; ``seq_img_first`` and
``seq_ingr_first`` attend to one, then (on the refined words) to the other. Each fusion owns its
residual connections and pre-norms. With a single condition (I2R / L2R baselines) all four
reduce to one cross-attention.

A fusion splits into ``precompute`` (project the conditions to keys/values, once per recipe) and
``forward`` (attend with the current words), so decoding never re-projects the conditions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from beyondvis.recipes.generation.attention import Memory, MultiHeadAttention
from beyondvis.recipes.generation.config import IMAGE, INGREDIENTS
from beyondvis.registry import Registry


@dataclass
class Condition:
    """Embedded condition tokens (B, S, D) and which of them are real (B, S) bool, or None."""

    tokens: Tensor
    valid: Tensor | None = None


class Fusion(nn.Module):
    """Base class: cross-attention over a fixed, ordered set of named conditions."""

    def __init__(self, condition_names: Sequence[str]) -> None:
        super().__init__()
        self.condition_names = tuple(condition_names)

    def _check(self, conditions: Mapping[str, Condition]) -> None:
        missing = [n for n in self.condition_names if n not in conditions]
        if missing:
            raise KeyError(f"{type(self).__name__} needs condition(s) {missing}")

    def precompute(self, conditions: Mapping[str, Condition]) -> list[Memory]:
        raise NotImplementedError

    def forward(self, x: Tensor, memories: Sequence[Memory]) -> Tensor:
        raise NotImplementedError


class ConcatFusion(Fusion):
    """One attention over all condition tokens stacked along the sequence axis."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, names: Sequence[str]):
        super().__init__(names)
        self.norm = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.drop = nn.Dropout(dropout)

    def precompute(self, conditions: Mapping[str, Condition]) -> list[Memory]:
        self._check(conditions)
        conds = [conditions[n] for n in self.condition_names]
        tokens = torch.cat([c.tokens for c in conds], dim=1)
        if all(c.valid is None for c in conds):
            valid = None
        else:
            valid = torch.cat(
                [
                    c.valid
                    if c.valid is not None
                    else c.tokens.new_ones(c.tokens.shape[:2], dtype=torch.bool)
                    for c in conds
                ],
                dim=1,
            )
        k, v = self.attn.project_kv(tokens)
        return [Memory.build(k, v, valid)]

    def forward(self, x: Tensor, memories: Sequence[Memory]) -> Tensor:
        return x + self.drop(self.attn.attend_memory(self.norm(x), memories[0]))


class _PerConditionFusion(Fusion):
    """One attention per condition, in ``condition_names`` order; ``num_norms`` query pre-norms."""

    num_norms: int | None = None  # None: one per condition

    def __init__(self, d_model: int, num_heads: int, dropout: float, names: Sequence[str]):
        super().__init__(names)
        n = self.num_norms or len(self.condition_names)
        # No unused parameters: DDP would otherwise need find_unused_parameters=True.
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n))
        self.attns = nn.ModuleList(
            MultiHeadAttention(d_model, num_heads, dropout) for _ in self.condition_names
        )
        self.drop = nn.Dropout(dropout)

    def precompute(self, conditions: Mapping[str, Condition]) -> list[Memory]:
        self._check(conditions)
        out = []
        for name, attn in zip(self.condition_names, self.attns):
            cond = conditions[name]
            k, v = attn.project_kv(cond.tokens)
            out.append(Memory.build(k, v, cond.valid))
        return out


class IndependentFusion(_PerConditionFusion):
    """Attend to each condition from the same query; sum the outputs (Figure 9.2c)."""

    num_norms = 1  # both branches read the same normalised query

    def forward(self, x: Tensor, memories: Sequence[Memory]) -> Tensor:
        h = self.norms[0](x)
        total = sum(attn.attend_memory(h, mem) for attn, mem in zip(self.attns, memories))
        return x + self.drop(total)


class SequentialFusion(_PerConditionFusion):
    """Attend to the conditions one after another, each refining the words (Figure 9.2d)."""

    def forward(self, x: Tensor, memories: Sequence[Memory]) -> Tensor:
        for norm, attn, mem in zip(self.norms, self.attns, memories):
            x = x + self.drop(attn.attend_memory(norm(x), mem))
        return x


FUSIONS: Registry[Fusion] = Registry("fusion strategy")


def _ordered(names: Sequence[str], first: str) -> list[str]:
    return sorted(names, key=lambda n: n != first)


@FUSIONS.register("concat")
def concat(d_model: int, num_heads: int, dropout: float, names: Sequence[str]) -> Fusion:
    return ConcatFusion(d_model, num_heads, dropout, names)


@FUSIONS.register("independent")
def independent(d_model: int, num_heads: int, dropout: float, names: Sequence[str]) -> Fusion:
    return IndependentFusion(d_model, num_heads, dropout, names)


@FUSIONS.register("seq_img_first")
def seq_img_first(d_model: int, num_heads: int, dropout: float, names: Sequence[str]) -> Fusion:
    return SequentialFusion(d_model, num_heads, dropout, _ordered(names, IMAGE))


@FUSIONS.register("seq_ingr_first")
def seq_ingr_first(d_model: int, num_heads: int, dropout: float, names: Sequence[str]) -> Fusion:
    return SequentialFusion(d_model, num_heads, dropout, _ordered(names, INGREDIENTS))
