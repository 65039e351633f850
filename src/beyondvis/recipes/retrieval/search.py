"""Search bundle: a trained joint embedding + the text encoders + two FAISS indexes.

``build_bundle`` embeds every prepared recipe (photos or not) and every photo, and writes a
self-contained folder that ``RecipeSearcher`` loads:

* ``model.pt`` (joint embedding), ``skip_instructions.pt`` (encoder only, no decoders),
  ``ingredient_vocab.json``, ``instruction_vocab.json``, ``bundle.json`` (format version);
* ``recipes/`` and ``images/`` — :class:`~beyondvis.recipes.retrieval.index.EmbeddingIndex` folders.

The recipe generator can load the same bundle to fetch the closest real recipes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from beyondvis.data.recipe1m import read_recipes_jsonl
from beyondvis.engine import load_checkpoint, save_checkpoint
from beyondvis.recipes.pipeline.ingredients import IngredientVocabulary
from beyondvis.recipes.pipeline.text import Vocabulary
from beyondvis.recipes.retrieval.features import (
    MAX_INGREDIENTS,
    MAX_STEPS,
    ImageFeatures,
    RecipeFeatures,
)
from beyondvis.recipes.retrieval.index import EmbeddingIndex, arithmetic_query
from beyondvis.recipes.retrieval.skip_instructions import SkipInstructions, StepEncoder
from beyondvis.recipes.retrieval.train import embed_images, embed_recipes, load_joint
from beyondvis.utils import atomic_write_json
from beyondvis.utils.versioned import read_versioned_json

BUNDLE_FORMAT_VERSION = 1


def _half_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def build_bundle(
    prep_dir: str | Path, model_path: str | Path, out_dir: str | Path, kind: str = "fp16"
) -> dict[str, Any]:
    """Embed all prepared recipes and photos with a trained model; write the search bundle."""
    prep, out = Path(prep_dir), Path(out_dir)
    model, extra = load_joint(model_path)
    encoder = extra["train_config"].get("encoder", "skip")
    if encoder != "skip":
        raise ValueError("search bundles support the skip-instructions encoder only")
    rows = read_recipes_jsonl(prep / "recipes.jsonl")
    recipes = RecipeFeatures.load(prep / f"recipe_features_{encoder}.npz")
    images = ImageFeatures.load(prep / "image_features.npz")
    out.mkdir(parents=True, exist_ok=True)
    rec_emb = embed_recipes(model, recipes, list(range(len(recipes))))
    by_id = {r["id"]: r for r in rows}
    rec_items = [
        {
            "id": rid,
            "title": by_id[rid]["title"],
            "partition": by_id[rid]["partition"],
            "ingredients": by_id[rid]["ingredients_reduced"],
        }
        for rid in recipes.ids
    ]
    EmbeddingIndex.build(rec_emb, rec_items, kind).save(out / "recipes")
    img_emb = embed_images(model, images.features)
    img_items = [
        {
            "image": img,
            "recipe_id": rid,
            "title": by_id[rid]["title"],
            "partition": by_id[rid]["partition"],
        }
        for img, rid in zip(images.image_ids, images.recipe_ids)
    ]
    EmbeddingIndex.build(img_emb, img_items, kind).save(out / "images")
    # Weights in float16: the bundle is meant to be small enough to ship.
    ckpt = load_checkpoint(model_path)
    save_checkpoint(out / "model.pt", {"model": _half_state(ckpt["model"]), "extra": ckpt["extra"]})
    skip = load_checkpoint(prep / "text" / "skip_instructions.pt")
    encoder_only = {k: v for k, v in skip["model"].items() if k.startswith(("embed.", "encoder."))}
    save_checkpoint(
        out / "skip_instructions.pt", {"model": _half_state(encoder_only), "extra": skip["extra"]}
    )
    for name in ("ingredient_vocab.json", "instruction_vocab.json", "categories.json"):
        shutil.copyfile(prep / name, out / name)
    info = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "backbone": images.backbone,
        "recipes": len(rec_items),
        "images": len(img_items),
        "emb_dim": int(rec_emb.shape[1]),
    }
    atomic_write_json(out / "bundle.json", info)
    return info


class RecipeSearcher:
    """Image -> recipes and text -> photos over a bundle written by :func:`build_bundle`."""

    def __init__(self, bundle_dir: str | Path, device: str = "cpu") -> None:
        bundle = Path(bundle_dir)
        info_path = bundle / "bundle.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{bundle}: not a recipe search bundle (no bundle.json)")
        self.info = read_versioned_json(
            info_path, None, BUNDLE_FORMAT_VERSION, what="recipe search bundle", exact=True,
            fix="rebuild it (beyondvis recipes index)",
        )  # fmt: skip
        self.bundle = bundle
        self.device = device
        self.model, _ = load_joint(bundle / "model.pt")
        self.model.float()
        self.ingredients = IngredientVocabulary.load(bundle / "ingredient_vocab.json")
        self.words = Vocabulary.load(bundle / "instruction_vocab.json")
        ckpt = load_checkpoint(bundle / "skip_instructions.pt")
        extra = ckpt["extra"]
        skip = SkipInstructions(len(self.words), extra["embed_dim"], extra["hidden"])
        # The bundle keeps the encoder only (no decoders): load what is there, check it all fits.
        missing = skip.load_state_dict(
            {k: v.float() for k, v in ckpt["model"].items()}, strict=False
        ).missing_keys
        if any(k.startswith(("embed.", "encoder.")) for k in missing):
            raise ValueError(f"{bundle}: skip_instructions.pt lacks encoder weights")
        self.steps = StepEncoder(skip, self.words, extra["max_tokens"])
        self.recipes = EmbeddingIndex.load(bundle / "recipes")
        self.images = EmbeddingIndex.load(bundle / "images")
        self._extractor = None

    # -- encoders ---------------------------------------------------------------------------
    def embed_image_files(self, paths: list[str | Path]) -> tuple[np.ndarray, list[str]]:
        """Embeddings of readable images and the errors of the others (``path: reason``)."""
        from beyondvis.backbones import FeatureExtractor, create_backbone

        if self._extractor is None:
            backbone = create_backbone(self.info["backbone"])
            self._extractor = FeatureExtractor(backbone, output="pooled", device=self.device)
        result = self._extractor.extract_paths(paths)
        errors = [f"{e.path}: {e.reason}" for e in result.errors]
        if len(result) == 0:
            return np.zeros((0, self.model.config.emb_dim), np.float32), errors
        return embed_images(self.model, result.features.numpy()), errors

    def embed_text(self, text: str) -> tuple[np.ndarray, list[str]]:
        """Embed free text as a recipe: known ingredient names found in it are its
        ingredients, its sentences are its steps. Returns (embedding, ingredients found)."""
        names = self.ingredients.find_in_text(text)[:MAX_INGREDIENTS]
        steps = [s.strip() for s in text.replace("\n", ".").split(".") if s.strip()][:MAX_STEPS]
        if not steps:
            raise ValueError("empty text query")
        ids = np.zeros((1, MAX_INGREDIENTS), dtype=np.int32)
        idx = [self.ingredients.index[n] + 1 for n in names]
        ids[0, : len(idx)] = idx
        feats = RecipeFeatures(
            ids=["query"],
            partitions=np.array(["query"]),
            categories=np.zeros(1, dtype=np.int64),
            ingr_ids=ids,
            ingr_len=np.array([len(idx)]),
            steps=self.steps(steps),
            step_offsets=np.array([0, len(steps)]),
        )
        return embed_recipes(self.model, feats, [0])[0], names

    # -- queries ----------------------------------------------------------------------------
    def search_image(self, path: str | Path, top: int = 5) -> list[tuple[float, dict[str, Any]]]:
        emb, errors = self.embed_image_files([path])
        if errors:
            raise ValueError(errors[0])
        return self.recipes.search(emb, top)[0]

    def search_text(self, text: str, top: int = 5) -> tuple[list[tuple[float, dict]], list[str]]:
        emb, names = self.embed_text(text)
        return self.images.search(emb[None], top)[0], names

    def closest_recipes_to_image(self, path: str | Path, k: int = 3) -> list[dict[str, Any]]:
        """The ``k`` closest real recipes of an image (for the recipe generator)."""
        return [item for _, item in self.search_image(path, k)]

    def arithmetic(
        self, plus: list[str], minus: list[str], top: int = 5, space: str = "recipes"
    ) -> list[tuple[float, dict[str, Any]]]:
        """``v(plus[0]) - v(minus[0]) + v(plus[1]) ...`` over recipe (or image) embeddings."""
        index = self.recipes if space == "recipes" else self.images
        vectors = index.index.reconstruct_n(0, len(index))
        q = arithmetic_query(vectors, [it["title"] for it in index.items], plus, minus)
        return index.search(q[None], top)[0]
