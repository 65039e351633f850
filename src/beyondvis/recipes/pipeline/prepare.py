"""``beyondvis recipes prepare``: Recipe1M-style root -> cleaned recipes + vocabularies + stats.

Outputs (all JSON written atomically; the generator of chapter 9 reuses them):

* ``recipes.jsonl`` — cleaned recipes: id, title, partition, ingredient lines, instructions,
  images, extracted raw names (``ingredient_names``), reduced names (``ingredients_reduced``),
  semantic ``category``;
* ``det_ingrs.json`` — Recipe1M-style detected ingredients (``valid`` = kept after reduction);
* ``ingredient_vocab.json``, ``instruction_vocab.json``, ``categories.json``;
* ``tagger.pt`` — the bi-LSTM ingredient tagger; ``stats.json`` and ``plots/*.png``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from beyondvis.data.recipe1m import clean_recipes, load_recipe1m, write_recipes_jsonl
from beyondvis.recipes.pipeline.categories import SemanticCategories
from beyondvis.recipes.pipeline.ingredients import (
    IngredientVocabulary,
    RuleBasedExtractor,
    build_name_lexicon,
    label_line,
    normalize_name,
)
from beyondvis.recipes.pipeline.tagger import TaggerConfig, train_tagger
from beyondvis.recipes.pipeline.text import build_instruction_vocab, tokenize
from beyondvis.utils import atomic_write_json

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PrepareConfig:
    min_ingredients: int = 2
    min_instructions: int = 2
    extractor: str = "tagger"  # tagger | slicer (slicer: ~2 ms per line)
    min_ingredient_count: int = 10  # thesis: 10 on Recipe1M
    # "names" keeps multi-word names (white pepper, star anise); "thesis" is the thesis'
    # first/last-word clustering, which leaves fragments such as "powder" and "white"
    ingredient_reduction: str = "names"
    min_word_count: int = 10  # thesis: 10
    tagger_epochs: int = 2
    tagger_max_lines: int = 30000  # labelled training lines used (sampled)
    baseline_sample: int = 3000  # lines on which the tagger is compared with ingredient-slicer
    bigram_top_k: int = 2000
    bigram_min_count: int = 3
    seed: int = 0


def _mean_std(values: list[int]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"mean": 0.0, "std": 0.0, "median": 0.0, "max": 0.0}
    return {
        "mean": round(float(arr.mean()), 2),
        "std": round(float(arr.std()), 2),
        "median": float(np.median(arr)),
        "max": float(arr.max()),
    }


def _plot_histograms(stats_lists: dict[str, list[int]], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, values in stats_lists.items():
        fig, ax = plt.subplots(figsize=(5, 3.2))
        top = int(np.percentile(values, 99)) + 1 if values else 1
        ax.hist([min(v, top) for v in values], bins=range(0, top + 2), color="#4477aa")
        ax.set_xlabel(name.replace("_", " "))
        ax.set_ylabel("recipes")
        ax.set_title(f"{name.replace('_', ' ')} (clipped at p99 = {top})")
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written


def prepare(
    root: str | Path, out: str | Path, config: PrepareConfig | None = None
) -> dict[str, Any]:
    """Run the whole data pipeline; returns the statistics (also in ``out/stats.json``)."""
    config = config or PrepareConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    data = load_recipe1m(root)
    recipes, clean = clean_recipes(data.recipes, config.min_ingredients, config.min_instructions)
    if not recipes:
        raise ValueError(f"{root}: no recipe left after cleaning")
    train = [r for r in recipes if r.partition == "train"]
    stats: dict[str, Any] = {
        "read": {
            "ok": data.report.ok,
            "malformed_skipped": len(data.report.bad),
            "missing_image_files": len(data.missing_images),
        },
        "malformed_examples": [f"{w}: {why}" for w, why in data.report.bad[:20]],
        "cleaning": dataclasses.asdict(clean),
    }

    # --- ingredient names ------------------------------------------------------------------
    tagger_stats: dict[str, Any] = {}
    base: list[str] = []
    learned: list[str] = []
    if data.det_ingrs is not None:
        names_of = {
            r.id: [normalize_name(n) for n in data.det_ingrs.get(r.id, [])] for r in recipes
        }
        tagger_stats["source"] = "det_ingrs.json"
    else:
        lexicon = build_name_lexicon(line for r in train for line in r.ingredients)
        examples = []
        for r in train:
            for line in r.ingredients:
                toks = tokenize(line)
                tags = label_line(toks, lexicon)
                if tags is not None:
                    examples.append((toks, tags))
        total_lines = sum(len(r.ingredients) for r in train)
        if len(examples) > config.tagger_max_lines:
            examples = rng.sample(examples, config.tagger_max_lines)
        tagger, report = train_tagger(
            examples, out / "tagger_run", TaggerConfig(), config.tagger_epochs, seed=config.seed
        )
        tagger.save(out / "tagger.pt")
        all_lines = [line for r in recipes for line in r.ingredients]
        sample = rng.sample(all_lines, min(config.baseline_sample, len(all_lines)))
        slicer = RuleBasedExtractor()
        base = slicer.extract_many(sample)
        learned = tagger(sample)
        agree = sum(a == b for a, b in zip(base, learned)) / max(len(sample), 1)
        tagger_stats = {
            "source": config.extractor,
            "lexicon_names": len(lexicon),
            "train_lines_total": total_lines,
            "labelled_lines": len(examples) + 0,
            **dataclasses.asdict(report),
            "agreement_with_slicer": round(agree, 4),
            "agreement_sample": len(sample),
            "agreement_examples": [
                {"line": s, "slicer": b, "tagger": t}
                for s, b, t in list(zip(sample, base, learned))[:10]
            ],
        }
        extract = tagger if config.extractor == "tagger" else slicer.extract_many
        names_all = extract(all_lines)
        names_of, pos = {}, 0
        for r in recipes:
            names_of[r.id] = names_all[pos : pos + len(r.ingredients)]
            pos += len(r.ingredients)
    stats["ingredient_extraction"] = tagger_stats

    # --- vocabularies ----------------------------------------------------------------------
    counts: Counter = Counter(n for r in train for n in names_of[r.id] if n)
    ingr_vocab, reduction = IngredientVocabulary.from_counts(
        counts, config.min_ingredient_count, config.ingredient_reduction
    )
    ingr_vocab.save(out / "ingredient_vocab.json")
    word_vocab = build_instruction_vocab(
        ((r.title, r.instructions) for r in train), config.min_word_count
    )
    word_vocab.save(out / "instruction_vocab.json")
    categories = SemanticCategories.build(
        [r.title for r in train], config.bigram_top_k, config.bigram_min_count
    )
    categories.save(out / "categories.json")
    if base:
        # Agreement on what the models see: names after vocabulary reduction.
        pairs = [(ingr_vocab.canonical(b), ingr_vocab.canonical(t)) for b, t in zip(base, learned)]
        pairs = [(b, t) for b, t in pairs if b is not None or t is not None]
        tagger_stats["agreement_after_reduction"] = round(
            sum(b == t for b, t in pairs) / max(len(pairs), 1), 4
        )
    n_words = Counter(w for r in train for s in (r.title, *r.instructions) for w in tokenize(s))
    stats["vocabulary"] = {
        "ingredients": dataclasses.asdict(reduction),
        "instruction_words_raw": len(n_words),
        "instruction_vocab": len(word_vocab),
        "instruction_min_count": config.min_word_count,
        "categories": len(categories),
    }

    # --- write recipes + det_ingrs ---------------------------------------------------------
    rows, det, per = [], [], {"ingredients_per_recipe": [], "instructions_per_recipe": []}
    cat_counts: Counter = Counter()
    reduced_per: list[int] = []
    for r in recipes:
        names = names_of[r.id]
        reduced = [c for c in dict.fromkeys(ingr_vocab.canonical(n) for n in names if n) if c]
        category = categories.assign(r.title)
        cat_counts[r.partition, category > 0] += 1
        row = r.to_dict()
        row.update(ingredient_names=names, ingredients_reduced=reduced, category=category)
        rows.append(row)
        det.append(
            {
                "id": r.id,
                "ingredients": [{"text": n} for n in names],
                "valid": [bool(n) and ingr_vocab.canonical(n) is not None for n in names],
            }
        )
        per["ingredients_per_recipe"].append(len(r.ingredients))
        per["instructions_per_recipe"].append(len(r.instructions))
        reduced_per.append(len(reduced))
    write_recipes_jsonl(out / "recipes.jsonl", rows)
    atomic_write_json(out / "det_ingrs.json", det, indent=None)

    parts = Counter(r.partition for r in recipes)
    with_img = Counter(r.partition for r in recipes if r.images)
    stats["dataset"] = {
        "recipes": dict(parts),
        "recipes_with_images": dict(with_img),
        "images": sum(len(r.images) for r in recipes),
        "ingredients_per_recipe": _mean_std(per["ingredients_per_recipe"]),
        "instructions_per_recipe": _mean_std(per["instructions_per_recipe"]),
        "reduced_ingredients_per_recipe": _mean_std(reduced_per),
        "category_coverage": {
            p: round(cat_counts[p, True] / max(parts[p], 1), 3) for p in ("train", "val", "test")
        },
    }
    stats["plots"] = _plot_histograms(per, out / "plots")
    atomic_write_json(out / "stats.json", stats)
    return stats


def format_stats(stats: dict[str, Any]) -> str:
    """Human-readable summary of :func:`prepare`'s statistics."""
    ds, voc, ext = stats["dataset"], stats["vocabulary"], stats["ingredient_extraction"]
    ing = voc["ingredients"]
    lines = [
        f"read: {stats['read']['ok']} records, {stats['read']['malformed_skipped']} malformed "
        f"skipped, {stats['read']['missing_image_files']} listed images missing on disk",
        "cleaning: " + ", ".join(f"{k}={v}" for k, v in stats["cleaning"].items()),
        f"recipes: {ds['recipes']}  with images: {ds['recipes_with_images']}  images: {ds['images']}",
        "ingredients/recipe: {mean} +- {std} (median {median}, max {max})".format(
            **ds["ingredients_per_recipe"]
        ),
        "instructions/recipe: {mean} +- {std} (median {median}, max {max})".format(
            **ds["instructions_per_recipe"]
        ),
        f"ingredient vocabulary: {ing['raw']} raw -> {ing['after_merge_two_words']} "
        f"(canonical names / two-word merge) -> {ing['after_cluster_one_word']} (kept / one-word "
        f"cluster) -> {ing['after_plurals']} (rare merged / plurals) -> {ing['after_min_count']} "
        f"(count >= {ing['min_count']})",
        f"instruction words: {voc['instruction_words_raw']} raw -> {voc['instruction_vocab']} "
        f"in vocabulary (count >= {voc['instruction_min_count']}, incl. 5 special tokens)",
        f"semantic categories: {voc['categories']} (incl. background); title coverage "
        f"{ds['category_coverage']}",
    ]
    if "token_accuracy" in ext:
        lines.append(
            f"ingredient tagger: {ext['labelled_lines']} corpus-labelled lines "
            f"(of {ext['train_lines_total']} train lines), held-out token accuracy "
            f"{ext['token_accuracy']:.4f}, name accuracy {ext['line_accuracy']:.4f} "
            f"on {ext['heldout_lines']} lines; agreement with ingredient-slicer "
            f"{ext['agreement_with_slicer']:.3f} on {ext['agreement_sample']} lines "
            f"({ext['agreement_after_reduction']:.3f} after vocabulary reduction)"
        )
    lines.append("plots: " + ", ".join(stats["plots"]))
    return "\n".join(lines)
