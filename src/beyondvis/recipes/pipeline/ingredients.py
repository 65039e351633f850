"""Ingredient names: extraction from ingredient lines and the thesis' vocabulary reduction.

* :class:`RuleBasedExtractor` — ``ingredient-slicer``'s parser ("2 tbsp of olive oil" ->
  ``olive_oil``), the offline baseline.
* :func:`build_name_lexicon` / :func:`label_line` — training labels for the learned extractor,
  derived from the corpus itself: many recipes list bare ingredient names ("Curry leaves"); those
  names are then found (longest match) inside full lines ("1 sprig curry leaves, torn").
* :func:`reduce_vocabulary` — merge names sharing their first/last two words, cluster names
  sharing their first/last word, singularise plurals, drop rare names (thesis section 9.2).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from beyondvis.recipes.pipeline.text import tokenize
from beyondvis.utils import atomic_write_json
from beyondvis.utils.versioned import read_versioned_json

INGREDIENT_VOCAB_FORMAT_VERSION = 1

_PARENS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_NON_WORD = re.compile(r"[^a-z\s-]+")
# Words a name should not start or end with (leftovers of "x and y", "for serving", ...).
_EDGE_STOP = {"and", "or", "of", "for", "the", "a", "an", "to", "with", "plus", "more", "about"}


def normalize_name(name: str) -> str:
    """``" Olive  Oil "`` -> ``"olive_oil"`` (lower case, letters only, words joined by ``_``)."""
    text = _PARENS.sub(" ", name.lower())
    text = _NON_WORD.sub(" ", text.replace("-", " "))
    words = text.split()
    while words and words[0] in _EDGE_STOP:
        words.pop(0)
    while words and words[-1] in _EDGE_STOP:
        words.pop()
    return "_".join(words)


class RuleBasedExtractor:
    """Ingredient name from a line with ``ingredient_slicer.IngredientSlicer`` (its ``food``)."""

    def __init__(self) -> None:
        from ingredient_slicer import IngredientSlicer  # imported lazily: it is slow to import

        self._slicer = IngredientSlicer

    def __call__(self, line: str) -> str:
        try:
            food = self._slicer(line).to_json().get("food") or ""
        except Exception:  # the parser raises on odd input (empty, only numbers, ...)
            food = ""
        return normalize_name(food)

    def extract_many(self, lines: Iterable[str]) -> list[str]:
        return [self(line) for line in lines]


# ----------------------------------------------------------------------- tagger labels
_QUANTITY_HINT = re.compile(r"\d|½|¼|¾|⅓|⅔|⅛")


def is_bare_name(line: str, max_words: int = 4) -> bool:
    """A line that is just a name: no quantity, at most ``max_words`` words outside brackets."""
    if _QUANTITY_HINT.search(line):
        return False
    words = normalize_name(line).split("_")
    return 0 < len(words) <= max_words and words != [""]


def _descriptor_words() -> frozenset[str]:
    try:
        from ingredient_slicer import PREP_WORDS
    except ImportError:  # keep labelling usable without the optional parser
        PREP_WORDS = set()
    # "ground" names real ingredients (ground beef, ground cumin): keep it.
    return frozenset(w for w in PREP_WORDS if " " not in w) - {"ground"}


def strip_descriptors(words: Sequence[str], descriptors: frozenset[str]) -> list[str]:
    """Drop leading preparation words and adverbs: ``finely chopped fresh parsley`` -> ``parsley``."""
    words = list(words)
    while words and (words[0] in descriptors or (words[0].endswith("ly") and len(words[0]) > 4)):
        words.pop(0)
    return words


def build_name_lexicon(
    lines: Iterable[str], min_count: int = 2, max_words: int = 4
) -> dict[tuple[str, ...], int]:
    """Names that appear as bare ingredient lines at least ``min_count`` times, as tuples of
    singular word forms (so plural and singular occurrences count together)."""
    descriptors = _descriptor_words()
    counts: Counter = Counter()
    for line in lines:
        if is_bare_name(line, max_words):
            words = strip_descriptors(normalize_name(line).split("_"), descriptors)
            if words:
                counts[tuple(_singular(w) for w in words)] += 1
    return {name: c for name, c in counts.items() if c >= min_count}


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def label_line(
    tokens: Sequence[str], lexicon: dict[tuple[str, ...], int], max_words: int = 4
) -> list[int] | None:
    """Binary tags (1 = ingredient-name token) for the longest lexicon name in ``tokens``.

    ``lexicon`` comes from :func:`build_name_lexicon` (singular word forms), so plural and
    singular forms match each other. Ties in length go to the more frequent name, then to the
    later position (English names end with the head noun). ``None`` when nothing matches.
    """
    forms = [_singular(t) for t in tokens]
    best: tuple[int, int, int] | None = None  # (length, count, start)
    for n in range(min(max_words, len(tokens)), 0, -1):
        for start in range(len(tokens) - n + 1):
            count = lexicon.get(tuple(forms[start : start + n]))
            if count is not None:
                cand = (n, count, start)
                if best is None or cand > best:
                    best = cand
        if best is not None:
            break
    if best is None:
        return None
    n, _, start = best
    return [1 if start <= i < start + n else 0 for i in range(len(tokens))]


def tags_to_name(tokens: Sequence[str], tags: Sequence[int]) -> str:
    """The longest run of tagged word tokens, as a normalised name (``""`` if none)."""
    best: list[str] = []
    run: list[str] = []
    for tok, tag in zip(tokens, tags):
        if tag and re.fullmatch(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", tok):
            run.append(tok)
        else:
            if len(run) > len(best):
                best = run
            run = []
    if len(run) > len(best):
        best = run
    return normalize_name(" ".join(best))


# -------------------------------------------------------------------- vocabulary reduction
@dataclasses.dataclass
class ReductionReport:
    raw: int
    after_merge_two_words: int
    after_cluster_one_word: int
    after_plurals: int
    after_min_count: int
    min_count: int


def _candidates(words: list[str], n: int) -> list[str]:
    """First/last ``n``-word sub-names of a longer name (last first: the head noun is last)."""
    if len(words) <= n:
        return []
    return ["_".join(words[-n:]), "_".join(words[:n])]


def _resolve(mapping: dict[str, str], name: str) -> str:
    while mapping[name] != name:
        name = mapping[name]
    return name


def _plural_target(name: str, roots: set[str]) -> str | None:
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            cand = name[: -len(suffix)] + repl
            if cand != name and cand in roots:
                return cand
    return None


def reduce_vocabulary(
    counts: Counter | dict[str, int], min_count: int = 10
) -> tuple[dict[str, str], Counter, ReductionReport]:
    """The thesis' ingredient vocabulary reduction.

    1. merge a name into an existing name equal to its last or first two words
       (``bacon_cheddar_cheese`` -> ``cheddar_cheese``);
    2. cluster a name into an existing name equal to its last or first word
       (``gorgonzola_cheese``, ``cheese_blend`` -> ``cheese``);
    3. merge plurals into their singular (``eggs`` -> ``egg``, ``berries`` -> ``berry``);
    4. drop clusters seen fewer than ``min_count`` times.

    Returns ``(mapping raw name -> kept name, counts of kept names, report)``; raw names whose
    cluster was dropped are absent from the mapping.
    """
    counts = Counter({k: v for k, v in counts.items() if k})
    names = set(counts)
    mapping = {k: k for k in names}

    def stage(n: int) -> None:
        roots = {_resolve(mapping, k) for k in names}
        for name in sorted(roots, key=lambda s: (-s.count("_"), s)):
            for cand in _candidates(name.split("_"), n):
                if cand in roots and cand != name:
                    mapping[name] = _resolve(mapping, cand)
                    break

    stage(2)
    after_two = len({_resolve(mapping, k) for k in names})
    stage(1)
    roots = {_resolve(mapping, k) for k in names}
    after_one = len(roots)
    # Longest first, ties by name: a set's order changes with PYTHONHASHSEED.
    for name in sorted(roots, key=lambda s: (-len(s), s)):
        target = _plural_target(name, roots)
        if target is not None:
            mapping[name] = target
    final = {k: _resolve(mapping, k) for k in names}
    cluster_counts: Counter = Counter()
    for raw, root in final.items():
        cluster_counts[root] += counts[raw]
    after_plurals = len(cluster_counts)
    kept = Counter({k: v for k, v in cluster_counts.items() if v >= min_count})
    final = {raw: root for raw, root in final.items() if root in kept}
    report = ReductionReport(
        raw=len(names),
        after_merge_two_words=after_two,
        after_cluster_one_word=after_one,
        after_plurals=after_plurals,
        after_min_count=len(kept),
        min_count=min_count,
    )
    return final, kept, report


# ----------------------------------------------------- name-preserving reduction (default)
# Single words that are not ingredients on their own: what is left of "white pepper", "chili
# powder", "curry leaves", "all-purpose flour" or "at room temperature" once the thesis'
# one-word clustering has eaten the rest. They are never kept as names nor merged into.
FRAGMENT_WORDS = frozenset(
    "white black red green yellow brown golden dark light powder powdered seed leaf leave "
    "juice extract flake zest crumb chip strand wedge fillet breast stick piece slice cube "
    "paste sauce masala all purpose room temperature serving garnish taste needed optional "
    "sweet hot large small medium whole fresh dried dry ground extra virgin sea soda spray "
    "mix blend style sprig pod clove halve half baking seasoning".split()
)
# Words that say how an ingredient is bought or prepared, not which ingredient it is:
# "kosher salt" is salt, "unsalted butter" butter, "extra virgin olive oil" olive oil.
QUALIFIER_WORDS = frozenset(
    "kosher unsalted salted extra virgin fine coarse flaky lukewarm warm cold chilled ripe raw "
    "fresh freshly dried dry whole large small medium organic plain instant good quality "
    "nonstick cooking boneless skinless frozen thawed softened melted cooked uncooked "
    "homemade store bought lean finely roughly chopped minced sliced diced grated peeled "
    "crushed toasted roasted packed heaping level baby ground edible pinch dash handful few "
    "some bunch of".split()
)
# Words that end the name part of a raw name ("black pepper to taste", "oil for frying").
_NAME_END = {"to", "for", "as", "at", "into", "in", "plus"}
_SPLIT_WORDS = _NAME_END | {"and", "or", "with"}
# Pantry basics: still predicted, but a card lists the distinctive ingredients first.
STAPLES = frozenset(
    "salt black_pepper pepper oil olive_oil vegetable_oil sunflower_oil canola_oil water sugar "
    "butter flour all_purpose_flour white_sugar sea_salt".split()
)
_KEEP_FINAL_S = ("ss", "us", "is", "molasses", "asparagus", "hummus", "couscous")
_IRREGULAR = {"leaves": "leaf", "chillies": "chilli", "chilies": "chili", "cookies": "cookie"}
# A raw name with one of these words is a leftover of the line, not an ingredient.
_JUNK_WORDS = frozenset(
    "room temperature piece pieces taste serving garnish needed thermometer lengthwise torn "
    "skewer parchment paper mortar cooker pot pan bowl sheet foil toothpick available desired "
    "separated stemmed topping food specialty".split()
)


def _singular_word(word: str) -> str:
    if word.endswith(_KEEP_FINAL_S) or len(word) <= 3:
        return word
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith(("oes", "ches", "shes")) and len(word) > 4:  # tomatoes, peaches
        return word[:-2]
    return _singular(word)


def canonical_name(raw: str) -> str:
    """Plural-free, qualifier-free key of a raw name: ``extra_virgin_olive_oils`` ->
    ``olive_oil``, ``black_pepper_to_taste`` -> ``black_pepper``, ``salt_and_pepper`` ->
    ``salt``; ``""`` when nothing ingredient-like is left."""
    words = [w for w in raw.split("_") if w]
    if not words or words[0] in _NAME_END or _JUNK_WORDS.intersection(words):
        return ""
    for i, w in enumerate(words):
        if w in _NAME_END and i > 0:
            words = words[:i]
            break
    if "and" in words:
        words = words[: words.index("and")]
    words = [_singular_word(w) for w in words]
    if len(words) > 1 and words[-1] == "clove":  # "garlic cloves" is garlic, "cloves" a spice
        words = words[:-1]
    head = [w for w in words if w not in QUALIFIER_WORDS]
    # A name made only of qualifiers ("whole", "fresh") is not a name.
    words = head if head else []
    if len(words) == 1 and words[0] in FRAGMENT_WORDS:
        return ""
    return "_".join(words)


def reduce_vocabulary_names(
    counts: Counter | dict[str, int], min_count: int = 10
) -> tuple[dict[str, str], Counter, ReductionReport]:
    """Vocabulary reduction that keeps multi-word names ("white pepper", "star anise").

    1. every raw name goes to its :func:`canonical_name` (plurals, qualifiers, "to taste");
    2. a canonical name seen at least ``min_count`` times is kept as itself: frequent
       compounds are ingredients of their own, unlike the thesis' rule which clusters
       ``chili_powder`` into ``powder`` and ``star_anise`` into ``anise``;
    3. a rarer name goes to its longest kept sub-name, right-aligned first (the head noun is
       last: ``smoked_paprika`` -> ``paprika``), then left-aligned (``chicken_breast_half`` ->
       ``chicken_breast``); fragments (:data:`FRAGMENT_WORDS`) are never targets;
    4. what finds no target is dropped.

    Same return value as :func:`reduce_vocabulary`; the report's stages are canonical names
    (``after_merge_two_words``), kept names before merging rare ones (``after_cluster_one_word``),
    names after merging (``after_plurals``) and after the count threshold.
    """
    counts = Counter({k: v for k, v in counts.items() if k})
    canon = {raw: canonical_name(raw) for raw in counts}
    canon_counts: Counter = Counter()
    for raw, c in canon.items():
        if c:
            canon_counts[c] += counts[raw]
    kept_names = {c for c, n in canon_counts.items() if n >= min_count}

    def target(name: str) -> str | None:
        if name in kept_names:
            return name
        words = name.split("_")
        for n in range(len(words) - 1, 0, -1):
            for cand in ("_".join(words[-n:]), "_".join(words[:n])):
                if cand in kept_names and cand not in FRAGMENT_WORDS:
                    return cand
        return None

    targets = {c: target(c) for c in canon_counts}
    mapping = {raw: targets[c] for raw, c in canon.items() if c and targets[c] is not None}
    kept: Counter = Counter()
    for raw, root in mapping.items():
        kept[root] += counts[raw]
    report = ReductionReport(
        raw=len(counts),
        after_merge_two_words=len(canon_counts),
        after_cluster_one_word=len(kept_names),
        after_plurals=len(kept),
        after_min_count=len(kept),
        min_count=min_count,
    )
    return mapping, kept, report


REDUCTIONS = {"names": reduce_vocabulary_names, "thesis": reduce_vocabulary}


class IngredientVocabulary:
    """Reduced ingredient vocabulary: ids for kept names and the raw -> kept mapping.

    Saved as JSON so the recipe generator (and the search CLI) can load the same ids.
    """

    def __init__(self, names: Sequence[str], mapping: dict[str, str], counts: dict[str, int]):
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.mapping = dict(mapping)
        self.counts = dict(counts)

    def __len__(self) -> int:
        return len(self.names)

    def canonical(self, raw_name: str) -> str | None:
        """Kept name for a raw (normalised or not) name, ``None`` when it was dropped/unknown."""
        name = raw_name if raw_name in self.mapping else normalize_name(raw_name)
        root = self.mapping.get(name)
        if root is None and name in self.index:
            root = name
        if root is None and name and not _SPLIT_WORDS.intersection(name.split("_")):
            key = canonical_name(name)  # an unseen spelling of a kept name ("Cumin Seeds")
            root = key if key in self.index else None
        return root

    def encode(self, raw_names: Iterable[str], dedupe: bool = True) -> list[int]:
        ids = [self.index[c] for c in map(self.canonical, raw_names) if c is not None]
        return list(dict.fromkeys(ids)) if dedupe else ids

    def find_in_text(self, text: str, max_words: int = 4) -> list[str]:
        """Kept names whose raw form occurs in free text (longest match first)."""
        toks = [t for t in tokenize(text) if t.isalpha()]
        found: list[str] = []
        i = 0
        while i < len(toks):
            for n in range(min(max_words, len(toks) - i), 0, -1):
                cand = self.canonical("_".join(toks[i : i + n]))
                if cand is None and n == 1:
                    cand = self.canonical(_singular(toks[i]))
                if cand is not None:
                    found.append(cand)
                    i += n
                    break
            else:
                i += 1
        return list(dict.fromkeys(found))

    @classmethod
    def from_counts(
        cls, counts: Counter | dict[str, int], min_count: int = 10, method: str = "names"
    ):
        """Reduce raw name counts (``method``: ``names``, the default that keeps multi-word
        names, or ``thesis``, the thesis' first/last-word clustering)."""
        if method not in REDUCTIONS:
            raise ValueError(f"unknown reduction {method!r}; choose from {sorted(REDUCTIONS)}")
        mapping, kept, report = REDUCTIONS[method](counts, min_count)
        names = sorted(kept, key=lambda n: (-kept[n], n))
        return cls(names, mapping, kept), report

    def is_staple(self, name: str) -> bool:
        """Pantry basics (:data:`STAPLES`), which a card lists after the distinctive ones."""
        return name in STAPLES

    @staticmethod
    def display(name: str) -> str:
        """``white_pepper`` -> ``white pepper``."""
        return name.replace("_", " ")

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(
            path,
            {
                "format_version": INGREDIENT_VOCAB_FORMAT_VERSION,
                "names": self.names,
                "counts": self.counts,
                "mapping": self.mapping,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> IngredientVocabulary:
        data = read_versioned_json(
            path, None, INGREDIENT_VOCAB_FORMAT_VERSION, what="ingredient vocabulary",
            exact=True, fix="rerun beyondvis recipes prepare",
        )  # fmt: skip
        return cls(data["names"], data["mapping"], data["counts"])
