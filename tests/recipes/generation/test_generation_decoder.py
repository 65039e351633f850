"""Instruction decoder: fusion shapes, causal and padding masks, cached == uncached."""

from __future__ import annotations

import pytest
import torch
from helpers_generation import SPECIAL, inputs_for, tiny_config, tiny_decoder, tiny_inputs

from beyondvis.recipes.generation import (
    FUSIONS,
    DecoderConfig,
    InstructionDecoder,
    greedy_decode,
    sequence_nll,
)

FUSION_NAMES = ["concat", "independent", "seq_img_first", "seq_ingr_first"]
CONDITION_SETS = [("image", "ingredients"), ("image",), ("ingredients",)]


def test_registry_lists_the_four_fusions():
    assert FUSIONS.names() == sorted(FUSION_NAMES)
    with pytest.raises(KeyError, match="unknown fusion strategy"):
        tiny_decoder(fusion="nope")


@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("conditions", CONDITION_SETS)
def test_shapes_and_finite(fusion, conditions):
    dec = tiny_decoder(fusion=fusion, conditions=conditions)
    image, ingredients, words = tiny_inputs()
    logits = dec(words, **inputs_for(dec, image, ingredients))
    assert logits.shape == (3, 9, 40)
    assert torch.isfinite(logits).all()  # the empty ingredient set (row 1) must not give NaN


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_no_peeking_at_future_words(fusion):
    dec = tiny_decoder(fusion=fusion)
    image, ingredients, words = tiny_inputs()
    before = dec(words, image, ingredients)
    changed = words.clone()
    changed[:, 5] = (changed[:, 5] + 7) % 36 + 4
    after = dec(changed, image, ingredients)
    torch.testing.assert_close(after[:, :5], before[:, :5], atol=1e-6, rtol=0)
    assert not torch.allclose(after[:, 5:], before[:, 5:], atol=1e-4)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_padded_and_after_eos_ingredients_are_ignored(fusion):
    dec = tiny_decoder(fusion=fusion)
    image, ingredients, words = tiny_inputs()
    base = dec(words, image, ingredients)
    # Row 0 is [a, b, c, d, eos, pad]: whatever sits after eos must not matter.
    after_eos = ingredients.clone()
    after_eos[0, 5] = 17
    torch.testing.assert_close(dec(words, image, after_eos), base, atol=1e-6, rtol=0)
    # Extra padding columns change nothing either.
    padded = torch.cat([ingredients, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(dec(words, image, padded), base, atol=1e-5, rtol=0)
    # But a real ingredient does matter.
    other = ingredients.clone()
    other[0, 0] = 3 if int(other[0, 0]) != 3 else 4
    assert not torch.allclose(dec(words, image, other)[0], base[0], atol=1e-4)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_ingredient_order_does_not_matter(fusion):
    dec = tiny_decoder(fusion=fusion)
    image, ingredients, words = tiny_inputs()
    permuted = ingredients.clone()
    permuted[0, :4] = ingredients[0, :4].flip(0)
    torch.testing.assert_close(dec(words, image, permuted), dec(words, image, ingredients))


def test_fusions_differ_and_sequential_orders_differ():
    image, ingredients, words = tiny_inputs()
    outs = {}
    for name in FUSION_NAMES:
        dec = tiny_decoder(fusion=name)
        outs[name] = dec(words, image, ingredients)
    sizes = {n: sum(p.numel() for p in tiny_decoder(fusion=n).parameters()) for n in FUSION_NAMES}
    assert sizes["seq_img_first"] == sizes["seq_ingr_first"] > sizes["independent"]
    assert sizes["independent"] > sizes["concat"]
    # Same seed, same parameter shapes: only the attention order differs.
    assert not torch.allclose(outs["seq_img_first"], outs["seq_ingr_first"], atol=1e-4)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_every_parameter_gets_a_gradient(fusion):
    """No unused parameters, so DDP runs without find_unused_parameters."""
    dec = tiny_decoder(fusion=fusion).train()
    image, ingredients, words = tiny_inputs()
    targets = torch.roll(words, -1, dims=1)
    loss, nll, count = sequence_nll(dec(words, image, ingredients), targets, SPECIAL.pad, 0.1)
    loss.backward()
    missing = [n for n, p in dec.named_parameters() if p.grad is None]
    assert not missing
    assert count == targets.numel() and nll.item() > 0


@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("conditions", CONDITION_SETS)
def test_cached_steps_equal_full_forward(fusion, conditions):
    dec = tiny_decoder(fusion=fusion, conditions=conditions)
    image, ingredients, words = tiny_inputs()
    kwargs = inputs_for(dec, image, ingredients)
    full = dec(words, **kwargs)
    state = dec.start(**kwargs)
    # A multi-word first step (prompt) and then one word at a time.
    parts = [dec.step(state, words[:, :4])]
    parts += [dec.step(state, words[:, i : i + 1]) for i in range(4, words.shape[1])]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)
    assert state.length == words.shape[1]


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_cached_greedy_equals_uncached_greedy(fusion):
    dec = tiny_decoder(fusion=fusion)
    image, ingredients, _ = tiny_inputs()
    cached = greedy_decode(dec, image, ingredients, min_len=10)
    plain = greedy_decode(dec, image, ingredients, min_len=10, use_cache=False)
    assert cached.sequences() == plain.sequences()
    torch.testing.assert_close(cached.scores, plain.scores, atol=1e-5, rtol=0)


def test_image_maps_of_any_size_and_pooled_vectors():
    dec = tiny_decoder(conditions=("image",))
    _, _, words = tiny_inputs()
    for shape in [(3, 12, 7, 7), (3, 12, 1, 5), (3, 12)]:
        assert dec(words, image_features=torch.randn(shape)).shape == (3, 9, 40)


def test_wrong_inputs_are_refused():
    dec = tiny_decoder(conditions=("image",))
    image, ingredients, words = tiny_inputs()
    with pytest.raises(ValueError, match="ignores ingredients"):
        dec(words, image, ingredients)
    with pytest.raises(ValueError, match="conditioned on image"):
        dec(words)
    full = tiny_decoder()
    with pytest.raises(ValueError, match="batch sizes differ"):
        full(words, image, ingredients[:2])
    with pytest.raises(ValueError, match="ingredient ids"):
        full(words, image, ingredients + 100)
    with pytest.raises(ValueError, match="exceeds max_len"):
        full(torch.ones(3, 30, dtype=torch.long), image, ingredients)


def test_config_validation_and_round_trip():
    cfg = tiny_config(conditions=["ingredients"])
    again = DecoderConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.conditions == ("ingredients",)
    assert InstructionDecoder(again).config.head_dim == 8
    thesis = DecoderConfig(vocab_size=100, special=SPECIAL, num_ingredients=10)
    assert (thesis.num_layers, thesis.num_heads, thesis.head_dim) == (8, 16, 32)
    with pytest.raises(ValueError, match="divisible"):
        tiny_config(d_model=30)
    with pytest.raises(ValueError, match="subset"):
        tiny_config(conditions=("text",))
    with pytest.raises(ValueError, match="num_ingredients"):
        tiny_config(num_ingredients=0)
    with pytest.raises(ValueError, match="exceed vocab_size"):
        tiny_config(vocab_size=3)
    with pytest.raises(ValueError, match="unknown DecoderConfig"):
        DecoderConfig.from_dict({**cfg.to_dict(), "colour": 1})


def test_overfits_one_recipe_and_greedy_reproduces_it():
    """The whole path learns: a few Adam steps on one recipe, then greedy decoding returns it."""
    dec = tiny_decoder(dropout=0.0).train()
    image, ingredients, _ = tiny_inputs(batch=1)
    target = torch.tensor([[5, 6, SPECIAL.eoi, 7, 8, 9, SPECIAL.eoi, 10, SPECIAL.eoi, SPECIAL.eos]])
    inputs = torch.cat([torch.tensor([[SPECIAL.bos]]), target[:, :-1]], dim=1)
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        loss, _, _ = sequence_nll(dec(inputs, image, ingredients), target, SPECIAL.pad)
        loss.backward()
        opt.step()
    dec.eval()
    assert greedy_decode(dec, image, ingredients).sequences() == target.tolist()
