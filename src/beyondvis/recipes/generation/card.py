"""The parts of a recipe card that need no network: shared by the PyTorch ``CookModel`` and
the torch-free ONNX Runtime ``OrtCookModel``, so both print the same card.

* :func:`detokenize` — words -> a sentence;
* :func:`card_ingredients` — predicted ids -> the card's ingredient rows (distinctive first);
* :class:`IngredientIndex` — the ingredient-only "closest real recipes" of a bundle;
* :func:`find_card_retriever` — which real-recipe retriever (Recipes I embedding) a bundle uses;
* :func:`card_json` / :func:`format_card` — a card as ``beyondvis cook`` prints it (JSON / text),
  shared by the CLI and the web app so both show one shape.

NumPy only: importing this module must not import torch (the ONNX path's start-up).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE_BUNDLE = Path(__file__).resolve().parents[2] / "assets" / "generation"
COOK_JSON_FORMAT = 1  # the ``format`` of a ``beyondvis cook --json`` card (docs/formats.md)
_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "%"}


def detokenize(words: Sequence[str]) -> str:
    """Join tokens, gluing punctuation to the previous word and capitalising the first letter."""
    out = ""
    for w in words:
        if out and w not in _NO_SPACE_BEFORE and not out.endswith("("):
            out += " "
        out += w
    return out[:1].upper() + out[1:]


def card_ingredients(
    names: Sequence[str], staples: set[str], labels: Sequence[int], probs: np.ndarray
) -> list[dict[str, Any]]:
    """Predicted ingredients for the card: distinctive ones first, then the staples (salt,
    oil, ...), each by probability; ``name`` reads as words ("white pepper")."""
    rows = [
        {
            "name": names[i].replace("_", " "),
            "prob": round(float(probs[i]), 4),
            "staple": names[i] in staples,
        }
        for i in labels
    ]
    return sorted(rows, key=lambda r: (r["staple"], -r["prob"]))


class IngredientIndex:
    """Recipes ranked by the cosine similarity of idf-weighted ingredient vectors to the
    predicted ingredient probabilities (a bundle's ``retrieval_ingredients.npy``: one row of
    ingredient ids per recipe, padded with -1)."""

    def __init__(
        self, ids: np.ndarray, num_ingredients: int, recipe_ids: list[str], titles: list[str]
    ) -> None:
        rows, cols = np.nonzero(ids >= 0)
        matrix = np.zeros((ids.shape[0], num_ingredients), dtype=np.float32)
        matrix[rows, ids[rows, cols]] = 1.0
        df = matrix.sum(0)
        self.idf = np.log((1 + ids.shape[0]) / (1 + df)).astype(np.float32) + 1.0
        weighted = matrix * self.idf
        norms = np.linalg.norm(weighted, axis=1, keepdims=True)
        self.matrix = weighted / np.maximum(norms, 1e-8)
        self.recipe_ids = recipe_ids
        self.titles = titles

    def search(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        query = probs.astype(np.float32) * self.idf
        query /= max(float(np.linalg.norm(query)), 1e-8)
        scores = self.matrix @ query
        top = np.argsort(-scores, kind="stable")[:k]
        return [
            {
                "id": self.recipe_ids[i],
                "title": self.titles[i],
                "score": round(float(scores[i]), 4),
            }
            for i in top
        ]


def find_card_retriever(folder: str | Path | None, error: type[Exception]) -> Any:
    """The real-recipe retriever of a bundle: the folder's own card-retrieval assets when it
    has them, the shipped ones for the shipped bundle (``folder`` None or the package's), else
    None, as when the assets are not installed: ingredient-only fallback (a user-trained
    bundle then ranks its own recipes). A corrupt asset raises ``error``."""
    try:
        from beyondvis.recipes.retrieval.card_retrieval import (
            MANIFEST,
            PACKAGE_ASSETS,
            RecipeRetriever,
            RetrievalAssetError,
        )
    except ImportError:
        return None
    if folder is not None and (Path(folder) / MANIFEST).is_file():
        source = Path(folder)
    elif folder is None or Path(folder).resolve() == PACKAGE_BUNDLE.resolve():
        source = PACKAGE_ASSETS
    else:
        return None
    if not (source / MANIFEST).is_file():
        return None
    try:
        return RecipeRetriever.load(source)
    except RetrievalAssetError as exc:
        raise error(str(exc)) from exc


def finished_steps(steps: list[list[int]], ids: Sequence[int], eos: int, eoi: int) -> list:
    """``steps`` without a last step that the length limit cut mid-sentence.

    A recipe that reaches ``max_len`` ends inside a step ("Add 10 seconds, stir-fry"): a card
    should not print half a sentence, so that step is dropped when others remain. ``ids`` are
    the generated ids, whose last one tells whether the sequence ended on its own.
    """
    cut = bool(ids) and ids[-1] not in (eos, eoi)
    return steps[:-1] if cut and len(steps) > 1 else steps


DECODING_FORMAT_VERSION = 1  # of a bundle's decoding.json


def read_decoding(
    folder: str | Path, fallback: dict[str, Any], error: type[Exception]
) -> dict[str, Any]:
    """A bundle's ``decoding.json`` (method, per-method options, rules), else ``fallback``
    (bundles written before it); an unreadable or unknown-format file raises ``error`` (the
    PyTorch and ONNX Runtime paths each raise their own bundle error)."""
    from beyondvis.utils.versioned import read_versioned_json

    path = Path(folder) / "decoding.json"
    if not path.is_file():
        return dict(fallback)
    return read_versioned_json(
        path, None, DECODING_FORMAT_VERSION, error, what="decoding settings", exact=True,
        fix="re-export the bundle (generation export)",
    )  # fmt: skip


def card_json(result: Any, photo: str, runtime: str, decode: str) -> dict[str, Any]:
    """A card (``CookResult`` or the ONNX ``Card``) as one ``beyondvis cook --json`` object."""
    return {
        "format": COOK_JSON_FORMAT,
        "photo": photo,
        "runtime": runtime,
        "decode": decode,
        **result.to_json(),
    }


def card_error_json(photo: str, message: str) -> dict[str, Any]:
    """The ``cook --json`` object of a photo that could not be read."""
    return {"format": COOK_JSON_FORMAT, "photo": photo, "error": message}


def format_card(result: Any, retrieved_in_full: bool = True, width: int = 88) -> str:
    """A card as text: title, ingredients (probability), numbered steps, closest real recipes
    and, with ``retrieved_in_full``, the best real recipe's own text."""
    lines = [result.title, "=" * len(result.title), "", "Ingredients:"]
    name_width = max((len(i["name"]) for i in result.ingredients), default=0)
    for ing in result.ingredients:
        lines.append(f"  - {ing['name']:<{name_width}}  {ing['prob']:.2f}")
    if not result.ingredients:
        lines.append("  (none predicted)")
    lines += ["", "Instructions:"]
    for n, step in enumerate(result.instructions, 1):
        indent = " " * (len(str(n)) + 4)
        lines.append(
            textwrap.fill(step, width, initial_indent=f"  {n}. ", subsequent_indent=indent)
        )
    if not result.instructions:
        lines.append("  (no steps generated)")
    if result.retrieved:
        lines += ["", "Closest real recipes:"]
        for r in result.retrieved:
            source = f"  ({r['source']})" if r.get("source") else ""
            lines.append(f"  {r['score']:.3f}  {r['title']}  [{r['id']}]{source}")
        # Only the shipped real recipes (card_retrieval) carry a source and maybe the text;
        # the bundle's ingredient index knows titles and ids, already listed above.
        if retrieved_in_full and "source" in result.retrieved[0]:
            from beyondvis.recipes.retrieval.card_retrieval import format_retrieved

            lines += ["", "Best real recipe:", "", format_retrieved(result.retrieved[0], width)]
    return "\n".join(lines)
