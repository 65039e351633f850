"""What ``beyondvis recipes train|baselines|table|search|arithmetic`` run and print, as library
calls: runs that leave their ``results.json`` / ``baselines.json`` where the table finds them,
the thesis' retrieval table (medR and recall@K both ways), and search results as the
documented ``beyondvis.recipes.search/1`` / ``beyondvis.recipes.arithmetic/1`` objects
(docs/formats.md) with their terminal text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from beyondvis.errors import BeyondvisError

__all__ = [
    "RecipeRunError",
    "arithmetic_lines",
    "format_metrics",
    "open_searcher",
    "recipe_arithmetic",
    "results_table",
    "run_baselines",
    "search_lines",
    "search_recipes",
    "train_run",
]

RESULTS = "results.json"
BASELINES = "baselines.json"


class RecipeRunError(BeyondvisError, ValueError):
    """A run, bundle or query the retrieval commands cannot use (the message says why)."""


def format_metrics(m: dict[str, Any]) -> str:
    """The test protocol and medR / R@1 / R@5 / R@10 of both directions, one line each."""
    p = m["protocol"]
    parts = [f"test pairs {p['pairs']}, {p['n_subsets']} subsets of {p['subset_size']}"]
    for d in ("im2recipe", "recipe2im"):
        x = m[d]
        parts.append(
            f"{d}: medR {x['medR']:.1f} R@1 {x['R@1']:.3f} R@5 {x['R@5']:.3f} R@10 {x['R@10']:.3f}"
        )
    return "\n".join(parts)


def train_run(data: str | os.PathLike, out: str | os.PathLike, config: Any) -> dict:
    """:func:`~beyondvis.recipes.train_joint` into ``out``, its result also written to
    ``out/results.json`` (what :func:`results_table` reads)."""
    from beyondvis.recipes.retrieval.train import train_joint
    from beyondvis.utils import atomic_write_json

    result = train_joint(data, out, config)
    atomic_write_json(Path(out) / RESULTS, result)
    return result


def run_baselines(data: str | os.PathLike, cca_dim: int = 32, cca_reg: float = 0.1) -> dict:
    """The random-ranking and CCA baselines on a prepared folder, also written to
    ``data/baselines.json`` (what :func:`results_table` reads)."""
    from beyondvis.recipes.retrieval.train import fit_cca_baseline, random_baseline
    from beyondvis.utils import atomic_write_json

    out = {
        "random": random_baseline(data),
        "cca": fit_cca_baseline(data, k=cca_dim, reg=cca_reg),
    }
    atomic_write_json(Path(data) / BASELINES, out)
    return out


def results_table(
    data: str | os.PathLike, runs: Sequence[tuple[str, str | os.PathLike]] = ()
) -> str:
    """The Markdown retrieval table: the baselines of ``data`` (when computed) and each
    ``(name, run folder)`` of ``runs``, with the test protocol above it."""
    rows: list[tuple[str, dict]] = []
    base = Path(data) / BASELINES
    if base.is_file():
        b = json.loads(base.read_text())
        rows += [
            ("random ranking", b["random"]["test"]),
            ("CCA (w2v + skip-instr. + image)", b["cca"]["test"]),
        ]
    for name, folder in runs:
        res = Path(folder) / RESULTS
        if not res.is_file():
            raise RecipeRunError(f"{res} missing: train that run first")
        rows.append((name, json.loads(res.read_text())["test"]))
    if not rows:
        raise RecipeRunError("nothing to tabulate: run 'recipes baselines' or pass --run NAME=DIR")
    p = rows[0][1]["protocol"]
    lines = [
        f"Test pairs: {p['pairs']} (mean of {p['n_subsets']} subsets of {p['subset_size']})\n",
        "| method | im2recipe medR | R@1 | R@5 | R@10 | recipe2im medR | R@1 | R@5 | R@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        cells = []
        for d in ("im2recipe", "recipe2im"):
            x = m[d]
            cells += [f"{x['medR']:.1f}", f"{x['R@1']:.3f}", f"{x['R@5']:.3f}", f"{x['R@10']:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def open_searcher(bundle: str | os.PathLike, device: str = "cpu") -> Any:
    """The :class:`~beyondvis.recipes.RecipeSearcher` of a bundle folder (refused, with the
    command that builds one, when it is none)."""
    from beyondvis.recipes.retrieval.search import RecipeSearcher

    if not (Path(bundle) / "bundle.json").is_file():
        raise RecipeRunError(
            f"{bundle} is not a search bundle: build one with 'beyondvis recipes index'"
        )
    return RecipeSearcher(bundle, device=device)


def _ranked(hits: list[tuple[float, dict]]) -> list[dict]:
    return [{"rank": r + 1, "score": round(s, 4), **item} for r, (s, item) in enumerate(hits)]


def search_recipes(
    searcher: Any, image: str | os.PathLike | None = None, text: str | None = None, top: int = 5
) -> dict:
    """Recipes for a photo, or photos for a recipe text (exactly one of ``image``/``text``):
    ``{"query", "results"}`` of ``beyondvis.recipes.search/1``."""
    if (image is None) == (text is None):
        raise RecipeRunError("give exactly one of image or text")
    if image is not None:
        if not Path(image).is_file():
            raise RecipeRunError(f"{image}: no such file")
        hits = searcher.search_image(image, top)
        query: dict[str, Any] = {"image": image}
    else:
        hits, names = searcher.search_text(text, top)
        query = {"text": text, "ingredients_found": names}
    return {"query": query, "results": _ranked(hits)}


def search_lines(out: dict) -> list[str]:
    """The terminal's view of :func:`search_recipes` (the ingredients a text query named)."""
    lines = []
    if "text" in out["query"]:
        found = out["query"]["ingredients_found"]
        lines.append(f"ingredients recognised: {', '.join(found) or '(none)'}")
    for r in out["results"]:
        what = r.get("image") or r["id"]
        lines.append(f"{r['rank']}. {r['score']:.3f}  {r['title']}  [{what}]")
    return lines


def recipe_arithmetic(
    searcher: Any, plus: list[str], minus: list[str], top: int = 5, space: str = "recipes"
) -> dict:
    """``v(plus...) - v(minus...)`` over recipe (or image) embeddings: ``{"plus", "minus",
    "results"}`` of ``beyondvis.recipes.arithmetic/1``."""
    hits = searcher.arithmetic(plus, minus, top, space)
    return {"plus": plus, "minus": minus, "results": _ranked(hits)}


def arithmetic_lines(out: dict) -> list[str]:
    """The terminal's view of :func:`recipe_arithmetic`: the expression, then the ranking."""
    lines = [" + ".join(out["plus"]) + "".join(f" - {m}" for m in out["minus"])]
    lines += [f"{r['rank']}. {r['score']:.3f}  {r['title']}" for r in out["results"]]
    return lines
