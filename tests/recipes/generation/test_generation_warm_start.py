"""Growing the instruction vocabulary (Food-101 dish words) and warm-starting a decoder on it."""

from __future__ import annotations

import pytest
import torch
from helpers_generation import tiny_config, tiny_decoder, tiny_inputs

from beyondvis.engine import save_checkpoint
from beyondvis.recipes.generation.constraints import never_generated_ids
from beyondvis.recipes.generation.data import (
    GenRecipe,
    add_dish_words,
    add_text_start,
    mark_text_style,
)
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


def test_warm_start_can_start_a_new_row_as_a_copy_of_an_old_one(tmp_path):
    old = tiny_decoder(seed=0)
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"model": old.state_dict()})
    from beyondvis.recipes.generation import InstructionDecoder

    new = InstructionDecoder(tiny_config(vocab_size=42))
    fresh = new.word_embed.weight[41].detach().clone()
    bos = old.config.special.bos
    warm_start(new, path, copy_rows={40: bos, 5: 6})  # 5 is an old row: not overwritten
    assert torch.equal(new.word_embed.weight[40], old.word_embed.weight[bos])
    assert torch.equal(new.out_proj.bias[40], old.out_proj.bias[bos])
    assert torch.equal(new.word_embed.weight[41], fresh)
    assert torch.equal(new.word_embed.weight[5], old.word_embed.weight[5])


def test_warm_start_refuses_other_shapes(tmp_path):
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"model": tiny_decoder(d_model=48, num_heads=4).state_dict()})
    with pytest.raises(ValueError, match="shape"):
        warm_start(tiny_decoder(), path)


def test_text_style_marks_other_sources_and_is_never_generated():
    vocab = Vocabulary(["soup", "stir"])
    start = vocab.stoi["<start>"]
    text_start = add_text_start(vocab)
    assert vocab.itos[-1] == "<start_text>" and add_text_start(vocab) == text_start
    assert never_generated_ids(vocab.itos) == [vocab.stoi["<unk>"], text_start]

    def rec(origin, images=(), source="recipe1m", partition="train"):
        return GenRecipe("r", "t", partition, [], [start, 9, 3], list(images), [], source, origin)

    recipes = [
        rec("pdr", images=[0]),  # photo recipe: its source is the cards' style
        rec("pdr"),  # text recipe of that source
        rec("epi"),  # another source
        rec("grand", images=[1], partition="val"),  # a photo keeps <start>; val sets no style
        rec("grand"),  # so grand's text recipes are marked
        rec("", source="recipe1m"),  # unknown origin: left alone
        rec("", images=[2], source="food101"),  # weakly labelled photo: a card's style
    ]
    assert mark_text_style(recipes, text_start) == 2
    firsts = [r.tokens[0] for r in recipes]
    assert firsts == [start, start, text_start, start, text_start, start, start]
    assert all(r.tokens[1:] == [9, 3] for r in recipes)


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
