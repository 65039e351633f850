"""The decoder's in-domain kNN memory: the mixture, where it applies, tuning, round trips."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers_generation import SPECIAL, tiny_config, tiny_decoder, tiny_inputs

from beyondvis.recipes.generation import DecoderConfig, InstructionDecoder
from beyondvis.recipes.generation.data import GenRecipe
from beyondvis.recipes.generation.memory import (
    KnnMemory,
    MemorySettings,
    attach_memory,
    decoder_states,
    mixture_nll,
    tune_memory,
)
from beyondvis.recipes.generation.training import text_eval

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _filled(size=50, hidden=8, dim=4, vocab=10, **kw):
    g = torch.Generator().manual_seed(0)
    states = torch.randn(size, hidden, generator=g)
    words = torch.randint(0, vocab, (size,), generator=g)
    memory = KnnMemory(hidden, MemorySettings(size=size, dim=dim, **kw))
    memory.fill(states, words)
    return memory, states, words


def _reference(memory, hidden, logits):
    """The mixture written out in float64, one query at a time."""
    s = memory.settings
    keys = memory.dequantised_keys().double().T  # (size, dim)
    out = []
    for h, lg in zip(hidden.double(), logits.double()):
        q = (h - memory.mean.double()) @ memory.proj.double()
        d = ((keys - q) ** 2).sum(1)
        near = torch.argsort(d)[: s.k]
        w = torch.softmax(-d[near] / s.temperature, 0)
        p_mem = torch.zeros(lg.shape[0], dtype=torch.float64)
        p_mem.index_add_(0, memory.values[near].long(), w)
        out.append(torch.log((1 - s.weight) * torch.softmax(lg, 0) + s.weight * p_mem))
    return torch.stack(out)


@pytest.mark.parametrize("k", [5, 50])  # nearest 5, and every stored state (no search)
def test_mixture_matches_the_formula(k):
    memory, _, _ = _filled(k=k, temperature=2.0, weight=0.3)
    g = torch.Generator().manual_seed(1)
    hidden, logits = torch.randn(7, 8, generator=g), torch.randn(7, 10, generator=g)
    got = torch.log_softmax(memory(hidden, logits), -1)
    torch.testing.assert_close(got.double(), _reference(memory, hidden, logits), atol=1e-4, rtol=0)
    # (B, T, V) inputs give the same rows
    batched = memory(hidden.reshape(7, 1, 8), logits.reshape(7, 1, 10))
    torch.testing.assert_close(torch.log_softmax(batched.reshape(7, 10), -1), got)


def test_mixture_stays_on_the_logit_scale():
    # The repetition penalty divides positive and multiplies negative logits: the memory's
    # output must be logits, where a word the memory does not back keeps its value.
    memory, _, words = _filled(k=3, temperature=0.01, weight=0.3)
    g = torch.Generator().manual_seed(2)
    hidden, logits = torch.randn(4, 8, generator=g), 5.0 * torch.randn(4, 10, generator=g)
    out = memory(hidden, logits)
    probs = torch.softmax(_reference(memory, hidden, logits), -1)  # float64, from the formula
    p_lm = torch.softmax(logits.double(), -1)
    backed = probs > (1 - 0.3) * p_lm + 1e-9  # words the memory adds probability to
    assert backed.any() and (~backed).any()
    torch.testing.assert_close(out[~backed], logits[~backed], atol=1e-4, rtol=0)
    assert (out[backed] >= logits[backed] - 1e-4).all()  # what the memory backs only gains
    assert (out - logits).max() > 1.0


def test_an_unfilled_memory_refuses_to_run():
    memory = KnnMemory(8, MemorySettings(size=5, dim=2))
    with pytest.raises(RuntimeError, match="never filled"):
        memory(torch.zeros(1, 8), torch.zeros(1, 10))


def test_a_stored_state_recalls_its_next_word():
    memory, states, words = _filled(k=3, temperature=0.01, weight=0.9)
    logp = memory(states[:5], torch.zeros(5, 10))
    assert logp.argmax(-1).tolist() == words[:5].tolist()
    assert memory.keys.dtype == torch.int8 and memory.values.dtype == torch.int32


def test_settings_are_checked():
    for bad in ({"size": 0, "dim": 2}, {"size": 3, "dim": 2, "weight": 1.0}):
        with pytest.raises(ValueError, match="memory"):
            MemorySettings(**bad)
    memory, states, words = _filled()
    with pytest.raises(ValueError, match="states"):
        memory.fill(states[:3], words[:3])


def _recipes(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        body = torch.randint(4, 40, (7,), generator=g).tolist()
        tokens = [SPECIAL.bos, *body[:3], SPECIAL.eoi, *body[3:], SPECIAL.eoi, SPECIAL.eos]
        ingr = torch.randint(2, 25, (4,), generator=g).tolist()
        out.append(GenRecipe(f"r{i}", "t", "train", ingr, tokens, [i], [], origin="pdr"))
    return out


def test_memory_is_used_for_inference_only_and_survives_a_round_trip():
    decoder = tiny_decoder()
    image, ingredients, words = tiny_inputs()
    features = torch.randn(6, image.shape[1], 2, 3)
    recipes = _recipes()
    with torch.no_grad():
        plain = decoder(words, image, ingredients)
    attach_memory(decoder, recipes, features, dim=8)
    assert decoder.config.memory["size"] == sum(len(r.tokens) - 1 for r in recipes)
    with torch.no_grad():
        mixed = decoder(words, image, ingredients)
        x = torch.randn(2, 3, decoder.config.d_model)
        plain_logits = decoder.out_proj(decoder.final_norm(x))
        decoder.train()  # training scores the decoder alone
        torch.testing.assert_close(decoder._logits(x), plain_logits)
        decoder.eval()
        assert not torch.allclose(decoder._logits(x), plain_logits)
    assert not torch.allclose(mixed, torch.log_softmax(plain, -1), atol=1e-4)
    # the config carries the memory's shape: a decoder rebuilt from it loads the state dict
    as_json = json.loads(json.dumps(decoder.config.to_dict()))  # as checkpoints store it
    rebuilt = InstructionDecoder(DecoderConfig.from_dict(as_json)).eval()
    rebuilt.load_state_dict(decoder.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(words, image, ingredients), mixed)


def test_tuning_picks_the_best_row_and_mixture_nll_is_what_the_decoder_scores():
    decoder = tiny_decoder(seed=3)
    features = torch.randn(6, tiny_config().image_channels, 2, 3)
    recipes = _recipes()
    memory = attach_memory(decoder, recipes, features, dim=8)
    best, rows = tune_memory(
        decoder,
        memory,
        recipes,
        features,
        ks=(4, None),
        temperatures=(1.0, 10.0),
        weights=(0.2, 0.5),
    )
    assert rows[0]["k"] == 0 and len(rows) == 1 + 2 * 2 * 2
    assert min(r["ppl"] for r in rows[1:]) == pytest.approx(
        next(
            r["ppl"]
            for r in rows[1:]
            if (r["k"], r["temperature"], r["weight"]) == (best.k, best.temperature, best.weight)
        )
    )
    assert max(r["k"] for r in rows) == memory.settings.size  # None = every stored state
    assert decoder.config.memory == best.to_dict() and decoder.memory.settings == best
    # recalling the stored recipes themselves beats the decoder alone
    assert min(r["ppl"] for r in rows[1:]) < rows[0]["ppl"]
    # the tuning's closed form equals the decoder's own perplexity with the memory
    states, words, logp = decoder_states(decoder, recipes, features)
    nll = mixture_nll(decoder.memory, states, words, logp, best)
    assert math.exp(nll) == pytest.approx(
        text_eval(decoder, recipes, features).compute()["ppl"], rel=1e-4
    )


def test_cached_float_keys_follow_new_contents():
    memory, states, words = _filled(k=3, temperature=0.01, weight=0.9)
    memory(states[:2], torch.zeros(2, 10))  # fills the float-key cache
    other, _, _ = _filled(size=50)
    other.fill(states.flip(0), words.flip(0))
    memory.load_state_dict(other.state_dict())  # in place: the cache must not survive it
    keys, key_sq = memory.float_keys()
    torch.testing.assert_close(keys, other.dequantised_keys())
    torch.testing.assert_close(key_sq, (keys * keys).sum(0))
    g = torch.Generator().manual_seed(3)
    hidden, logits = torch.randn(5, 8, generator=g), torch.randn(5, 10, generator=g)
    got = torch.log_softmax(memory(hidden, logits), -1)
    # the formula over the new buffers (this memory's own k, temperature and weight)
    torch.testing.assert_close(got.double(), _reference(memory, hidden, logits), atol=1e-4, rtol=0)
