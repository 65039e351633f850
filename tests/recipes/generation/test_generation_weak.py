"""Weak labels from dish names: which text recipes name a dish, and what they share."""

from __future__ import annotations

from beyondvis.recipes.generation.weak import names_dish, weak_ingredients

CORPUS = [
    ("Grandma's Apple Pie", [1, 2, 3, 4]),
    ("Easy apple pies", [1, 2, 3, 5]),
    ("Apple Pie with Streusel", [1, 2, 6]),
    ("Pie crust", [2, 7]),  # names "pie" only: not an apple pie
    ("Apple crumble", [1, 8]),  # names "apple" only
    ("Steak tartare", [9, 10, 11]),
    ("Tuna tartare", [12, 10]),
]


def test_names_dish_is_word_and_plural_insensitive():
    assert names_dish("Easy apple pies", "apple pie")
    assert names_dish("BEIGNETS", "beignets") and names_dish("Beignet", "beignets")
    assert not names_dish("Pineapple pie", "apple pie")  # words, not substrings
    assert not names_dish("Apple crumble", "apple pie")
    assert not names_dish("anything", "")


def test_weak_ingredients_keep_what_the_dish_recipes_share():
    w = weak_ingredients("apple pie", CORPUS, min_share=0.5, min_size=1)
    assert w.rule == "full name" and w.matched_recipes == 3
    # 1 and 2 in all three, 3 in two of three (>= 0.5); 4, 5, 6 in one only
    assert w.ingredients == [1, 2, 3]


def test_weak_ingredients_min_and_max_size():
    w = weak_ingredients("apple pie", CORPUS, min_share=1.0, min_size=4)
    assert w.ingredients[:2] == [1, 2] and len(w.ingredients) == 4
    w = weak_ingredients("apple pie", CORPUS, min_share=0.0, max_size=2)
    assert w.ingredients == [1, 2]


def test_weak_ingredients_fall_back_to_the_last_word_then_to_nothing():
    w = weak_ingredients("beef tartare", CORPUS, min_share=0.6, min_size=1)
    assert w.rule == "last word" and w.matched_recipes == 2 and w.ingredients == [10]
    w = weak_ingredients("bibimbap", CORPUS)
    assert w.rule == "none" and w.ingredients == [] and w.matched_recipes == 0
