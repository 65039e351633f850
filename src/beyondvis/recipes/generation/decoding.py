"""Greedy, sampling and beam-search decoding of the instruction decoder.

All three use the decoder's incremental ``step`` (self-attention KV cache, condition keys/values
projected once), so generating ``L`` words costs O(L) decoder steps of O(L) attention each instead
of re-running the whole prefix every step. ``greedy_decode(..., use_cache=False)`` is the naive
re-run-everything reference, kept for tests and the speed benchmark.

Outputs never contain ``pad``, ``bos`` or the ids in ``banned`` (e.g. the tokenizer's ``<unk>``,
which a recipe card should not show); they end with ``eos`` unless ``max_len`` cut them.

Every method takes ``rules`` (:class:`~beyondvis.recipes.generation.constraints.DecodingRules`):
no-repeat n-grams within and across steps, no repeated step, unique title words, a repetition
penalty and min/max steps. ``None`` (the default) decodes the plain model; ``beyondvis cook``
always passes rules. The rules live in a torch-free module so the ONNX Runtime path applies the
very same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from beyondvis.recipes.generation.constraints import DecodingRules, RowRules, free_token_ids
from beyondvis.recipes.generation.decoder import InstructionDecoder
from beyondvis.recipes.generation.fusion import Condition
from beyondvis.registry import Registry


@dataclass
class Generation:
    """Decoded word ids (B, L) padded with ``pad``, their lengths (B,) and scores (B,).

    The score is the summed log-probability of the words (for beam search, divided by the
    length penalty, i.e. the quantity the search ranks by).
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor

    def sequences(self) -> list[list[int]]:
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths.tolist())]


def _resolve_conditions(
    decoder: InstructionDecoder,
    image_features: Tensor | None,
    ingredient_ids: Tensor | None,
    conditions: Mapping[str, Condition] | None,
) -> Mapping[str, Condition]:
    if conditions is None:
        conditions = decoder.encode_conditions(image_features, ingredient_ids)
    return conditions


def _resolve_max_len(decoder: InstructionDecoder, max_len: int | None) -> int:
    limit = decoder.config.max_len
    if max_len is None:
        return limit
    if not 1 <= max_len <= limit:
        raise ValueError(f"max_len must be in [1, {limit}], got {max_len}")
    return max_len


def _restrict(
    logp: Tensor, step: int, min_len: int, decoder: InstructionDecoder, banned: Sequence[int]
) -> Tensor:
    """Words that may never be generated (pad, bos, ``banned``) and eos before ``min_len``."""
    sp = decoder.special
    logp[:, [sp.pad, sp.bos, *banned]] = float("-inf")
    if step < min_len:
        logp[:, sp.eos] = float("-inf")
    return logp


def _step_logits(
    decoder: InstructionDecoder,
    state,
    prefix: Tensor,
    conditions: Mapping[str, Condition],
    use_cache: bool,
) -> Tensor:
    """Logits of the next word (B, V) in float32; ``prefix`` (B, t+1) starts with bos."""
    if use_cache:
        logits = decoder.step(state, prefix[:, -1:])[:, -1]
    else:
        logits = decoder(prefix, conditions=conditions, last_only=True)[:, -1]
    return logits.float()


@torch.no_grad()
def _sequential_decode(
    decoder: InstructionDecoder,
    choose: Callable[[Tensor], Tensor],
    image_features: Tensor | None,
    ingredient_ids: Tensor | None,
    conditions: Mapping[str, Condition] | None,
    max_len: int | None,
    min_len: int,
    use_cache: bool,
    banned: Sequence[int],
    rules: DecodingRules | None = None,
    free_ids: Sequence[int] | None = None,
) -> Generation:
    conditions = _resolve_conditions(decoder, image_features, ingredient_ids, conditions)
    max_len = _resolve_max_len(decoder, max_len)
    sp = decoder.special
    state = decoder.start(conditions=conditions, max_len=max_len) if use_cache else None
    batch = next(iter(conditions.values())).tokens.shape[0]
    device = next(iter(conditions.values())).tokens.device
    prefix = torch.full((batch, max_len + 1), sp.pad, dtype=torch.long, device=device)
    prefix[:, 0] = sp.bos
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.full((batch,), max_len, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    guard = RowRules.for_tokens(rules, decoder.special, batch, free_ids)
    for t in range(max_len):
        logits = guard.penalise(
            _step_logits(decoder, state, prefix[:, : t + 1], conditions, use_cache)
        )
        logp = guard.restrict(
            _restrict(torch.log_softmax(logits, dim=-1), t, min_len, decoder, banned)
        )
        word = choose(logp)
        word = torch.where(finished, torch.full_like(word, sp.pad), word)
        gained = logp.gather(1, word[:, None])[:, 0]
        scores += torch.where(finished, torch.zeros_like(gained), gained)
        prefix[:, t + 1] = word
        guard.push(word.tolist())
        ended = ~finished & (word == sp.eos)
        lengths[ended] = t + 1
        finished |= ended
        if bool(finished.all()):
            break
    return Generation(prefix[:, 1 : int(lengths.max()) + 1].clone(), lengths, scores)


def greedy_decode(
    decoder: InstructionDecoder,
    image_features: Tensor | None = None,
    ingredient_ids: Tensor | None = None,
    *,
    conditions: Mapping[str, Condition] | None = None,
    max_len: int | None = None,
    min_len: int = 0,
    banned: Sequence[int] = (),
    use_cache: bool = True,
    rules: DecodingRules | None = None,
    free_ids: Sequence[int] | None = None,
) -> Generation:
    """Most probable word at every step (the thesis' decoding), under ``rules`` if given."""
    return _sequential_decode(
        decoder,
        lambda logp: logp.argmax(dim=-1),
        image_features,
        ingredient_ids,
        conditions,
        max_len,
        min_len,
        use_cache,
        banned,
        rules,
        free_ids,
    )


def sample_decode(
    decoder: InstructionDecoder,
    image_features: Tensor | None = None,
    ingredient_ids: Tensor | None = None,
    *,
    conditions: Mapping[str, Condition] | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    max_len: int | None = None,
    min_len: int = 0,
    banned: Sequence[int] = (),
    rules: DecodingRules | None = None,
    free_ids: Sequence[int] | None = None,
) -> Generation:
    """Sample each word from softmax(logits / temperature), optionally among the top ``k`` only.

    Scores are log-probabilities under the model itself (temperature 1, no top-k), so samples
    drawn with different settings stay comparable. Words tied with the k-th best are kept.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy_decode for temperature 0)")
    if top_k is not None and top_k < 1:
        raise ValueError("top_k must be >= 1")

    def choose(logp: Tensor) -> Tensor:
        logits = logp / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    return _sequential_decode(
        decoder,
        choose,
        image_features,
        ingredient_ids,
        conditions,
        max_len,
        min_len,
        True,
        banned,
        rules,
        free_ids,
    )


@torch.no_grad()
def beam_search(
    decoder: InstructionDecoder,
    image_features: Tensor | None = None,
    ingredient_ids: Tensor | None = None,
    *,
    conditions: Mapping[str, Condition] | None = None,
    beam_size: int = 3,
    length_penalty: float = 0.0,
    max_len: int | None = None,
    min_len: int = 0,
    banned: Sequence[int] = (),
    rules: DecodingRules | None = None,
    free_ids: Sequence[int] | None = None,
) -> Generation:
    """Batched beam search returning the best hypothesis per input.

    Hypotheses are ranked by ``sum log p / length ** length_penalty`` (0: plain log-probability;
    > 0 favours longer recipes). A hypothesis that emits ``eos`` leaves the beam; the beam keeps
    ``beam_size`` live ones. An input is done once no live hypothesis can still beat its best
    finished one (log-probabilities only fall, so the bound is exact), or at ``max_len``, where
    live hypotheses finish unterminated.
    """
    if beam_size < 1:
        raise ValueError("beam_size must be >= 1")
    if length_penalty < 0:
        raise ValueError("length_penalty must be >= 0")
    conditions = _resolve_conditions(decoder, image_features, ingredient_ids, conditions)
    max_len = _resolve_max_len(decoder, max_len)
    sp = decoder.special
    k = beam_size
    state = decoder.start(conditions=conditions, max_len=max_len)
    batch = state.batch_size
    device = next(iter(conditions.values())).tokens.device
    state.repeat_interleave(k)

    def normalised(score: float, length: int) -> float:
        return score / (length**length_penalty) if length_penalty else score

    # All beams start identical; only the first may expand at step 0.
    beam_scores = torch.full((batch, k), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0
    # Bookkeeping lives on the CPU: one small transfer per step instead of per-element syncs.
    history = torch.full((batch * k, max_len), sp.pad, dtype=torch.long)
    prev = torch.full((batch * k, 1), sp.bos, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    neg_inf = float("-inf")
    guard = RowRules.for_tokens(rules, decoder.special, batch * k, free_ids)
    for t in range(max_len):
        logits = guard.penalise(decoder.step(state, prev)[:, -1].float())
        logp = guard.restrict(
            _restrict(torch.log_softmax(logits, dim=-1), t, min_len, decoder, banned)
        )
        vocab = logp.shape[-1]
        cand = (beam_scores.reshape(-1, 1) + logp).reshape(batch, k * vocab)
        top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=1)
        # Rows of finished recipes (and empty slots) keep a dummy: -inf score, pad word.
        new_scores = [[neg_inf] * k for _ in range(batch)]
        new_src = [[b * k] * k for b in range(batch)]
        new_word = [[sp.pad] * k for _ in range(batch)]
        last = t == max_len - 1
        for b, (scores_b, idx_b) in enumerate(zip(top_scores.tolist(), top_idx.tolist())):
            if done[b]:
                continue
            alive = 0
            for score, flat in zip(scores_b, idx_b):
                if score == neg_inf:
                    break
                src, word = divmod(flat, vocab)
                row = b * k + src
                if word == sp.eos or last:
                    seq = history[row, :t].tolist() + [word]
                    finished[b].append((normalised(score, t + 1), seq))
                    continue
                if alive < k:
                    new_scores[b][alive] = score
                    new_src[b][alive] = row
                    new_word[b][alive] = word
                    alive += 1
            if alive == 0:
                done[b] = True
            elif finished[b]:
                # Best reachable normalised score of a live beam: its log-prob can only fall, and
                # a longer length divides that (negative) number by more.
                best_done = max(score for score, _ in finished[b])
                bound = normalised(new_scores[b][0], max_len if length_penalty else t + 1)
                done[b] = best_done >= bound
        if all(done):
            break
        flat_src = torch.tensor(new_src).reshape(-1)
        words = torch.tensor(new_word).reshape(-1)
        state.reorder(flat_src.to(device))
        history = history.index_select(0, flat_src)
        history[:, t] = words
        guard.reorder(flat_src.tolist())
        guard.push(words.tolist())
        beam_scores = torch.tensor(new_scores, device=device)
        prev = words.to(device).reshape(-1, 1)

    if not all(finished):
        raise ValueError("no word may be generated (vocabulary holds only special tokens?)")
    best = [max(f, key=lambda item: item[0]) for f in finished]
    lengths = torch.tensor([len(seq) for _, seq in best], dtype=torch.long, device=device)
    tokens = torch.full((batch, int(lengths.max())), sp.pad, dtype=torch.long, device=device)
    for b, (_, seq) in enumerate(best):
        tokens[b, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
    scores = torch.tensor([s for s, _ in best], device=device)
    return Generation(tokens, lengths, scores)


__all__ = [
    "DECODING",
    "DecodingRules",
    "Generation",
    "beam_search",
    "free_token_ids",
    "generate",
    "greedy_decode",
    "sample_decode",
]

DECODING: Registry[Generation] = Registry("decoding method")
DECODING.register("greedy")(greedy_decode)
DECODING.register("beam")(beam_search)
DECODING.register("sample")(sample_decode)


def generate(
    decoder: InstructionDecoder,
    method: str = "greedy",
    image_features: Tensor | None = None,
    ingredient_ids: Tensor | None = None,
    **options,
) -> Generation:
    """Decode with a method chosen by name (``greedy``, ``beam``, ``sample``), e.g. from a CLI
    flag; ``options`` go to that method (``beam_size``, ``top_k``, ``max_len``, ...)."""
    return DECODING.create(method, decoder, image_features, ingredient_ids, **options)
