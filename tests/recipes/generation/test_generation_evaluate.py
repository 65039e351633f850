"""Card measures of ``beyondvis generation evaluate`` on hand-made cards."""

from __future__ import annotations

import pytest

from beyondvis.recipes.generation.evaluate import (
    Card,
    Photo,
    content_words,
    distinct_ngram_ratio,
    distinct_ngram_ratio_across,
    interleave,
    most_frequent,
    reference_ingredients,
    repeated_steps,
    repeated_title_words,
    set_prf,
    shares_content_word,
    steps_naming,
    summarize,
    title_names_dish,
    without_staples,
)
from beyondvis.recipes.generation.metrics import IngredientMatcher
from beyondvis.recipes.pipeline.ingredients import IngredientVocabulary


def test_title_names_dish_is_case_and_plural_insensitive():
    assert title_names_dish("Easy Apple Pies", "apple pie")
    assert title_names_dish("Sticky baby-back rib", "baby back ribs")
    assert not title_names_dish("Apple crumble", "apple pie")
    assert not title_names_dish("Pie", "apple pie")
    assert title_names_dish("Beignets", "beignets")
    assert not title_names_dish("", "bibimbap")


def test_content_word_overlap_ignores_stop_words_and_plurals():
    assert content_words("The Best Chicken Curries with Rice") == {
        "chicken",
        "curri",
        "ric",
    }  # word_key stems
    assert shares_content_word("Chicken curry", "Curried chicken thighs")  # chicken
    assert shares_content_word("Tomato soup", "Roasted tomatoes")
    assert not shares_content_word("Easy soup with rice", "The best pie with apples")
    assert not shares_content_word("Soup", "")


def test_repeated_title_words():
    assert repeated_title_words("Whole whole whole wheat wheat wheat") == 4
    assert repeated_title_words("Egg eggs") == 1  # plural of the same word
    assert repeated_title_words("Beef goulash") == 0


def test_repeated_steps_ignore_case_and_punctuation():
    steps = [
        "Add the water, and cook for 5 minutes.",
        "Add the water and cook for 5 minutes",
        "add the water and cook for 10 minutes.",
        "ADD THE WATER, AND COOK FOR 5 MINUTES!",
    ]
    assert repeated_steps(steps) == 2
    assert repeated_steps(["Boil.", "Serve."]) == 0
    assert repeated_steps([]) == 0


def test_distinct_ngram_ratio_within_and_across_cards():
    # card 1: "a b c d e" has 2 distinct 4-grams; card 2 loops: "x y z w x y z w" has
    # 5 four-grams of which 4 distinct; repeating the step adds 5 more, none new.
    card1 = ["a b c d e"]
    card2 = ["x y z w x y z w", "x y z w x y z w"]
    assert distinct_ngram_ratio([card1], 4) == 1.0
    assert distinct_ngram_ratio([card2], 4) == pytest.approx(4 / 10)
    assert distinct_ngram_ratio([card1, card2], 4) == pytest.approx((2 + 4) / (2 + 10))
    # n-grams do not span steps; short steps have none
    assert distinct_ngram_ratio([["a b c", "d e f"]], 4) == 1.0
    # across cards the same phrase in two cards counts once
    assert distinct_ngram_ratio_across([card1, card1], 4) == pytest.approx(2 / 4)
    assert distinct_ngram_ratio([card1, card1], 4) == 1.0


def test_set_prf_and_staples_split():
    pred = [["salt", "beef", "paprika"], ["sugar", "apple"]]
    ref = [["salt", "beef", "onion"], ["apple", "cinnamon", "butter"]]
    m = set_prf(pred, ref)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 2, 3)
    assert m["precision"] == pytest.approx(3 / 5) and m["recall"] == pytest.approx(3 / 6)
    assert m["f1"] == pytest.approx(6 / 11)
    staples = ["salt", "sugar", "butter", "onion"]
    assert without_staples(pred[0], staples) == ["beef", "paprika"]
    ns = set_prf(
        [without_staples(p, staples) for p in pred], [without_staples(r, staples) for r in ref]
    )
    assert (ns["tp"], ns["fp"], ns["fn"]) == (2, 1, 1)
    assert set_prf([[]], [[]])["f1"] == 0.0
    with pytest.raises(ValueError):
        set_prf([[]], [])


def test_most_frequent_baseline_skips_excluded():
    ranked = ["salt", "oil", "onion", "garlic", "tomato"]
    assert most_frequent(ranked, 2) == ["salt", "oil"]
    assert most_frequent(ranked, 2, exclude=["salt", "oil"]) == ["onion", "garlic"]
    assert most_frequent(ranked, 0) == []


def test_steps_naming_a_predicted_ingredient():
    find = IngredientMatcher(["olive_oil", "oil", "tomato", "basil"]).find
    steps = ["Heat the olive oil.", "Add the tomatoes.", "Serve with basil.", "Stir well."]
    assert steps_naming(steps, ["olive_oil", "tomato"], find) == 2
    assert steps_naming(steps, ["oil"], find) == 0  # "olive oil" is olive oil, not oil


def test_reference_ingredients_from_lines_keep_multi_word_names():
    vocab = IngredientVocabulary(["olive_oil", "salt", "tomato", "white_pepper"], {}, {})
    lines = ["2 tbsp olive oil", "3 ripe tomatoes, chopped", "1 tsp salt", "white pepper"]
    assert reference_ingredients(vocab, lines) == ["olive_oil", "tomato", "salt", "white_pepper"]


def test_interleave_takes_every_group_first():
    photos = [Photo(f"{g}{i}", g) for g in "ab" for i in range(3)] + [Photo("c0", "c")]
    assert [p.path for p in interleave(photos)] == ["a0", "b0", "c0", "a1", "b1", "a2", "b2"]


def _cards():
    return [
        Card(
            "1.jpg",
            "Beef goulash",
            ["salt", "beef", "paprika"],
            ["Brown the beef.", "Add paprika and salt.", "Brown the beef."],
            seconds=0.5,
            reference_title="Hungarian Beef Goulash",
            reference_ingredients=["salt", "beef", "onion"],
        ),
        Card(
            "2.jpg",
            "Chicken chicken",
            ["sugar", "apple"],
            ["Bake the apple for ten minutes in the oven.", "Serve."],
            seconds=1.5,
            reference_title="Apple pie",
            reference_ingredients=["apple", "cinnamon", "butter"],
        ),
    ]


def test_summarize_recipe1m_style_cards():
    ranked = ["salt", "sugar", "butter", "onion", "apple", "beef", "cinnamon"]
    out = summarize(
        _cards(), staples=["salt", "sugar", "butter", "onion"], ranked_vocabulary=ranked
    )
    ing = out["ingredients"]
    assert ing["model"]["all"]["f1"] == pytest.approx(6 / 11)
    assert ing["model"]["all"]["mean_size"] == 2.5
    assert ing["model"]["without_staples"]["mean_size"] == 1.5
    base = ing["most_frequent_baseline"]
    # K = round(2.5) = 2 with staples (banker's rounding), round(1.5) = 2 without
    assert base["all"]["names"] == ["salt", "sugar"] and base["all"]["tp"] == 1
    assert base["without_staples"]["names"] == ["apple", "beef"]
    assert (base["without_staples"]["tp"], base["without_staples"]["fp"]) == (2, 2)
    t = out["titles"]
    assert t["names_dish"] is None
    assert t["shares_content_word"] == {"share": 0.5, "count": 1}
    assert t["distinct"] == 2 and t["repeating_a_word"] == 1
    s = out["steps"]
    assert s["total"] == 5 and s["cards_with_repeated_step"] == 1 and s["repeated_steps"] == 1
    # steps naming one of their card's predicted ingredients: 3 of card 1, 1 of card 2
    assert s["naming_a_predicted_ingredient"] == {"share": 4 / 5, "count": 4}
    assert s["distinct_4gram_ratio"] == pytest.approx(6 / 6)  # only card 2's step has 4-grams
    assert out["seconds_per_card"] == {"mean": 1.0, "median": 1.0, "cpu_mean": 0.0}


def test_summarize_food101_style_cards():
    cards = [
        Card("a.jpg", "Apple pie", [], ["Bake."], dish="apple pie", reference_title="apple pie"),
        Card("b.jpg", "Apple tart", [], [], dish="apple pie", reference_title="apple pie"),
        Card("c.jpg", "Bibimbap bowl", [], [], dish="bibimbap", reference_title="bibimbap"),
    ]
    out = summarize(cards)
    assert out["ingredients"] is None
    assert out["titles"]["names_dish"]["count"] == 2
    assert out["titles"]["shares_content_word"]["count"] == 3
    assert out["titles"]["by_dish"] == {
        "apple pie": {"cards": 2, "names_dish": 1},
        "bibimbap": {"cards": 1, "names_dish": 1},
    }
    assert out["steps"]["naming_a_predicted_ingredient"]["share"] == 0.0
