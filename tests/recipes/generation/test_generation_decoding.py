"""Greedy, beam search and sampling: known answers on toy models and exhaustive search."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from helpers_generation import SPECIAL, tiny_decoder, tiny_inputs

from beyondvis.recipes.generation import (
    DECODING,
    Condition,
    beam_search,
    generate,
    greedy_decode,
    sample_decode,
)

A, B = 4, 5
VOCAB = 6


class _ToyState:
    def __init__(self, batch: int) -> None:
        self.batch_size = batch
        self.length = 0

    def reorder(self, index: torch.Tensor) -> None:
        self.batch_size = index.numel()

    def repeat_interleave(self, n: int) -> None:
        self.batch_size *= n


class MarkovToy:
    """A 'decoder' whose next-word distribution depends only on the previous word.

    Rows of ``table`` should sum to 1 (unlisted words get ~0 probability).
    """

    def __init__(self, table: dict[int, dict[int, float]], max_len: int = 8) -> None:
        self.special = SPECIAL
        self.config = SimpleNamespace(max_len=max_len)
        logits = torch.full((VOCAB, VOCAB), math.log(1e-9))
        for prev, row in table.items():
            for word, p in row.items():
                logits[prev, word] = math.log(p)
        self.logits = logits

    def encode_conditions(self, image_features=None, ingredient_ids=None):
        return {"image": Condition(image_features)}

    def start(self, conditions, max_len=None):
        return _ToyState(conditions["image"].tokens.shape[0])

    def step(self, state, tokens):
        assert tokens.shape[0] == state.batch_size
        state.length += tokens.shape[1]
        return self.logits[tokens]

    def __call__(self, tokens, conditions=None, last_only=False):  # for use_cache=False
        out = self.logits[tokens]
        return out[:, -1:] if last_only else out


def toy_image(batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, 1, 1)


# Greedy takes A (0.55) and then wanders; the best recipe is "B eos" (0.45 * 0.9).
GREEDY_TRAP = {
    SPECIAL.bos: {A: 0.55, B: 0.45},
    A: {A: 0.36, B: 0.34, SPECIAL.eos: 0.30},
    B: {SPECIAL.eos: 0.90, A: 0.05, B: 0.05},
}


def test_beam_finds_the_best_sequence_greedy_misses():
    toy = MarkovToy(GREEDY_TRAP)
    greedy = greedy_decode(toy, toy_image())
    assert greedy.sequences()[0][0] == A
    beam = beam_search(toy, toy_image(), beam_size=2)
    assert beam.sequences() == [[B, SPECIAL.eos]]
    assert beam.scores.item() == pytest.approx(math.log(0.45 * 0.9), abs=1e-4)
    assert beam.scores.item() > greedy.scores.item()
    # The uncached greedy reference agrees with the cached one on the toy too.
    assert greedy_decode(toy, toy_image(), use_cache=False).sequences() == greedy.sequences()


def test_batched_beam_with_a_finished_and_an_unfinished_row():
    toy = MarkovToy(GREEDY_TRAP, max_len=5)
    beam = beam_search(toy, toy_image(2), beam_size=2)
    assert beam.sequences() == [[B, SPECIAL.eos]] * 2
    assert beam.tokens.shape == (2, 2) and beam.lengths.tolist() == [2, 2]


def test_length_penalty_prefers_the_longer_recipe():
    table = {
        SPECIAL.bos: {SPECIAL.eos: 0.5, A: 0.5},
        A: {B: 0.99, SPECIAL.eoi: 0.01},
        B: {SPECIAL.eos: 0.99, SPECIAL.eoi: 0.01},
    }
    toy = MarkovToy(table)
    assert beam_search(toy, toy_image(), beam_size=2).sequences() == [[SPECIAL.eos]]
    long = beam_search(toy, toy_image(), beam_size=2, length_penalty=1.0)
    assert long.sequences() == [[A, B, SPECIAL.eos]]
    assert long.scores.item() == pytest.approx(math.log(0.5 * 0.99 * 0.99) / 3, abs=1e-4)


def test_min_len_and_max_len():
    toy = MarkovToy(GREEDY_TRAP, max_len=6)
    out = beam_search(toy, toy_image(), beam_size=2, min_len=3)
    seq = out.sequences()[0]
    assert len(seq) >= 4 and seq[-1] == SPECIAL.eos and SPECIAL.eos not in seq[:-1]
    capped = greedy_decode(toy, toy_image(), max_len=3)
    assert capped.lengths.tolist() == [3] and SPECIAL.eos not in capped.sequences()[0]
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(toy, toy_image(), max_len=7)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(toy, toy_image(), beam_size=0)


def _exhaustive_best(dec, image, ingredients, max_len):
    """Score every possible output of length <= max_len by teacher forcing."""
    words = [SPECIAL.eoi, *range(4, dec.config.vocab_size)]
    candidates = []
    for n in range(max_len):
        candidates += [list(p) + [SPECIAL.eos] for p in itertools.product(words, repeat=n)]
    candidates += [list(p) for p in itertools.product(words, repeat=max_len)]
    best = (-math.inf, None)
    with torch.no_grad():
        for seq in candidates:
            inputs = torch.tensor([[SPECIAL.bos, *seq[:-1]]])
            logp = torch.log_softmax(dec(inputs, image, ingredients), dim=-1)[0]
            score = float(logp.gather(1, torch.tensor(seq)[:, None]).sum())
            best = max(best, (score, seq), key=lambda item: item[0])
    return best


def test_wide_beam_equals_exhaustive_search_on_a_real_decoder():
    max_len = 4
    dec = tiny_decoder(seed=3, vocab_size=7)
    image, ingredients, _ = tiny_inputs(batch=2, seed=5)
    # 4 non-final words -> at most 4**3 = 64 live prefixes: a 64-wide beam is exact.
    beam = beam_search(dec, image, ingredients, beam_size=64, max_len=max_len)
    for row in range(2):
        score, seq = _exhaustive_best(
            dec, image[row : row + 1], ingredients[row : row + 1], max_len
        )
        assert beam.sequences()[row] == seq
        assert beam.scores[row].item() == pytest.approx(score, abs=1e-4)


def test_beam_of_one_is_greedy_and_beam_is_never_worse():
    dec = tiny_decoder(seed=4)
    image, ingredients, _ = tiny_inputs(seed=6)
    greedy = greedy_decode(dec, image, ingredients)
    assert beam_search(dec, image, ingredients, beam_size=1).sequences() == greedy.sequences()
    wide = beam_search(dec, image, ingredients, beam_size=5)
    assert (wide.scores >= greedy.scores - 1e-5).all()
    # Batched beam equals row-by-row beam.
    for row in range(3):
        single = beam_search(dec, image[row : row + 1], ingredients[row : row + 1], beam_size=5)
        assert single.sequences()[0] == wide.sequences()[row]


def test_top_k_sampling_stays_in_the_top_k():
    dec = tiny_decoder(seed=2)
    image, ingredients, _ = tiny_inputs(batch=1)
    n = 300
    image_n, ingr_n = image.expand(n, -1, -1, -1), ingredients.expand(n, -1)
    with torch.no_grad():
        logits = dec(torch.full((1, 1), SPECIAL.bos), image, ingredients)[0, 0]
    logits[[SPECIAL.pad, SPECIAL.bos]] = -math.inf
    allowed = set(logits.topk(3).indices.tolist())
    gen = torch.Generator().manual_seed(0)
    first = sample_decode(dec, image_n, ingr_n, top_k=3, temperature=2.0, generator=gen, max_len=1)
    drawn = set(first.tokens[:, 0].tolist())
    assert drawn <= allowed and len(drawn) >= 2
    # top_k=1, or a near-zero temperature, is greedy.
    greedy = greedy_decode(dec, image, ingredients).sequences()
    assert sample_decode(dec, image, ingredients, top_k=1, temperature=5.0).sequences() == greedy
    assert sample_decode(dec, image, ingredients, temperature=1e-4).sequences() == greedy


def test_sampling_is_reproducible_and_validated():
    dec = tiny_decoder(seed=2)
    image, ingredients, _ = tiny_inputs()

    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return sample_decode(dec, image, ingredients, generator=gen).sequences()

    assert draw(7) == draw(7)
    with pytest.raises(ValueError, match="temperature"):
        sample_decode(dec, image, ingredients, temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        sample_decode(dec, image, ingredients, top_k=0)


def test_outputs_never_contain_pad_or_bos_and_end_at_eos():
    dec = tiny_decoder(seed=9)
    image, ingredients, _ = tiny_inputs()
    for gen in (
        greedy_decode(dec, image, ingredients),
        beam_search(dec, image, ingredients, beam_size=3),
        sample_decode(dec, image, ingredients, generator=torch.Generator().manual_seed(1)),
    ):
        for seq, n in zip(gen.sequences(), gen.lengths.tolist()):
            assert len(seq) == n
            assert SPECIAL.pad not in seq and SPECIAL.bos not in seq
            assert SPECIAL.eos not in seq[:-1]


def test_generate_dispatches_by_name():
    dec = tiny_decoder(seed=4)
    image, ingredients, _ = tiny_inputs(seed=6)
    assert DECODING.names() == ["beam", "greedy", "sample"]
    assert (
        generate(dec, "beam", image, ingredients, beam_size=3).sequences()
        == beam_search(dec, image, ingredients, beam_size=3).sequences()
    )
    assert generate(dec, "greedy", image, ingredients, max_len=5).tokens.shape[1] <= 5
    with pytest.raises(KeyError, match="unknown decoding method"):
        generate(dec, "nucleus", image, ingredients)


def test_banned_words_are_never_generated():
    dec = tiny_decoder(seed=9)
    image, ingredients, _ = tiny_inputs()
    free = greedy_decode(dec, image, ingredients, min_len=12).sequences()
    common = max(range(4, 40), key=lambda w: sum(seq.count(w) for seq in free))
    assert any(common in seq for seq in free)
    for gen in (
        greedy_decode(dec, image, ingredients, min_len=12, banned=[common]),
        greedy_decode(dec, image, ingredients, min_len=12, banned=[common], use_cache=False),
        beam_search(dec, image, ingredients, beam_size=3, min_len=12, banned=[common]),
        sample_decode(dec, image, ingredients, min_len=12, banned=[common]),
    ):
        assert not any(common in seq for seq in gen.sequences())
