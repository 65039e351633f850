"""In-domain memory of the instruction decoder: a kNN language model (Khandelwal et al., ICLR
2020, "Generalization through Memorization").

The photos' recipes come from two sources (public-domain-recipes and HowToCook) whose style the
other 95 % of the training text does not share; their training recipes are few (464), and the
decoder's validation perplexity on them stays well above its perplexity on the other sources.
The memory keeps, for every word of those training recipes, the decoder's last hidden state
(the input of the vocabulary projection, reduced by PCA) and the word that followed. At
inference the next-word distribution is

    p(w) = (1 - weight) * p_decoder(w) + weight * p_memory(w)

where ``p_memory`` puts ``softmax(-distance / temperature)`` of the ``k`` nearest stored states
on their next words. The memory is a buffer of the decoder itself (:class:`KnnMemory`, built by
:func:`attach_memory`), so teacher forcing (perplexity), greedy/beam/sampling decoding and the
ONNX export all use it alike; it is off while the decoder trains. ``weight``, ``temperature``
and ``k`` are chosen on held-out text of the same sources (:func:`tune_memory`), not on the
validation photos the perplexity is reported on.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

# Rows of queries scored against the whole memory at once (a (rows, size) distance matrix).
QUERY_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class MemorySettings:
    """Shape and mixing of a :class:`KnnMemory` (stored in ``DecoderConfig.memory``)."""

    size: int  # stored states
    dim: int  # PCA dimensions of a stored state
    k: int = 64  # neighbours per query (>= size: every stored state, no search)
    temperature: float = 20.0  # of softmax(-squared distance / temperature)
    weight: float = 0.2  # of p_memory in the mixture

    def __post_init__(self) -> None:
        if self.size < 1 or self.dim < 1 or self.k < 1:
            raise ValueError(f"memory size, dim and k must be >= 1, got {self}")
        if self.temperature <= 0 or not 0.0 <= self.weight < 1.0:
            raise ValueError(f"memory temperature must be > 0 and weight in [0, 1), got {self}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class KnnMemory(nn.Module):
    """``(hidden, logits) -> logits`` of the mixture of the decoder and its nearest stored states.

    Buffers: ``mean`` and ``proj`` (PCA: ``(hidden - mean) @ proj``), ``keys`` (dim, size:
    stored transposed, so a query's distances are one plain row-times-matrix product) as int8
    with a ``key_scale`` per dimension (a quarter of float32's bytes: the memory ships twice,
    in ``model.pt`` and in the ONNX decoder step) and ``values`` (size,) the next words
    (int32).
    """

    def __init__(self, hidden_dim: int, settings: MemorySettings) -> None:
        super().__init__()
        self.settings = settings
        s = settings
        self.register_buffer("mean", torch.zeros(hidden_dim))
        self.register_buffer("proj", torch.zeros(hidden_dim, s.dim))
        self.register_buffer("keys", torch.zeros(s.dim, s.size, dtype=torch.int8))
        self.register_buffer("key_scale", torch.ones(s.dim))
        self.register_buffer("values", torch.zeros(s.size, dtype=torch.int32))
        # set by fill() and saved with the weights: an unfilled memory would mix in zeros
        self.register_buffer("filled", torch.zeros((), dtype=torch.bool))

    def dequantised_keys(self) -> Tensor:
        """The stored states in float, (dim, size)."""
        return self.keys.float() * self.key_scale.float()[:, None]

    def float_keys(self) -> tuple[Tensor, Tensor]:
        """Dequantised keys (dim, size) and their squared norms (size,), computed once per
        content of the buffers (every decoding step needs them). While tracing for ONNX they
        are computed in the graph from the int8 buffer instead, so the export keeps int8."""
        if torch.jit.is_tracing():
            keys = self.dequantised_keys()
            return keys, (keys * keys).sum(0)
        # in-place loads (load_state_dict, fill) bump _version; .to() gives new storage
        stamp = (
            self.keys.data_ptr(),
            self.keys._version,
            self.key_scale.data_ptr(),
            self.key_scale._version,
        )
        cached = getattr(self, "_float_keys", None)
        if cached is None or cached[0] != stamp:
            keys = self.dequantised_keys()
            cached = (stamp, keys, (keys * keys).sum(0))
            self._float_keys = cached
        return cached[1], cached[2]

    def query(self, hidden: Tensor) -> Tensor:
        """Hidden states (rows, hidden_dim) -> their PCA coordinates (rows, dim)."""
        return (hidden.float() - self.mean.float()) @ self.proj.float()

    def fill(self, states: Tensor, next_words: Tensor) -> None:
        """Store ``states`` (size, hidden) and their ``next_words`` (size,); fits the PCA."""
        states = states.float()
        if states.shape[0] != self.settings.size or next_words.shape != (self.settings.size,):
            raise ValueError(
                f"memory of {self.settings.size} states got {tuple(states.shape)} states and "
                f"{tuple(next_words.shape)} words"
            )
        mean = states.mean(0)
        centred = states - mean
        # principal directions of the stored states (eigenvectors of their covariance)
        _, vectors = torch.linalg.eigh(centred.T @ centred / max(1, len(states) - 1))
        proj = vectors[:, -self.settings.dim :].flip(1)
        keys = centred @ proj
        scale = keys.abs().amax(0).clamp_min(1e-8) / 127.0
        with torch.no_grad():
            self.mean.copy_(mean)
            self.proj.copy_(proj)
            self.keys.copy_(torch.round(keys / scale).clamp(-127, 127).to(torch.int8).T)
            self.key_scale.copy_(scale)
            self.values.copy_(next_words.to(torch.int32))
            self.filled.fill_(True)

    def forward(self, hidden: Tensor, logits: Tensor) -> Tensor:
        """Logits of the mixture: ``log p_mixture + logsumexp(logits) - log(1 - weight)``.
        The constant per row changes no distribution (perplexity, softmax, sampling), but
        keeps the values on the decoder's logit scale: a word the memory does not back keeps
        its logit exactly, so the CTRL repetition penalty (which divides positive and
        multiplies negative logits) acts as strongly as without a memory."""
        if not torch.jit.is_tracing() and not bool(self.filled):
            raise RuntimeError("the decoder's memory was never filled (attach_memory) or loaded")
        s = self.settings
        shape = logits.shape
        flat = logits.reshape(-1, shape[-1]).float()
        h = hidden.reshape(-1, hidden.shape[-1]).float()
        lm = torch.softmax(flat, dim=-1)
        keys, key_sq = self.float_keys()  # in ONNX: folded into constants at load
        values = self.values.long()
        # one chunk while tracing for ONNX: the traced graph must take any number of rows
        chunk = h.shape[0] if torch.jit.is_tracing() else QUERY_CHUNK
        out = []
        for start in range(0, h.shape[0], chunk):
            q = self.query(h[start : start + chunk])
            w, idx = neighbour_weights(q, keys, key_sq, s)
            words = values[idx] if idx is not None else values.expand(q.shape[0], -1)
            p_mem = torch.zeros_like(lm[start : start + chunk]).scatter_add(1, words, w)
            mix = (1.0 - s.weight) * lm[start : start + chunk] + s.weight * p_mem
            out.append(torch.log(mix.clamp_min(1e-30)))
        scale = torch.logsumexp(flat, dim=-1, keepdim=True) - math.log(1.0 - s.weight)
        return (torch.cat(out) + scale).reshape(shape)


def neighbour_weights(
    q: Tensor, keys: Tensor, key_sq: Tensor, settings: MemorySettings
) -> tuple[Tensor, Tensor | None]:
    """Kernel weights ``softmax(-squared distance / temperature)`` of the ``k`` nearest keys
    and their rows, or, with ``k`` >= the memory size, of every key (rows None: all, in
    order; no top-k search, which at that size would be a full sort per query)."""
    dist = (q * q).sum(1, keepdim=True) - 2.0 * (q @ keys) + key_sq  # keys: (dim, size)
    if settings.k >= keys.shape[1]:
        return torch.softmax(-dist / settings.temperature, dim=1), None
    neg, idx = torch.topk(-dist, settings.k, dim=1)
    return torch.softmax(neg / settings.temperature, dim=1), idx


def decoder_states(
    decoder: nn.Module,
    recipes: Sequence[Any],
    features: Tensor | None,
    starts: Collection[int] = (),
    batch_size: int = 16,
) -> tuple[Tensor, Tensor, Tensor]:
    """Teacher-forced pass over ``recipes`` (their first photo): the hidden state before the
    vocabulary projection at every scored position (N, d_model), the word that follows (N,)
    and the decoder's log-probability of that word (N,), without any memory attached."""
    from beyondvis.recipes.generation.training import TextItems, batch_conditions, make_text_collate

    cfg = decoder.config
    collate = make_text_collate(cfg.special, cfg.ingredient_pad_id, starts=starts)
    items = TextItems(list(recipes), pick_random_photo=False)
    captured: list[Tensor] = []
    hook = decoder.final_norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
    memory, decoder.memory = decoder.memory, None  # the decoder's own distribution
    states, words, logp = [], [], []
    was_training = decoder.training
    decoder.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(items), batch_size):
                batch = collate(
                    [items[i] for i in range(start, min(start + batch_size, len(items)))]
                )
                captured.clear()
                logits = decoder(
                    batch.inputs, conditions=batch_conditions(decoder, batch, features)
                )
                keep = batch.targets != cfg.special.pad
                states.append(captured[-1][keep])
                words.append(batch.targets[keep])
                lp = torch.log_softmax(logits.float(), -1)
                logp.append(lp.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)[keep])
    finally:
        hook.remove()
        decoder.memory = memory
        decoder.train(was_training)
    return torch.cat(states), torch.cat(words), torch.cat(logp)


def attach_memory(
    decoder: nn.Module,
    recipes: Sequence[Any],
    features: Tensor | None,
    settings: MemorySettings | None = None,
    dim: int = 64,
    starts: Collection[int] = (),
) -> KnnMemory:
    """Build the memory from ``recipes`` (the training recipes of the photos' sources) and
    attach it to ``decoder`` (``decoder.memory``, ``decoder.config.memory``)."""
    states, words, _ = decoder_states(decoder, recipes, features, starts)
    if settings is None:
        settings = MemorySettings(size=len(words), dim=min(dim, states.shape[1]))
    elif settings.size != len(words):
        settings = dataclasses.replace(settings, size=len(words))
    memory = KnnMemory(states.shape[1], settings)
    memory.fill(states, words)
    decoder.set_memory(memory)
    return memory


def mixture_nll(
    memory: KnnMemory, states: Tensor, words: Tensor, logp: Tensor, settings: MemorySettings
) -> float:
    """Mean NLL of ``words`` under the mixture with ``settings`` (k, temperature, weight),
    from states and decoder log-probabilities computed once (:func:`decoder_states`)."""
    keys, key_sq = memory.float_keys()
    values = memory.values.long()
    total = 0.0
    for start in range(0, len(words), QUERY_CHUNK):
        q = memory.query(states[start : start + QUERY_CHUNK])
        w, idx = neighbour_weights(q, keys, key_sq, settings)
        stored = values[idx] if idx is not None else values[None, :]
        hit = (stored == words[start : start + QUERY_CHUNK, None]).float()
        p_mem = (w * hit).sum(1)
        p_lm = logp[start : start + QUERY_CHUNK].exp()
        mix = (1.0 - settings.weight) * p_lm + settings.weight * p_mem
        total += float(-torch.log(mix.clamp_min(1e-30)).sum())
    return total / max(1, len(words))


def tune_memory(
    decoder: nn.Module,
    memory: KnnMemory,
    recipes: Sequence[Any],
    features: Tensor | None,
    ks: Iterable[int | None] = (1024, 4096, None),
    temperatures: Iterable[float] = (10.0, 20.0, 30.0),
    weights: Iterable[float] = (0.25, 0.3, 0.35, 0.4),
    starts: Collection[int] = (),
) -> tuple[MemorySettings, list[dict[str, float]]]:
    """Grid search of (k, temperature, weight) by perplexity on ``recipes`` (held-out text of
    the photos' sources); sets the best on ``memory`` and returns it with every row (the first
    row, k 0, is the decoder alone). A ``k`` of None (or >= the size) is every stored state."""
    states, words, logp = decoder_states(decoder, recipes, features, starts)
    rows = [{"k": 0, "temperature": 0.0, "weight": 0.0, "ppl": math.exp(float(-logp.mean()))}]
    best, best_ppl = memory.settings, math.inf
    for k, t, w in itertools.product(ks, temperatures, weights):
        size = memory.settings.size
        k = size if k is None else min(int(k), size)
        cand = dataclasses.replace(memory.settings, k=k, temperature=float(t), weight=float(w))
        ppl = math.exp(mixture_nll(memory, states, words, logp, cand))
        rows.append({"k": int(k), "temperature": float(t), "weight": float(w), "ppl": ppl})
        if ppl < best_ppl:
            best, best_ppl = cand, ppl
    memory.settings = best
    decoder.set_memory(memory)  # the config records the chosen settings
    log.info("memory tuned on %d words: %s, perplexity %.2f", len(words), best, best_ppl)
    return best, rows


__all__ = [
    "KnnMemory",
    "MemorySettings",
    "attach_memory",
    "decoder_states",
    "mixture_nll",
    "neighbour_weights",
    "tune_memory",
]
