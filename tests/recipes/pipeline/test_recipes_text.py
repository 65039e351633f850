"""Tokenisation, vocabularies, ingredient extraction labels, vocabulary reduction, categories."""

from __future__ import annotations

from collections import Counter

import pytest

from beyondvis.recipes.pipeline.categories import (
    BACKGROUND,
    SemanticCategories,
    food101_classes,
    title_bigrams,
)
from beyondvis.recipes.pipeline.ingredients import (
    IngredientVocabulary,
    build_name_lexicon,
    label_line,
    normalize_name,
    reduce_vocabulary,
    tags_to_name,
)
from beyondvis.recipes.pipeline.text import (
    END,
    EOI,
    START,
    UNK,
    Vocabulary,
    build_instruction_vocab,
    recipe_tokens,
    tokenize,
)


def test_tokenize():
    assert tokenize("Bake 20-25 min. at 350°F!") == [
        "bake", "20", "-", "25", "min", ".", "at", "350", "°", "f", "!",
    ]  # fmt: skip
    assert tokenize("Add 1/2 cup of cook's butter") == [
        "add",
        "1/2",
        "cup",
        "of",
        "cook's",
        "butter",
    ]
    assert tokenize("") == []


def test_recipe_tokens_title_first_and_truncation():
    toks = recipe_tokens("Tomato Soup", ["Chop tomatoes.", "Boil."], max_len=150)
    assert toks == [
        START,
        "tomato",
        "soup",
        EOI,
        "chop",
        "tomatoes",
        ".",
        EOI,
        "boil",
        ".",
        EOI,
        END,
    ]
    short = recipe_tokens("Tomato Soup", ["Chop tomatoes.", "Boil."], max_len=5)
    assert short == [START, "tomato", "soup", EOI, END]
    with pytest.raises(ValueError):
        recipe_tokens("x", [], max_len=1)


def test_vocabulary_min_count_unk_and_roundtrip(tmp_path):
    vocab = build_instruction_vocab([("a b", ["a b c", "a"])], min_count=2)
    assert vocab.itos[:5] == ["<pad>", "<start>", "<end>", "<eoi>", "<unk>"]
    assert "a" in vocab and "b" in vocab and "c" not in vocab
    assert vocab.encode(["a", "c"]) == [vocab.stoi["a"], vocab.unk_id]
    assert vocab.decode(vocab.encode(["a", "zzz"])) == ["a", UNK]
    vocab.save(tmp_path / "v.json")
    again = Vocabulary.load(tmp_path / "v.json")
    assert again.itos == vocab.itos
    (tmp_path / "bad.json").write_text('{"itos": []}')
    with pytest.raises(ValueError):
        Vocabulary.load(tmp_path / "bad.json")


def test_normalize_name():
    assert normalize_name("  Extra-Virgin Olive Oil (cold pressed) ") == "extra_virgin_olive_oil"
    assert normalize_name("and lime wedges") == "lime_wedges"
    assert normalize_name("123") == ""


def test_labels_from_bare_names():
    lines = [
        "Olive oil",
        "olive oils",
        "Curry leaves",
        "curry leaves",
        "Salt",
        "salt",
        "2 cups rice",
    ]
    lexicon = build_name_lexicon(lines, min_count=2)
    assert ("olive", "oil") in lexicon and ("curry", "leave") in lexicon
    assert ("rice",) not in lexicon  # only seen with a quantity
    toks = tokenize("2 tbsp of olive oil")
    tags = label_line(toks, lexicon)
    assert tags == [0, 0, 0, 1, 1]
    assert tags_to_name(toks, tags) == "olive_oil"
    toks = tokenize("1 sprig curry leaves, torn")
    assert tags_to_name(toks, label_line(toks, lexicon)) == "curry_leaves"
    assert label_line(tokenize("3 eggs"), lexicon) is None


def test_reduction_merges_two_words_first_then_clusters_one_word():
    counts = Counter(
        {
            "cheddar_cheese": 5,
            "bacon_cheddar_cheese": 2,  # shares its last two words -> cheddar_cheese
            "cheese": 4,
            "gorgonzola_cheese": 3,  # shares its last word -> cheese
            "cheese_blend": 1,  # shares its first word -> cheese
            "olive_oil": 6,
            "extra_virgin_olive_oil": 4,  # last two words -> olive_oil
        }
    )
    mapping, kept, report = reduce_vocabulary(counts, min_count=1)
    assert mapping["extra_virgin_olive_oil"] == "olive_oil"
    assert mapping["gorgonzola_cheese"] == "cheese"
    assert mapping["cheese_blend"] == "cheese"
    # cheddar_cheese itself shares its last word with cheese, so the whole family ends there
    assert mapping["bacon_cheddar_cheese"] == "cheese" == mapping["cheddar_cheese"]
    assert kept == Counter({"cheese": 15, "olive_oil": 10})
    assert report.raw == 7
    assert report.after_merge_two_words == 5
    assert report.after_cluster_one_word == 2
    assert report.after_min_count == 2


def test_reduction_plurals_and_threshold():
    counts = Counter(
        {"egg": 3, "eggs": 8, "berries": 2, "berry": 1, "tomatoes": 2, "tomato": 9, "yuzu": 2}
    )
    mapping, kept, report = reduce_vocabulary(counts, min_count=3)
    assert mapping["eggs"] == "egg" and mapping["berries"] == "berry"
    assert mapping["tomatoes"] == "tomato"
    assert kept == Counter({"egg": 11, "tomato": 11, "berry": 3})
    assert "yuzu" not in mapping  # dropped: seen 2 < 3 times
    assert report.after_plurals == 4 and report.after_min_count == 3


def test_ingredient_vocabulary_roundtrip_and_text_matching(tmp_path):
    vocab, _ = IngredientVocabulary.from_counts(
        Counter({"olive_oil": 5, "garlic": 4, "chicken_breast": 3, "chicken": 3}),
        min_count=1,
        method="thesis",
    )
    vocab.save(tmp_path / "ingr.json")
    again = IngredientVocabulary.load(tmp_path / "ingr.json")
    assert again.names == vocab.names
    assert again.canonical("Olive Oil") == "olive_oil"
    assert again.canonical("chicken_breast") == "chicken"
    assert again.canonical("unobtainium") is None
    assert again.find_in_text("Roast chicken breast with garlic and olive oil") == [
        "chicken", "garlic", "olive_oil",
    ]  # fmt: skip
    assert again.encode(["garlic", "garlic", "nope"]) == [again.index["garlic"]]


def test_food101_and_categories(tmp_path):
    names = food101_classes()
    assert len(names) == 101 and "apple pie" in names and "fish and chips" in names
    titles = ["Chicken Salad"] * 3 + ["Best Chicken Salad Ever"] * 2 + ["Easy Pizza", "Apple Pie"]
    bigrams = dict(title_bigrams(titles, min_count=1))
    assert bigrams["chicken salad"] == 5
    assert "best chicken" not in bigrams and "easy pizza" not in bigrams
    cats = SemanticCategories.build(titles, min_bigram_count=2)
    assert cats.names[0] == BACKGROUND
    assert cats.names[cats.assign("Grandma's chicken salads")] == "chicken salad"
    assert cats.names[cats.assign("Homemade Pizza")] == "pizza"
    assert cats.assign("Glass of water") == 0
    cats.save(tmp_path / "c.json")
    again = SemanticCategories.load(tmp_path / "c.json")
    assert again.names == cats.names
    assert again.assign("Apple pie with cream") == cats.names.index("apple pie")
