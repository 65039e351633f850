"""Recipes, one subpackage per thesis chapter: the Recipe1M pipeline (ch. 7,
:mod:`beyondvis.recipes.pipeline`), image-recipe retrieval (ch. 8,
:mod:`beyondvis.recipes.retrieval`) and recipe generation from a photo (ch. 9,
:mod:`beyondvis.recipes.generation`).

>>> from beyondvis.io import load_image
>>> from beyondvis.recipes import list_recipe_models, load_recipe_model
>>> list_recipe_models()
['cook', 'recipe_retriever']
>>> cook = load_recipe_model("cook")                # the shipped bundle, ONNX Runtime on a CPU
>>> card = cook.cook(load_image("dish.jpg"))        # title, ingredients, steps, real recipes

Pipeline: ``prepare_recipe1m`` (clean, ingredient names, vocabularies), ``build_text_features``
/ ``build_image_features``; retrieval: ``train_joint`` (the joint embedding), the CCA and
random baselines, ``build_bundle`` + ``RecipeSearcher``. Names load on first use.
"""

from __future__ import annotations

import os
from typing import Any

from beyondvis.recipes.retrieval import reports as _reports  # torch-free: its names only
from beyondvis.utils import lazy_exports

# name -> what it is; both ship inside the package (src/beyondvis/assets/)
RECIPE_MODELS = {
    "cook": "photo -> recipe card (ingredients, title, steps, closest real recipes), ch. 9",
    "recipe_retriever": "photo + ingredients -> the shipped real recipes, ranked (ch. 8)",
}


def list_recipe_models() -> list[str]:
    """Names :func:`load_recipe_model` loads (models shipped inside the package)."""
    return sorted(RECIPE_MODELS)


def load_cook_model(
    folder: str | os.PathLike | None = None,
    runtime: str = "auto",
    device: str = "auto",
    threads: int | None = None,
) -> Any:
    """The card's model of a cook bundle (``None``: the shipped one) as ``beyondvis cook`` runs it.

    ``runtime="auto"`` takes ONNX Runtime (:class:`OrtCookModel`, no torch import) when the
    bundle ships a usable ONNX export and ``device`` is auto/cpu, else PyTorch
    (:class:`CookModel`); ``"onnxruntime"`` or ``"torch"`` force one. Both have
    ``cook(image, decode=None, ...)``; the sampling seed is ``seed=`` on ONNX Runtime and a
    ``generator=`` on PyTorch.
    """
    from beyondvis.recipes.generation.card import PACKAGE_BUNDLE
    from beyondvis.recipes.generation.runtime import load_model

    model, _ = load_model(
        folder if folder is not None else PACKAGE_BUNDLE, runtime, device, threads
    )
    return model


def load_recipe_model(name: str = "cook", **kwargs: Any) -> Any:
    """A shipped recipe model by name (see :func:`list_recipe_models`); ``kwargs`` go to its
    loader (:func:`load_cook_model`, ``RecipeRetriever.load(folder)``)."""
    if name == "cook":
        return load_cook_model(**kwargs)
    if name == "recipe_retriever":
        from beyondvis.recipes.retrieval.card_retrieval import RecipeRetriever

        return RecipeRetriever.load(**kwargs)
    raise ValueError(f"unknown recipe model {name!r}; known: {', '.join(list_recipe_models())}")


_EXPORTS = {
    # ch. 7: Recipe1M preparation (beyondvis.recipes.pipeline)
    "PrepareConfig": ".pipeline",
    "prepare_recipe1m": ".pipeline",
    "format_stats": ".pipeline",
    "build_text_features": ".retrieval",
    "build_image_features": ".retrieval",
    "RecipeFeatures": ".retrieval",
    "ImageFeatures": ".retrieval",
    "Vocabulary": ".pipeline",
    # ch. 8: image <-> recipe retrieval (beyondvis.recipes.retrieval)
    "JointConfig": ".retrieval",
    "JointEmbedding": ".retrieval",
    **dict.fromkeys(
        ("JointTrainConfig", "fit_cca_baseline", "load_joint", "random_baseline", "train_joint"),
        ".retrieval",
    ),
    "build_bundle": ".retrieval",
    "RecipeSearcher": ".retrieval",
    "EmbeddingIndex": ".retrieval",
    "retrieval_metrics": ".retrieval",
    # the card's real recipes
    "RecipeRetriever": ".retrieval",
    "RetrievalAssetError": ".retrieval",
    "format_retrieved": ".retrieval",
    **dict.fromkeys(_reports.__all__, ".retrieval"),
    # ch. 9: the cook model of beyondvis.recipes.generation
    **{name: ".generation" for name in ("CookModel", "OrtCookModel", "PACKAGE_BUNDLE")},
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "RECIPE_MODELS",
    "list_recipe_models",
    "load_cook_model",
    "load_recipe_model",
    *_EXPORTS,
]
