"""Card helpers shared by the PyTorch and ONNX Runtime cook paths."""

from __future__ import annotations

import numpy as np

from beyondvis.recipes.generation.card import (
    IngredientIndex,
    card_ingredients,
    detokenize,
    finished_steps,
)

EOS, EOI = 2, 3


def test_a_step_cut_by_the_length_limit_is_dropped():
    steps = [[5, 6], [7, 8]]
    assert finished_steps(steps, [4, EOI, 5, 6, EOI, 7, 8], EOS, EOI) == [[5, 6]]
    assert finished_steps(steps, [4, EOI, 5, 6, EOI, 7, 8, EOI, EOS], EOS, EOI) == steps
    assert finished_steps(steps, [4, EOI, 5, 6, EOI, 7, 8, EOI], EOS, EOI) == steps
    assert finished_steps([[5, 6]], [4, EOI, 5, 6], EOS, EOI) == [[5, 6]]  # keep the only one


def test_card_ingredients_list_staples_last_and_read_as_words():
    names = ["salt", "white_pepper", "star_anise"]
    rows = card_ingredients(names, {"salt"}, [0, 1, 2], np.array([0.99, 0.5, 0.7]))
    assert [r["name"] for r in rows] == ["star anise", "white pepper", "salt"]
    assert [r["staple"] for r in rows] == [False, False, True]


def test_detokenize_and_ingredient_index():
    assert detokenize(["add", "salt", ",", "stir", "."]) == "Add salt, stir."
    index = IngredientIndex(np.array([[0, 1], [2, -1]]), 3, ["a", "b"], ["A", "B"])
    hits = index.search(np.array([0.0, 0.0, 1.0]), 2)
    assert [h["id"] for h in hits] == ["b", "a"] and hits[0]["score"] > hits[1]["score"]
