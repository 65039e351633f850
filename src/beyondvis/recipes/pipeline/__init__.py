"""The Recipe1M pipeline (thesis chapter 7): read, clean and describe the recipes.

``prepare`` (``beyondvis recipes prepare``) cleans a Recipe1M-layout root into
``recipes.jsonl`` plus vocabularies and statistics, which both retrieval (ch. 8,
:mod:`beyondvis.recipes.retrieval`) and generation (ch. 9, :mod:`beyondvis.recipes.generation`)
read. ``text``: tokenisation and word vocabularies; ``ingredients``: ingredient-name extraction
(ingredient-slicer rules or the learned ``tagger``) and the thesis' vocabulary reduction;
``categories``: the semantic categories of the retrieval regulariser. The public names are
re-exported from :mod:`beyondvis.recipes`.
"""

from __future__ import annotations

from beyondvis.utils import lazy_exports

_EXPORTS = {
    "PrepareConfig": ".prepare",
    "prepare_recipe1m": ".prepare:prepare",  # ``prepare`` is also the submodule's name
    "format_stats": ".prepare",
    "Vocabulary": ".text",
    "IngredientVocabulary": ".ingredients",
    "RuleBasedExtractor": ".ingredients",
    "SemanticCategories": ".categories",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = list(_EXPORTS)
