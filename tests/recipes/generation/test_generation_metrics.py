"""Chapter-9 metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from beyondvis.recipes.generation import (
    IngredientMatcher,
    IngredientSetMetrics,
    MentionMetrics,
    PerplexityMeter,
    perplexity,
    to_multi_hot,
)
from beyondvis.recipes.generation.metrics import word_key


def test_ingredient_set_metrics_accumulate_over_batches():
    m = IngredientSetMetrics(num_labels=5, topk=(1, 2))
    m.update(
        to_multi_hot([[0, 1], [2]], 5),
        to_multi_hot([[0], [2, 3]], 5),
        scores=torch.tensor([[0.9, 0.8, 0.1, 0.0, 0.0], [0.1, 0.2, 0.9, 0.3, 0.0]]),
    )
    m.update(to_multi_hot([[0]], 5), to_multi_hot([[]], 5), scores=torch.eye(5)[:1])
    out = m.compute()
    # TP = 2, FP = 2 (class 1 in row 0, class 0 in row 2), FN = 1 (class 3 in row 1).
    assert out["iou"] == pytest.approx(2 / 5)
    assert out["f1"] == out["o_f1"] == pytest.approx(4 / 7)
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["card_err"] == pytest.approx(1.0) and out["card_err_std"] == pytest.approx(0)
    assert out["pred_size"] == pytest.approx(4 / 3)
    assert out["pred_size_std"] == pytest.approx(math.sqrt(2 / 9))
    # P@1: hits 1, 1, 0 of 1; P@2: 1, 2, 0 of 2.
    assert out["p@1"] == pytest.approx(2 / 3)
    assert out["p@2"] == pytest.approx(0.5)
    per_ingredient = m.per_ingredient_f1()
    np.testing.assert_allclose(per_ingredient[:4], [2 / 3, 0.0, 1.0, 0.0])
    assert math.isnan(per_ingredient[4])  # never predicted, never present


def test_set_metrics_validation():
    m = IngredientSetMetrics(3)
    with pytest.raises(ValueError):
        m.compute()
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        m.update(torch.zeros(2, 4, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="label outside"):
        to_multi_hot([[3]], 3)
    with pytest.raises(ValueError, match="num_labels"):
        IngredientSetMetrics(0)


def test_perplexity_corpus_and_per_recipe():
    pad = 2
    # Every position predicts word 0 with p=0.25 and word 1 with p=0.75 (pad gets ~0).
    logits = torch.tensor([0.0, math.log(3.0), -1e9]).expand(2, 2, 3)
    targets = torch.tensor([[1, 1], [0, pad]])
    meter = PerplexityMeter()
    meter.update(logits[:1], targets[:1], pad)
    meter.update(logits[1:], targets[1:], pad)
    out = meter.compute()
    assert out["ppl"] == pytest.approx((0.75 * 0.75 * 0.25) ** (-1 / 3), rel=1e-5)
    assert out["ppl_per_recipe"] == pytest.approx((1 / 0.75 + 4.0) / 2, rel=1e-5)
    assert perplexity(3 * math.log(8), 3) == pytest.approx(8.0)
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


def test_word_key_joins_singular_and_plural():
    for a, b in [
        ("tomatoes", "tomato"),
        ("berries", "berry"),
        ("cheeses", "cheese"),
        ("peaches", "peach"),
        ("glasses", "glass"),
        ("leaves", "leaf"),
        ("Eggs", "egg"),
    ]:
        assert word_key(a) == word_key(b), (a, b)
    assert word_key("asparagus") == "asparagus"
    assert word_key("swiss") == "swiss"


VOCAB = {
    "olive_oil": ["olive oil", "virgin olive oil"],
    "oil": ["oil"],
    "tomato": [],
    "salt": [],
    "pepper": ["black pepper"],
}


def test_matcher_prefers_longest_forms_and_handles_plurals():
    matcher = IngredientMatcher(VOCAB)
    words = "Heat the virgin olive oil , add Tomatoes and black pepper .".split()
    assert matcher.find(words) == {"olive_oil", "tomato", "pepper"}
    assert matcher.find(["oil", "and", "salt"]) == {"oil", "salt"}
    assert matcher.find([]) == set()
    assert IngredientMatcher(["olive_oil", "salt"]).find("olive oil".split()) == {"olive_oil"}
    with pytest.raises(ValueError, match="empty"):
        IngredientMatcher([])


def test_mention_precision_recall():
    metric = MentionMetrics(IngredientMatcher(VOCAB))
    found = metric.update(
        "heat olive oil , add tomatoes and black pepper".split(), ["olive_oil", "salt", "tomato"]
    )
    assert found == {"olive_oil", "tomato", "pepper"}
    metric.update(["add", "oil"], ["oil", "salt"])
    out = metric.compute()
    assert out["precision"] == pytest.approx(3 / 4)
    assert out["recall"] == pytest.approx(3 / 5)
    assert out["precision_per_recipe"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["recall_per_recipe"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_mention_metrics_accept_any_matching_function():
    metric = MentionMetrics(lambda words: [w for w in words if w in {"salt", "egg"}])
    assert metric.update(["add", "salt", "and", "salt"], ["salt", "flour"]) == {"salt"}
    assert metric.compute()["precision"] == 1.0 and metric.compute()["recall"] == 0.5
