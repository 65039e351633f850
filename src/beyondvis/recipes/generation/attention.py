"""Multi-head attention on top of ``F.scaled_dot_product_attention`` with reusable keys/values.

``nn.MultiheadAttention`` recomputes the key/value projections on every call; generation needs
them split out: the self-attention keys/values of past words are appended to a cache, and the
cross-attention keys/values of the conditions are projected once per recipe. That is what makes
decoding cost grow linearly with length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Memory:
    """Projected keys/values of one attended sequence, with its key-padding mask.

    ``attn_mask`` is (B, 1, 1, S) bool (True = attend) or None. ``row_valid`` is (B, 1, 1) bool,
    False for rows whose keys are all padding (e.g. an empty ingredient set): those rows attend
    to everything (to avoid NaN from an all -inf softmax) and their output is zeroed instead.
    """

    k: Tensor  # (B, H, S, Dh)
    v: Tensor
    attn_mask: Tensor | None = None
    row_valid: Tensor | None = None

    @classmethod
    def build(cls, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Memory:
        if key_valid is None or bool(key_valid.all()):
            return cls(k, v)
        row_valid = key_valid.any(dim=1)[:, None, None]
        mask = (key_valid | ~row_valid[:, :, 0])[:, None, None, :]
        return cls(k, v, mask, row_valid)

    def repeat_interleave(self, n: int) -> Memory:
        """Copy each batch row ``n`` times (beam search)."""

        def rep(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.repeat_interleave(n, dim=0)

        return Memory(rep(self.k), rep(self.v), rep(self.attn_mask), rep(self.row_valid))


class KVCache:
    """Preallocated self-attention keys/values of the words decoded so far (one layer)."""

    def __init__(self, batch: int, heads: int, max_len: int, head_dim: int, like: Tensor) -> None:
        shape = (batch, heads, max_len, head_dim)
        self.k = like.new_zeros(shape)
        self.v = like.new_zeros(shape)
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:
            raise ValueError(f"KV cache full: {end} > {self.k.shape[2]} positions")
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search moves hypotheses between beams)."""
        self.k = self.k.index_select(0, index)
        self.v = self.v.index_select(0, index)

    def repeat_interleave(self, n: int) -> None:
        self.k = self.k.repeat_interleave(n, dim=0)
        self.v = self.v.repeat_interleave(n, dim=0)


class MultiHeadAttention(nn.Module):
    """Standard multi-head attention whose key/value projection can be done ahead of time."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S, D) -> keys, values of shape (B, H, S, Dh)."""
        return self._split(self.k_proj(x)), self._split(self.v_proj(x))

    def attend(
        self,
        query: Tensor,
        k: Tensor,
        v: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        row_valid: Tensor | None = None,
    ) -> Tensor:
        """(B, T, D) queries over precomputed keys/values -> (B, T, D)."""
        q = self._split(self.q_proj(query))
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )
        b, _, t, _ = out.shape
        out = self.out_proj(out.transpose(1, 2).reshape(b, t, -1))
        if row_valid is not None:
            out = out * row_valid.to(out.dtype)
        return out

    def attend_memory(self, query: Tensor, memory: Memory) -> Tensor:
        return self.attend(
            query, memory.k, memory.v, attn_mask=memory.attn_mask, row_valid=memory.row_valid
        )


def causal_mask(q_len: int, k_len: int, device: torch.device) -> Tensor:
    """Bool (q_len, k_len) mask for the last ``q_len`` of ``k_len`` positions (True = attend)."""
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
