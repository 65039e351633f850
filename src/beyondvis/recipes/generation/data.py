"""Training data for inverse cooking, built from the Recipes I artifacts (``recipes prepare``).

* ingredients: the reduced names of each recipe (``ingredients_reduced``), at most 20, as ids
  of the Recipes I ingredient vocabulary (``ingredient_vocab.json``);
* instructions: ``<start> title <eoi> step ... <end>`` ids of the Recipes I instruction
  vocabulary (``instruction_vocab.json``), 150 tokens at most;
* images: frozen EfficientNet-Lite0 last feature maps (1280 x 7 x 7 at 224 px), extracted once
  into the engine's feature cache (float16; resumes a killed extraction, skips unreadable
  photos with their reason, checksummed and versioned).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from beyondvis.data.recipe1m import (
    image_path,
    read_provenance,
    read_recipes_jsonl,
    source_prefix,
)
from beyondvis.recipes.pipeline.ingredients import IngredientVocabulary
from beyondvis.recipes.pipeline.text import EOI as EOI_TOKEN
from beyondvis.recipes.pipeline.text import START as START_TOKEN
from beyondvis.recipes.pipeline.text import TEXT_START, Vocabulary, recipe_tokens, tokenize

log = logging.getLogger(__name__)

MAX_INGREDIENTS = 20
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class GenRecipe:
    """One recipe as the models see it."""

    id: str
    title: str
    partition: str
    ingredients: list[int]  # ingredient-vocabulary ids, at most MAX_INGREDIENTS, deduplicated
    tokens: list[int]  # instruction-vocabulary ids, <start> ... <end>
    images: list[int]  # rows of the feature cache (empty: no photo)
    words: list[str]  # the reference tokens (for mention metrics)
    source: str = "recipe1m"  # "recipe1m" or "food101" (weak labels: title only)
    # provenance prefix ("pdr", "epi", ...: the site it was written for) from the data root's
    # provenance.jsonl; "" when unknown. Sources write in their own style.
    origin: str = ""


@dataclasses.dataclass
class GenData:
    recipes: list[GenRecipe]
    ingredient_vocab: IngredientVocabulary
    word_vocab: Vocabulary
    features: torch.Tensor | None  # (num_images, C, h, w) float16, rows indexed by GenRecipe.images
    weak_report: dict[str, Any] = dataclasses.field(default_factory=dict)

    def split(self, name: str, with_images: bool = False) -> list[GenRecipe]:
        return [r for r in self.recipes if r.partition == name and (r.images or not with_images)]


def load_prepared(prepared_dir: str | Path, max_len: int = 150) -> tuple[list[dict], Any, Any]:
    """Read ``recipes.jsonl`` + both vocabularies written by ``beyondvis recipes prepare``."""
    prepared_dir = Path(prepared_dir)
    needed = ["recipes.jsonl", "ingredient_vocab.json", "instruction_vocab.json"]
    missing = [n for n in needed if not (prepared_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{prepared_dir}: missing {missing}; run `beyondvis recipes prepare --root ... "
            f"--out {prepared_dir}` first"
        )
    rows = read_recipes_jsonl(prepared_dir / "recipes.jsonl")
    return (
        rows,
        IngredientVocabulary.load(prepared_dir / "ingredient_vocab.json"),
        Vocabulary.load(prepared_dir / "instruction_vocab.json"),
    )


def _feature_key(paths: list[str], size: int) -> str:
    # one cache folder per photo list and size, so train/eval subsets never refuse each other
    h = hashlib.sha1(f"{size}|".encode())
    for p in paths:
        h.update(p.encode() + b"\0")
    return h.hexdigest()[:16]


def extract_feature_maps(
    paths: list[str],
    cache_dir: str | Path,
    size: int = 224,
    batch_size: int = 16,
    backbone: str = "efficientnet_lite0",
    runtime: str = "auto",
) -> tuple[torch.Tensor, list[bool]]:
    """Frozen EfficientNet-Lite0 last feature maps of ``paths`` (cached): (N, 1280, h, w), ok mask.

    Unreadable photos are skipped and reported; their rows are zero and ``ok`` is False.
    """
    from beyondvis.engine.features import cache_image_features

    folder = Path(cache_dir) / f"maps-{_feature_key(paths, size)}"
    cache = cache_image_features(
        paths, folder, backbone, output="map", size=size, batch_size=batch_size,
        dtype="float16", runtime=runtime,
    )  # fmt: skip
    ok = np.zeros(len(paths), dtype=bool)
    ok[cache.rows] = True
    for bad in cache.skipped:
        log.warning("no features for %s: %s", bad["id"], bad["reason"])
    # skipped rows of the memory map are zeros; one copy into memory, as training reads it all
    return torch.from_numpy(np.array(cache.features)), ok.tolist()


def build_data(
    prepared_dir: str | Path,
    data_root: str | Path | None,
    cache_dir: str | Path,
    max_len: int = 150,
    image_size: int = 224,
    food101_root: str | Path | None = None,
    food101_splits: tuple[str, ...] = ("train", "test"),
    style_start: bool = False,
) -> GenData:
    """Recipes with ingredient ids, token ids and (when ``data_root`` is given) photo features;
    with ``food101_root``, Food-101 photos are added as weakly labelled items
    (:func:`food101_items`); with ``style_start``, recipes of other sources than the photo
    recipes' begin with ``TEXT_START`` (:func:`mark_text_style`)."""
    rows, ingr_vocab, word_vocab = load_prepared(prepared_dir, max_len)
    provenance = Path(data_root, "provenance.jsonl") if data_root is not None else None
    origins = read_provenance(provenance) if provenance and provenance.is_file() else {}
    recipes: list[GenRecipe] = []
    paths: list[str] = []
    for row in rows:
        ids = ingr_vocab.encode(row.get("ingredients_reduced") or [])[:MAX_INGREDIENTS]
        words = recipe_tokens(row["title"], row["instructions"], max_len)
        image_rows = []
        if data_root is not None:
            for image_id in row.get("images") or []:
                image_rows.append(len(paths))
                paths.append(str(image_path(data_root, row["partition"], image_id)))
        recipes.append(
            GenRecipe(
                id=row["id"],
                title=row["title"],
                partition=row["partition"],
                ingredients=ids,
                tokens=word_vocab.encode(words),
                images=image_rows,
                words=words,
                origin=source_prefix(origins.get(row["id"], "")),
            )
        )
    weak_report: dict[str, Any] = {}
    if food101_root:
        add_dish_words(word_vocab, food101_root)
        weak, weak_report = food101_items(
            food101_root, recipes, ingr_vocab, word_vocab, len(paths), food101_splits
        )
        for r, path in weak:
            recipes.append(r)
            paths.append(path)
    if style_start:  # after the dish words: the vocabulary only ever appends
        marked = mark_text_style(recipes, add_text_start(word_vocab))
        log.info("style_start: %d text recipes begin with %s", marked, TEXT_START)
        if not marked:
            log.warning(
                "style_start has no effect: no recipe has a known source (does data_root "
                "hold provenance.jsonl?)"
            )
    features = None
    if paths:
        features, ok = extract_feature_maps(paths, cache_dir, image_size)
        for r in recipes:  # drop photos that failed to load
            r.images = [i for i in r.images if ok[i]]
    data = GenData(recipes, ingr_vocab, word_vocab, features)
    data.weak_report = weak_report
    return data


def add_text_start(word_vocab: Vocabulary) -> int:
    """Append ``TEXT_START`` to the vocabulary (if it lacks it); its id. Recipes of other
    sources than the photo recipes' then begin with it: every card begins with ``<start>``,
    the photo recipes' style, and the rest of the text teaches cooking under a first word of
    its own instead of pulling the cards towards its style."""
    word_vocab.extend([TEXT_START])
    return word_vocab.stoi[TEXT_START]


def photo_styles(recipes: list[GenRecipe]) -> set[str]:
    """Origins (provenance sources) of the training Recipe1M recipes with photos: the style
    every card is written in."""
    return {
        r.origin
        for r in recipes
        if r.images and r.source == "recipe1m" and r.origin and r.partition == "train"
    }


def mark_text_style(recipes: list[GenRecipe], text_start: int) -> int:
    """Make ``text_start`` the first token of every Recipe1M recipe whose origin (provenance
    source) is none of the training photo recipes' origins; the photo sources' recipes, every
    recipe with a photo and weakly labelled photos keep ``<start>``. Recipes of unknown origin are left as
    they are. Returns how many recipes were marked."""
    styles = photo_styles(recipes)
    marked = 0
    for r in recipes:
        # a recipe with a photo keeps <start> whatever its source: scored as a card is made
        if r.source == "recipe1m" and r.origin and r.origin not in styles and not r.images:
            r.tokens = [text_start, *r.tokens[1:]]
            marked += 1
    return marked


def add_dish_words(word_vocab: Vocabulary, food101_root: str | Path) -> list[str]:
    """Append the words of the Food-101 dish names the vocabulary lacks ("bibimbap",
    "beignets", "tartare" occur fewer than ``min_count`` times in recipe1m_mini's text); without
    them a weakly labelled title becomes ``<unk>`` and no card can name those dishes. They go
    after every existing id (:meth:`Vocabulary.extend`), so a decoder trained without them
    warm-starts (``decoder_init``). Returns the words added."""
    from beyondvis.data.food101 import read_classes

    _, labels = read_classes(food101_root)
    added = word_vocab.extend(w for label in labels for w in tokenize(label))
    if added:
        log.info("instruction vocabulary: %d Food-101 dish word(s) added: %s", len(added), added)
    return added


def food101_items(
    root: str | Path,
    recipes: list[GenRecipe],
    ingr_vocab: IngredientVocabulary,
    word_vocab: Vocabulary,
    first_row: int,
    splits: tuple[str, ...] = ("train", "test"),
) -> tuple[list[tuple[GenRecipe, str]], dict[str, Any]]:
    """Food-101 photos as weakly labelled items (:mod:`.weak`): title = dish name, ingredients
    shared by the training text recipes naming the dish. Food-101's ``train`` split goes to the
    ``train`` partition, ``test`` to ``food101_test`` (never trained on). Returns (item,
    photo path) pairs, feature rows numbered from ``first_row``, and a report per dish."""
    from beyondvis.data.food101 import load_food101
    from beyondvis.recipes.generation.weak import weak_ingredients

    text = [(r.title, r.ingredients) for r in recipes if r.partition == "train"]
    out: list[tuple[GenRecipe, str]] = []
    report: dict[str, Any] = {"dishes": {}, "photos": {}}
    labels = None
    for split in splits:
        part = load_food101(root, split)
        if labels is None:
            labels = {lab: weak_ingredients(lab, text) for lab in part.labels}
            report["dishes"] = {
                lab: {
                    "matched_recipes": w.matched_recipes,
                    "rule": w.rule,
                    "ingredients": [ingr_vocab.names[i] for i in w.ingredients],
                }
                for lab, w in labels.items()
            }
        partition = "train" if split == "train" else f"food101_{split}"
        for item in part.items:
            title = item.label[:1].upper() + item.label[1:]
            words = [START_TOKEN, *tokenize(title), EOI_TOKEN]  # title only: no <end>
            out.append(
                (
                    GenRecipe(
                        id=f"food101:{item.id}",
                        title=title,
                        partition=partition,
                        ingredients=list(labels[item.label].ingredients),
                        tokens=word_vocab.encode(words),
                        images=[first_row + len(out)],
                        words=words,
                        source="food101",
                    ),
                    str(item.path),
                )
            )
        report["photos"][split] = len(part.items)
        report.setdefault("skipped", {})[split] = len(part.report.bad) + len(part.report.missing)
    return out, report
