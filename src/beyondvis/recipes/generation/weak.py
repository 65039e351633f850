"""Weak supervision from dish-labelled photos (Food-101 layout) for inverse cooking.

Food-101 photos carry a dish name and nothing else. Each one becomes a training item whose
**title** target is the dish name ("Apple pie": the decoder is taught only the title, its
steps are left to the text recipes) and whose **ingredient** targets are the ingredients shared
by the text training recipes whose titles name that dish (:func:`weak_ingredients`): what
"apple pie" recipes have in common, not what this photo shows. Dishes no text recipe names get
no ingredient targets, so they train the title only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[a-z]+")


def _key(word: str) -> str:
    """Plural-insensitive word key ("beignets" ~ "beignet", "ribs" ~ "rib")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def title_keys(title: str) -> set[str]:
    return {_key(w) for w in _WORD.findall(title.lower())}


def names_dish(title: str, dish: str) -> bool:
    """Whether ``title`` contains every word of ``dish`` (case- and plural-insensitive)."""
    dish_keys = title_keys(dish)
    return bool(dish_keys) and dish_keys <= title_keys(title)


@dataclass
class WeakLabels:
    """Ingredient targets of one dish and how they were found."""

    dish: str
    ingredients: list[int]
    matched_recipes: int
    rule: str  # "full name", "last word" or "none"


def weak_ingredients(
    dish: str,
    recipes: Iterable[tuple[str, Sequence[int]]],
    min_share: float = 0.3,
    min_size: int = 3,
    max_size: int = 12,
) -> WeakLabels:
    """Ingredients shared by the ``(title, ingredient ids)`` recipes that name ``dish``.

    An ingredient is kept when at least ``min_share`` of those recipes use it; the ``min_size``
    most frequent are kept in any case and at most ``max_size`` (most frequent first). When no
    title names the whole dish, recipes naming its last word are used ("tartare" for "beef
    tartare"); when none does either, the dish gets no ingredients.
    """
    recipes = list(recipes)
    rule = "full name"
    matched = [ids for title, ids in recipes if names_dish(title, dish)]
    words = _WORD.findall(dish.lower())
    if not matched and len(words) > 1:
        rule = "last word"
        matched = [ids for title, ids in recipes if names_dish(title, words[-1])]
    if not matched:
        return WeakLabels(dish, [], 0, "none")
    counts = Counter(i for ids in matched for i in dict.fromkeys(ids))
    ranked = sorted(counts, key=lambda i: (-counts[i], i))
    kept = [i for i in ranked if counts[i] >= min_share * len(matched)]
    if len(kept) < min_size:
        kept = ranked[:min_size]
    return WeakLabels(dish, kept[:max_size], len(matched), rule)
