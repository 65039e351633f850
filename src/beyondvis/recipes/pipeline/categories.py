"""Semantic categories for the regularisation loss (thesis section 8.1.4).

Categories = the Food-101 class names + the most frequent title bigrams of the training recipes
(top 2,000, without bigrams holding unwanted characters or non-food words such as "best pizza",
"super easy", "5 minutes"). A recipe gets the most frequent category found in its title, or the
background class 0.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from importlib import resources

from beyondvis.recipes.pipeline.text import tokenize
from beyondvis.utils import atomic_write_json
from beyondvis.utils.versioned import read_versioned_json

BACKGROUND = "<background>"
CATEGORIES_FORMAT_VERSION = 1

# Words that carry no food property: a bigram containing one is not a category.
NON_FOOD_WORDS = frozenset(
    """
    a an the and or of with in on for to from my your our his her best easy easiest quick quickest
    super simple simplest perfect perfectly ultimate favorite favourite famous classic recipe recipes
    style way ways minute minutes hour hours min mins day days night homemade home made make
    how good great amazing awesome delicious yummy tasty new old mom mom's grandma grandma's
    grandmother's aunt world's version
    """.split()
)


def food101_classes() -> list[str]:
    """The 101 Food-101 class names with spaces (``"apple pie"``)."""
    text = (
        resources.files("beyondvis")
        .joinpath("assets/recipes/food101_classes.txt")
        .read_text(encoding="utf-8")
    )
    return [line.strip().replace("_", " ") for line in text.splitlines() if line.strip()]


def _words(title: str) -> list[str]:
    return tokenize(title)


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def title_bigrams(
    titles: Iterable[str], top_k: int = 2000, min_count: int = 1
) -> list[tuple[str, int]]:
    """Most frequent food bigrams of ``titles`` (counted once per title), filtered as above."""
    counts: Counter = Counter()
    for title in titles:
        words = _words(title)
        bigrams = set()
        for a, b in zip(words, words[1:]):
            if not (a.isalpha() and b.isalpha()):  # unwanted characters: n', !, ?, digits
                continue
            if a in NON_FOOD_WORDS or b in NON_FOOD_WORDS:
                continue
            bigrams.add(f"{a} {b}")
        counts.update(bigrams)
    return [(bg, c) for bg, c in counts.most_common(top_k) if c >= min_count]


def _ngrams(words: Sequence[str], max_n: int = 5) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1)}


class SemanticCategories:
    """Category names (index 0 = background) and the title -> category rule."""

    def __init__(self, names: Sequence[str], frequency: dict[str, int]):
        if not names or names[0] != BACKGROUND:
            names = [BACKGROUND, *[n for n in names if n != BACKGROUND]]
        self.names = list(names)
        self.frequency = dict(frequency)
        self._phrase_id = {
            tuple(_singular(w) for w in name.split()): i
            for i, name in enumerate(self.names)
            if i > 0
        }
        self._max_n = max((len(p) for p in self._phrase_id), default=1)

    def __len__(self) -> int:
        return len(self.names)

    def assign(self, title: str) -> int:
        """Category id of a title: the most frequent category in it, else 0 (background)."""
        grams = _ngrams([_singular(w) for w in _words(title)], self._max_n)
        hits = [self._phrase_id[g] for g in grams if g in self._phrase_id]
        if not hits:
            return 0
        # Ties in frequency go to the longer (more specific) name, then to the lower id.
        return max(
            hits, key=lambda i: (self.frequency.get(self.names[i], 0), len(self.names[i]), -i)
        )

    @classmethod
    def build(
        cls,
        train_titles: Sequence[str],
        top_k_bigrams: int = 2000,
        min_bigram_count: int = 3,
        min_category_count: int = 1,
    ) -> SemanticCategories:
        """Food-101 names + title bigrams; frequency = number of training titles containing it.

        Categories seen in fewer than ``min_category_count`` training titles are dropped.
        """
        bigrams = [bg for bg, _ in title_bigrams(train_titles, top_k_bigrams, min_bigram_count)]
        names = list(dict.fromkeys([*food101_classes(), *bigrams]))
        present: Counter = Counter()
        for title in train_titles:
            present.update(_ngrams([_singular(w) for w in _words(title)]))
        freq = {n: present[tuple(_singular(w) for w in n.split())] for n in names}
        names = [n for n in names if freq[n] >= min_category_count]
        return cls([BACKGROUND, *names], {n: freq[n] for n in names})

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(
            path,
            {
                "format_version": CATEGORIES_FORMAT_VERSION,
                "names": self.names,
                "frequency": self.frequency,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> SemanticCategories:
        data = read_versioned_json(
            path, None, CATEGORIES_FORMAT_VERSION, what="categories file", exact=True,
            fix="rerun beyondvis recipes prepare",
        )  # fmt: skip
        return cls(data["names"], data["frequency"])
