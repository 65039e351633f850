"""Transformer instruction decoder conditioned on image and ingredient embeddings (thesis 9.1.1).

Each block: masked self-attention over the previous words, then attention over the conditions
(one of the fusions in :mod:`.fusion`), then a feed-forward layer; pre-norm residuals throughout
(more stable to train than post-norm at 8 blocks, and a final LayerNorm before the word logits).

Two ways to run it, giving the same numbers:

* ``forward(tokens, ...)`` — teacher forcing over whole sequences (training, perplexity);
* ``start(...)`` then ``step(state, new_tokens)`` — incremental decoding with a self-attention
  KV cache and the condition keys/values projected once, so each new word costs O(length).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from beyondvis.recipes.generation.attention import KVCache, Memory, MultiHeadAttention, causal_mask
from beyondvis.recipes.generation.config import IMAGE, INGREDIENTS, DecoderConfig, SpecialTokens
from beyondvis.recipes.generation.fusion import FUSIONS, Condition


class ImageEmbedding(nn.Module):
    """Backbone's last feature map (B, C, h, w) -> h*w image tokens (B, h*w, D)."""

    def __init__(self, in_channels: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, feature_map: Tensor) -> Condition:
        if feature_map.dim() == 2:  # a pooled vector is a 1x1 map
            feature_map = feature_map[:, :, None, None]
        if feature_map.dim() != 4:
            raise ValueError(f"expected a (B, C, h, w) feature map, got {tuple(feature_map.shape)}")
        tokens = feature_map.flatten(2).transpose(1, 2)
        return Condition(self.drop(self.norm(self.proj(tokens))))


class IngredientEmbedding(nn.Module):
    """Ingredient ids (B, K) -> embeddings (B, K, D) and a mask of the real ingredients.

    Padding, the end-of-set token and anything after it are masked out. No positions are added:
    the ingredients are a set, so the decoder must not depend on their order.
    """

    def __init__(
        self, num_ingredients: int, d_model: int, pad_id: int, eos_id: int | None, dropout: float
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_ingredients, d_model, padding_idx=pad_id)
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.drop = nn.Dropout(dropout)

    def forward(self, ids: Tensor) -> Condition:
        if ids.dim() != 2:
            raise ValueError(f"expected (B, K) ingredient ids, got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.embed.num_embeddings):
            raise ValueError(f"ingredient ids must lie in [0, {self.embed.num_embeddings})")
        valid = ids != self.pad_id
        if self.eos_id is not None:
            after_eos = (ids == self.eos_id).long().cumsum(dim=1) > 0
            valid &= ~after_eos
        return Condition(self.drop(self.embed(ids)), valid)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(cfg.d_model)
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.dropout)
        self.fusion = FUSIONS.create(
            cfg.fusion, cfg.d_model, cfg.num_heads, cfg.dropout, cfg.conditions
        )
        self.ffn_norm = nn.LayerNorm(cfg.d_model)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.ffn_dim),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.ffn_dim, cfg.d_model),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, memories: list[Memory], cache: KVCache | None = None) -> Tensor:
        h = self.self_norm(x)
        k, v = self.self_attn.project_kv(h)
        if cache is None:
            attn = self.self_attn.attend(h, k, v, is_causal=True)
        else:
            k, v = cache.append(k, v)
            t = h.shape[1]
            # A single new word may see every cached one; only a multi-word step needs a mask.
            mask = None if t == 1 else causal_mask(t, k.shape[2], h.device)
            attn = self.self_attn.attend(h, k, v, attn_mask=mask)
        x = x + self.drop(attn)
        x = self.fusion(x, memories)
        return x + self.drop(self.ffn(self.ffn_norm(x)))


@dataclass
class DecoderState:
    """Everything incremental decoding carries between steps."""

    memories: list[list[Memory]]  # per layer, the fusion's precomputed condition keys/values
    caches: list[KVCache]  # per layer, self-attention keys/values of past words
    length: int = 0  # words consumed so far (= next position)

    @property
    def batch_size(self) -> int:
        return self.caches[0].k.shape[0]

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` of the word caches. Conditions are left alone: beam search only
        reorders hypotheses of the same recipe, whose condition keys/values are identical."""
        for cache in self.caches:
            cache.reorder(index)

    def repeat_interleave(self, n: int) -> None:
        """Give every row ``n`` copies (one per beam)."""
        self.memories = [[m.repeat_interleave(n) for m in layer] for layer in self.memories]
        for cache in self.caches:
            cache.repeat_interleave(n)


class InstructionDecoder(nn.Module):
    """Generates the title and instructions word by word from image and/or ingredients."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.word_embed = nn.Embedding(config.vocab_size, d, padding_idx=config.special.pad)
        # std d^-0.5 (as fairseq's transformer): the sqrt(d) input scale makes the inputs unit
        # sized, and the tied output projection starts with unit-sized logits instead of
        # sqrt(d)-sized ones (an initial loss of ~200 nats and a perplexity of 1e100).
        nn.init.normal_(self.word_embed.weight, std=d**-0.5)
        with torch.no_grad():
            self.word_embed.weight[config.special.pad].zero_()
        self.pos_embed = nn.Embedding(config.max_len, d)
        self.embed_scale = math.sqrt(d)
        self.embed_drop = nn.Dropout(config.dropout)
        self.image_embed = (
            ImageEmbedding(config.image_channels, d, config.dropout)
            if IMAGE in config.conditions
            else None
        )
        self.ingredient_embed = (
            IngredientEmbedding(
                config.num_ingredients,
                d,
                config.ingredient_pad_id,
                config.ingredient_eos_id,
                config.dropout,
            )
            if INGREDIENTS in config.conditions
            else None
        )
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, config.vocab_size)
        if config.tie_embeddings:
            self.out_proj.weight = self.word_embed.weight
        self.memory: nn.Module | None = None
        if config.memory:
            from beyondvis.recipes.generation.memory import KnnMemory, MemorySettings

            try:
                settings = MemorySettings(**config.memory)
            except TypeError as exc:
                raise ValueError(f"decoder memory settings {config.memory}: {exc}") from exc
            self.memory = KnnMemory(d, settings)

    def set_memory(self, memory: nn.Module | None) -> None:
        """Attach (or with None remove) an in-domain kNN memory (:mod:`.memory`)."""
        self.memory = memory
        self.config.memory = None if memory is None else memory.settings.to_dict()

    @property
    def special(self) -> SpecialTokens:
        return self.config.special

    # -- conditions -----------------------------------------------------------------------------
    def encode_conditions(
        self, image_features: Tensor | None = None, ingredient_ids: Tensor | None = None
    ) -> dict[str, Condition]:
        """Embed the inputs this decoder is conditioned on; extra inputs are an error."""
        given = {IMAGE: image_features, INGREDIENTS: ingredient_ids}
        out: dict[str, Condition] = {}
        for name, value in given.items():
            wanted = name in self.config.conditions
            if wanted and value is None:
                raise ValueError(f"this decoder is conditioned on {name}; pass it")
            if not wanted and value is not None:
                raise ValueError(
                    f"this decoder ignores {name} (conditions={self.config.conditions})"
                )
        if self.image_embed is not None:
            out[IMAGE] = self.image_embed(image_features)
        if self.ingredient_embed is not None:
            out[INGREDIENTS] = self.ingredient_embed(ingredient_ids)
        sizes = {c.tokens.shape[0] for c in out.values()}
        if len(sizes) != 1:
            raise ValueError(f"image and ingredient batch sizes differ: {sorted(sizes)}")
        return out

    def precompute(self, conditions: Mapping[str, Condition]) -> list[list[Memory]]:
        return [layer.fusion.precompute(conditions) for layer in self.layers]

    # -- words ----------------------------------------------------------------------------------
    def _embed_words(self, tokens: Tensor, start: int) -> Tensor:
        t = tokens.shape[1]
        if start + t > self.config.max_len:
            raise ValueError(f"sequence of {start + t} words exceeds max_len {self.config.max_len}")
        positions = torch.arange(start, start + t, device=tokens.device)
        x = self.word_embed(tokens) * self.embed_scale + self.pos_embed(positions)
        return self.embed_drop(x)

    def _logits(self, x: Tensor) -> Tensor:
        """Next-word logits; with a memory, outside training, the logits of the decoder-memory
        mixture (:meth:`.memory.KnnMemory.forward`)."""
        h = self.final_norm(x)
        logits = self.out_proj(h)
        if self.memory is not None and not self.training:
            return self.memory(h, logits)
        return logits

    def forward(
        self,
        tokens: Tensor,
        image_features: Tensor | None = None,
        ingredient_ids: Tensor | None = None,
        conditions: Mapping[str, Condition] | None = None,
        last_only: bool = False,
    ) -> Tensor:
        """Teacher forcing: input words (B, T) (starting with bos) -> logits (B, T, V).

        ``last_only`` returns the logits of the last position only, (B, 1, V) (what uncached
        decoding needs; it spares the vocabulary projection of every earlier position).
        """
        if conditions is None:
            conditions = self.encode_conditions(image_features, ingredient_ids)
        memories = self.precompute(conditions)
        x = self._embed_words(tokens, 0)
        for layer, mem in zip(self.layers, memories):
            x = layer(x, mem)
        return self._logits(x[:, -1:] if last_only else x)

    # -- incremental decoding -------------------------------------------------------------------
    def start(
        self,
        image_features: Tensor | None = None,
        ingredient_ids: Tensor | None = None,
        conditions: Mapping[str, Condition] | None = None,
        max_len: int | None = None,
    ) -> DecoderState:
        """Project the conditions once and allocate empty word caches for ``max_len`` words."""
        if conditions is None:
            conditions = self.encode_conditions(image_features, ingredient_ids)
        memories = self.precompute(conditions)
        like = next(iter(conditions.values())).tokens
        n = min(max_len or self.config.max_len, self.config.max_len)
        cfg = self.config
        caches = [KVCache(like.shape[0], cfg.num_heads, n, cfg.head_dim, like) for _ in self.layers]
        return DecoderState(memories, caches)

    def step(self, state: DecoderState, tokens: Tensor) -> Tensor:
        """Feed the next word(s) (B, t); returns their logits (B, t, V) and advances ``state``."""
        x = self._embed_words(tokens, state.length)
        for layer, mem, cache in zip(self.layers, state.memories, state.caches):
            x = layer(x, mem, cache)
        state.length += tokens.shape[1]
        return self._logits(x)


def sequence_nll(
    logits: Tensor, targets: Tensor, pad_id: int, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor, int]:
    """Word-level loss ignoring padding.

    Returns (mean loss to optimise, summed plain NLL for perplexity, number of counted words).
    The summed NLL never includes label smoothing, so perplexity stays comparable.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_targets = targets.reshape(-1)
    loss = F.cross_entropy(
        flat_logits, flat_targets, ignore_index=pad_id, label_smoothing=label_smoothing
    )
    with torch.no_grad():
        nll = F.cross_entropy(flat_logits, flat_targets, ignore_index=pad_id, reduction="sum")
    count = int((flat_targets != pad_id).sum())
    return loss, nll, count
