"""Image-recipe retrieval (thesis chapter 8): the joint embedding of food photos and recipes.

``features``: the text (ingredient word2vec, skip-instructions) and image inputs, computed once;
``model`` / ``losses`` / ``train``: the joint embedding and its two-stage training, with the CCA
and random baselines (``cca``) and medR / recall@K (``metrics``); ``index`` / ``search``: FAISS
indexes and the search bundle behind ``beyondvis recipes search``; ``card_retrieval``: the
shipped real recipes the ``cook`` card ranks (NumPy only at query time; the assets are written
and measured with the cook model by :mod:`beyondvis.recipes.generation.card_export`).
The public names are re-exported from :mod:`beyondvis.recipes`.
"""

from __future__ import annotations

from beyondvis.recipes.retrieval import reports as _reports  # torch-free: its names only
from beyondvis.utils import lazy_exports

_EXPORTS = {
    "build_text_features": ".features",
    "build_image_features": ".features",
    "RecipeFeatures": ".features",
    "ImageFeatures": ".features",
    "JointConfig": ".model",
    "JointEmbedding": ".model",
    **dict.fromkeys(
        ("JointTrainConfig", "fit_cca_baseline", "load_joint", "random_baseline", "train_joint"),
        ".train",
    ),
    "build_bundle": ".search",
    "RecipeSearcher": ".search",
    "EmbeddingIndex": ".index",
    "retrieval_metrics": ".metrics",
    # the card's real recipes
    "RecipeRetriever": ".card_retrieval",
    "RetrievalAssetError": ".card_retrieval",
    "format_retrieved": ".card_retrieval",
    # what the `recipes` commands run and print
    **dict.fromkeys(_reports.__all__, ".reports"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = list(_EXPORTS)
