"""The shipped inverse-cooking model: export after training, load and run for ``beyondvis cook``.

A bundle is a folder:

* ``model.pt`` — float16 state dicts of the ingredient set predictor and the instruction
  decoder plus their plain configs (loaded with ``torch.load(weights_only=True)``);
* ``ingredients.json`` / ``words.json`` — the Recipes I ingredient names and instruction words;
* ``retrieval.json`` + ``retrieval_ingredients.npy`` — the compact retrieval index: recipe id,
  title and reduced ingredient ids of every recipe (int16, padded with -1). A query is the
  predicted ingredient probability vector; recipes are ranked by the cosine similarity of
  idf-weighted ingredient vectors (the ingredient-based counterpart of Recipes I's retrieval).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from beyondvis.errors import FormatError
from beyondvis.recipes.generation.card import (
    DECODING_FORMAT_VERSION,
    PACKAGE_BUNDLE,
    IngredientIndex,
    card_ingredients,
    detokenize,
    find_card_retriever,
    finished_steps,
    read_decoding,
)
from beyondvis.recipes.generation.config import IMAGE, INGREDIENTS, DecoderConfig
from beyondvis.recipes.generation.constraints import (
    DecodingRules,
    free_token_ids,
    never_generated_ids,
    word_groups,
)
from beyondvis.recipes.generation.data import MAX_INGREDIENTS
from beyondvis.recipes.generation.decoder import InstructionDecoder
from beyondvis.recipes.generation.decoding import generate
from beyondvis.recipes.generation.dedup import dedup_ingredients
from beyondvis.recipes.generation.sequences import split_recipe
from beyondvis.recipes.pipeline.ingredients import STAPLES
from beyondvis.utils import atomic_write_bytes, atomic_write_json
from beyondvis.utils.versioned import check_format_version

BUNDLE_FORMAT_VERSION = 1
DEMO_PHOTO = PACKAGE_BUNDLE / "demo_food.jpg"


class BundleError(FormatError, ValueError):
    """A bundle folder is missing files or has an unknown format."""


def default_decoding() -> dict[str, Any]:
    """The card's decoding (``decoding.json`` of a bundle): method, its options and the
    anti-repetition rules. ``docs/recipes-generation.md`` says how it was chosen."""
    return {
        "format_version": DECODING_FORMAT_VERSION,
        # greedy: the best content-word overlap of titles on recipe1m_mini's validation
        # photos with the rules on (docs/recipes-generation.md, "Recipes III")
        "method": "greedy",
        "options": {
            "greedy": {},
            "beam": {"beam_size": 3, "length_penalty": 1.0},
            "sample": {"top_k": 5, "temperature": 0.8},
        },
        "rules": {
            "no_repeat_ngram": 3,
            "repetition_penalty": 1.2,
            "no_repeat_step": True,
            "unique_title_words": True,
            "min_steps": 2,
            "max_steps": 12,
            # no content word again within 6 words of a step: on recipe1m_mini val, steps with
            # such a repeat 14.6 % -> 5.2 % (docs/recipes-generation.md, "Recipes III")
            "repeat_window": 6,
        },
    }


def load_decoding(folder: str | Path) -> dict[str, Any]:
    """A bundle's ``decoding.json``, or :func:`default_decoding` for bundles written before it."""
    return read_decoding(folder, default_decoding(), BundleError)


def _half(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def build_retrieval(recipes: list[Any], num_ingredients: int) -> tuple[dict, np.ndarray]:
    ids = np.full((len(recipes), MAX_INGREDIENTS), -1, dtype=np.int16)
    for row, r in enumerate(recipes):
        ids[row, : len(r.ingredients)] = r.ingredients[:MAX_INGREDIENTS]
    meta = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "ids": [r.id for r in recipes],
        "titles": [r.title for r in recipes],
        "num_ingredients": num_ingredients,
    }
    return meta, ids


def save_bundle(
    folder: str | Path,
    set_predictor: torch.nn.Module,
    set_info: dict[str, Any],
    decoder: InstructionDecoder,
    ingredient_names: list[str],
    word_itos: list[str],
    word_specials: list[str],
    retrieval: tuple[dict, np.ndarray],
    image_size: int = 224,
    decoding: dict[str, Any] | None = None,
) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "image_size": image_size,
        "set_predictor": {"info": set_info, "state": _half(set_predictor.state_dict())},
        "decoder": {"config": decoder.config.to_dict(), "state": _half(decoder.state_dict())},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(folder / "model.pt", buf.getvalue())
    atomic_write_json(
        folder / "ingredients.json",
        {
            "format_version": 1,
            "names": ingredient_names,
            "staples": [n for n in ingredient_names if n in STAPLES],
        },
        indent=None,
    )
    atomic_write_json(folder / "decoding.json", decoding or default_decoding())
    atomic_write_json(
        folder / "words.json",
        {"format_version": 1, "specials": word_specials, "itos": word_itos},
        indent=None,
    )
    meta, ids = retrieval
    atomic_write_json(folder / "retrieval.json", meta, indent=None)
    npy = io.BytesIO()
    np.save(npy, ids)
    atomic_write_bytes(folder / "retrieval_ingredients.npy", npy.getvalue())


@dataclass
class CookResult:
    title: str
    ingredients: list[dict[str, Any]]
    instructions: list[str]
    retrieved: list[dict[str, Any]]
    timings: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "ingredients": self.ingredients,
            "instructions": self.instructions,
            "retrieved": self.retrieved,
        }


def load_card_retriever(folder: str | Path | None = None) -> Any:
    """The real-recipe retriever of a bundle (:func:`.card.find_card_retriever`); a corrupt
    asset raises :class:`BundleError`."""
    return find_card_retriever(folder, BundleError)


class CookModel:
    """Photo -> ingredients (set predictor) -> title + steps (decoder) + closest real recipes."""

    def __init__(self, folder: str | Path = PACKAGE_BUNDLE, device: str = "cpu") -> None:
        from beyondvis.backbones import create_backbone
        from beyondvis.recipes.generation.training import build_set_predictor

        folder = Path(folder)
        needed = [
            "model.pt",
            "ingredients.json",
            "words.json",
            "retrieval.json",
            "retrieval_ingredients.npy",
        ]
        missing = [n for n in needed if not (folder / n).is_file()]
        if missing:
            raise BundleError(f"{folder}: model bundle lacks {missing}")
        payload = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        check_format_version(
            payload.get("format_version"), BUNDLE_FORMAT_VERSION, folder / "model.pt",
            BundleError, what="model bundle", exact=True,
            fix="export the bundle again (generation export)",
        )  # fmt: skip
        self.device = torch.device(device)
        self.image_size = int(payload["image_size"])
        ingredients_meta = json.loads((folder / "ingredients.json").read_text(encoding="utf-8"))
        self.ingredient_names = ingredients_meta["names"]
        self.staples = set(ingredients_meta.get("staples") or STAPLES)
        words = json.loads((folder / "words.json").read_text())
        self.itos: list[str] = words["itos"]
        info = payload["set_predictor"]["info"]
        self.set_predictor = build_set_predictor(
            info["name"], len(self.ingredient_names), info["options"]
        )
        self.set_predictor.load_state_dict(
            {k: v.float() for k, v in payload["set_predictor"]["state"].items()}
        )
        self.decoder = InstructionDecoder(DecoderConfig.from_dict(payload["decoder"]["config"]))
        self.decoder.load_state_dict({k: v.float() for k, v in payload["decoder"]["state"].items()})
        self.set_predictor.to(self.device).eval()
        self.decoder.to(self.device).eval()
        self.backbone = create_backbone("efficientnet_lite0").to(self.device).eval()
        self.transform = self.backbone.transform(size=self.image_size)
        meta = json.loads((folder / "retrieval.json").read_text())
        ids = np.load(folder / "retrieval_ingredients.npy", allow_pickle=False)
        self.ingredient_index = IngredientIndex(
            ids, len(self.ingredient_names), meta["ids"], meta["titles"]
        )
        self.card_retriever = load_card_retriever(folder)  # None: ingredient-only fallback
        self.retrieve_k = 3  # default number of real recipes on the card
        self.unk_id = self.itos.index("<unk>") if "<unk>" in self.itos else None
        self.banned_ids = never_generated_ids(self.itos)  # <unk>, <start_text>
        self.decoding = load_decoding(folder)
        self.rules = DecodingRules(**self.decoding["rules"], word_groups=word_groups(self.itos))
        self.free_ids = sorted(free_token_ids(self.itos))

    def retrieve(
        self, probs: np.ndarray, k: int | None = None, feature_map: Tensor | None = None
    ) -> list[dict[str, Any]]:
        """The ``k`` (default ``retrieve_k``) closest real recipes. With the card-retrieval
        assets (``beyondvis.recipes.retrieval.card_retrieval``): Recipes I joint image embedding of
        ``feature_map`` + predicted ingredients; dicts with id, title, score, source, licence
        and, where the licence allows, ingredients and instructions. Else by ingredients only."""
        k = self.retrieve_k if k is None else k
        if self.card_retriever is not None:
            pooled = None if feature_map is None else feature_map.float().mean(dim=(2, 3))
            pooled = None if pooled is None else pooled[0].cpu().numpy()
            return self.card_retriever.search(pooled, probs, self.ingredient_names, k)
        return self.ingredient_index.search(probs, k)

    def card_ingredients(self, labels: list[int], probs: np.ndarray) -> list[dict[str, Any]]:
        """The card's ingredient rows (:func:`.card.card_ingredients`)."""
        return card_ingredients(self.ingredient_names, self.staples, labels, probs)

    @torch.no_grad()
    def feature_map(self, image: Any) -> Tensor:
        x = self.transform(image)[None].to(self.device)
        return self.backbone.feature_map(x)

    @torch.no_grad()
    def ingredients(self, feature_map: Tensor) -> tuple[list[int], np.ndarray]:
        pred, scores = self.set_predictor.predict(feature_map)
        labels = torch.nonzero(pred[0]).flatten().tolist()
        probs = scores[0].float().cpu().numpy()
        labels = sorted(labels, key=lambda i: -probs[i])
        labels, _ = dedup_ingredients(labels, probs=[float(probs[i]) for i in labels])
        return labels, probs

    @torch.no_grad()
    @property
    def default_decode(self) -> str:
        """The decoding the bundle chose on validation (``decoding.json``)."""
        return str(self.decoding.get("method", "greedy"))

    def cook(
        self, image: Any, decode: str | None = None, *, seed: int | None = None, **options: Any
    ) -> CookResult:
        """One card. ``decode``: greedy, beam or sample (default: the bundle's choice, see
        ``decoding.json``); ``options`` override that method's options, and ``rules`` (a
        :class:`DecodingRules`) the anti-repetition rules. ``seed`` seeds sampling (a torch
        generator on the model's device) unless a ``generator`` is given."""
        t0 = time.perf_counter()
        fmap = self.feature_map(image)
        t1 = time.perf_counter()
        labels, probs = self.ingredients(fmap)
        t2 = time.perf_counter()
        cfg = self.decoder.config
        image_features = fmap if IMAGE in cfg.conditions else None
        ingr = None
        if INGREDIENTS in cfg.conditions:
            ingr = torch.full((1, max(1, len(labels))), cfg.ingredient_pad_id, dtype=torch.long)
            if labels:
                ingr[0, : len(labels)] = torch.as_tensor(labels)
            ingr = ingr.to(self.device)
        decode = decode or self.default_decode
        if decode == "sample" and seed is not None and "generator" not in options:
            options["generator"] = torch.Generator(device=self.device).manual_seed(int(seed))
        # the caller's bans come on top of <unk> and <start_text>, never instead of them
        options["banned"] = sorted({*options.get("banned", ()), *self.banned_ids})
        for key, value in self.decoding["options"].get(decode, {}).items():
            options.setdefault(key, value)
        options.setdefault("rules", self.rules)
        options.setdefault("free_ids", self.free_ids)
        gen = generate(self.decoder, decode, image_features, ingr, **options)
        t3 = time.perf_counter()
        ids = gen.tokens[0][: int(gen.lengths[0])].tolist()
        title_ids, steps = split_recipe(ids, cfg.special)
        steps = finished_steps(steps, ids, cfg.special.eos, cfg.special.eoi)
        text = [detokenize([self.itos[i] for i in s]) for s in steps]
        title = detokenize([self.itos[i] for i in title_ids]) or "Untitled"
        result = CookResult(
            title=title,
            ingredients=self.card_ingredients(labels, probs),
            instructions=text,
            retrieved=self.retrieve(probs, feature_map=fmap),
            timings={"features": t1 - t0, "ingredients": t2 - t1, "decode": t3 - t2},
        )
        result.timings["retrieval"] = time.perf_counter() - t3
        return result
