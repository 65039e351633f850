"""Growing the instruction vocabulary (Food-101 dish words) and warm-starting a decoder on it."""

from __future__ import annotations

import pytest
import torch
from helpers_generation import tiny_config, tiny_decoder, tiny_inputs

from beyondvis.engine import save_checkpoint
from beyondvis.recipes.generation.data import GenRecipe, add_dish_words
from beyondvis.recipes.generation.training import cap_weak_items, warm_start
from beyondvis.recipes.pipeline.text import Vocabulary


def test_extend_appends_and_keeps_every_old_id():
    vocab = Vocabulary(["beef", "pie"])
    before = dict(vocab.stoi)
    assert vocab.extend(["beef", "tartare", "tartare", "bibimbap"]) == ["tartare", "bibimbap"]
    assert all(vocab.stoi[w] == i for w, i in before.items())
    assert vocab.itos[-2:] == ["tartare", "bibimbap"]


def test_add_dish_words_reads_the_food101_class_list(tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "classes.txt").write_text("apple_pie\nbeef_tartare\nbibimbap\n")
    vocab = Vocabulary(["apple", "pie", "beef"])
    assert add_dish_words(vocab, tmp_path) == ["tartare", "bibimbap"]
    assert add_dish_words(vocab, tmp_path) == []  # idempotent


def test_warm_start_copies_old_rows_and_keeps_new_ones(tmp_path):
    old = tiny_decoder(seed=0)
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"model": old.state_dict()})
    torch.manual_seed(5)
    from beyondvis.recipes.generation import InstructionDecoder

    new = InstructionDecoder(tiny_config(vocab_size=43))
    fresh_rows = new.word_embed.weight[40:].detach().clone()
    grown = warm_start(new, path)
    assert "word_embed.weight" in grown
    assert torch.equal(new.word_embed.weight[:40], old.word_embed.weight)
    assert torch.equal(new.word_embed.weight[40:], fresh_rows)
    # same outputs as the old decoder on the old words (the new rows only add logits)
    image, ingredients, words = tiny_inputs()
    new.eval()
    with torch.no_grad():
        a = old(words, image, ingredients)
        b = new(words, image, ingredients)
    assert torch.allclose(a, b[..., :40], atol=1e-5)


def test_warm_start_refuses_other_shapes(tmp_path):
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"model": tiny_decoder(d_model=48, num_heads=4).state_dict()})
    with pytest.raises(ValueError, match="shape"):
        warm_start(tiny_decoder(), path)


def _recipe(title, source):
    return GenRecipe("x", title, "train", [], [], [0], [], source=source)


def test_cap_weak_items_caps_per_dish_and_keeps_recipe1m():
    items = (
        [_recipe("Pie", "food101")] * 3
        + [_recipe("Ribs", "food101")]
        + [_recipe("Cake", "recipe1m")] * 4
    )
    kept = cap_weak_items(items, 2)
    assert [r.title for r in kept].count("Pie") == 2
    assert [r.title for r in kept].count("Cake") == 4
    assert len(cap_weak_items(items, None)) == len(items)
    assert [r.source for r in cap_weak_items(items, 0)] == ["recipe1m"] * 4
