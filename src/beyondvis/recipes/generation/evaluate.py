"""Score cook cards on any folder: ``beyondvis generation evaluate --root DIR``.

A card is what ``beyondvis cook`` makes from one photo (:class:`CookModel.cook`). The photos and
their references come from a Recipe1M-layout folder (``layer1.json`` + ``layer2.json`` +
``images/<partition>/a/b/c/d/<id>``: reference title and ingredient lines of the photo's recipe)
or a Food-101-layout folder (``meta/`` + ``images/<class>/<id>.jpg``: the dish name only).

The measures are small pure functions over plain strings, so they can be checked on hand-made
cards:

* ingredient precision/recall/F1 from TP/FP/FN summed over all cards (Recipe1M layout only),
  with and without staples. Reference ingredients are the bundle vocabulary's names found in the
  recipe's ingredient lines (:meth:`IngredientVocabulary.find_in_text`); "without staples"
  removes the staples from both the predicted and the reference sets. A baseline predicts the K
  most frequent training ingredients for every photo (K = the model's mean predicted set size,
  per column), so F1 has something to be compared with;
* titles: share naming the dish (Food-101: every content word of the class label appears in the
  title, case- and plural-insensitive), share sharing a content word with the real title (stop
  words removed), number of distinct titles, titles repeating a word;
* steps: distinct-4-gram ratio (n-grams of each step, pooled over the steps of a card, summed over
  cards; also across cards), cards with a repeated step and the number of repeated steps, share
  of steps naming one of the card's predicted ingredients;
* seconds per card (``cook`` wall time, the model already loaded) and CPU seconds per card
  (process CPU time of the same call: on a busy machine wall time mostly measures waiting).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from beyondvis.errors import BeyondvisError
from beyondvis.recipes.generation.metrics import IngredientMatcher, word_key
from beyondvis.recipes.generation.runtime import load_model
from beyondvis.recipes.pipeline.ingredients import STAPLES as _PANTRY_STAPLES
from beyondvis.recipes.pipeline.ingredients import IngredientVocabulary, normalize_name
from beyondvis.utils.progress import show_progress

EVAL_FORMAT = "beyondvis.generation.evaluate/1"
LAYOUTS = ("recipe1m", "food101")

# Used when the bundle names no staples of its own: the project's pantry basics (the card lists
# them after the distinctive ingredients), which a predictor gets "right" without looking at
# the photo. Names go through the bundle vocabulary; one it lacks is simply never matched.
STAPLES: tuple[str, ...] = tuple(sorted(_PANTRY_STAPLES))

# Function words and recipe-title filler ("easy", "homemade") that say nothing about the dish.
STOP_WORDS = frozenset(
    """a an and the of with in on for to from or by at as style my our your best easy quick
    simple homemade classic recipe recipes perfect favorite favourite ever healthy delicious
    super yummy tasty""".split()
)

_WORD = re.compile(r"[^\W\d_]+")


# ------------------------------------------------------------------------------ text helpers
def words(text: str) -> list[str]:
    """Lower-case alphabetic words (hyphens and punctuation split words)."""
    return _WORD.findall(text.lower())


def content_words(text: str, stop_words: Iterable[str] = STOP_WORDS) -> set[str]:
    """Plural-insensitive keys (:func:`word_key`) of the words of ``text`` that are no stop words."""
    stop = {word_key(w) for w in stop_words}
    return {k for k in map(word_key, words(text)) if k not in stop}


def title_names_dish(title: str, dish: str, stop_words: Iterable[str] = STOP_WORDS) -> bool:
    """Every content word of the dish label appears in the title ("Apple pie" in "Easy apple
    pies": yes; in "Apple crumble": no). A label of stop words only must match all its words."""
    needed = content_words(dish, stop_words) or {word_key(w) for w in words(dish)}
    return bool(needed) and needed <= {word_key(w) for w in words(title)}


def shares_content_word(title: str, reference: str, stop_words: Iterable[str] = STOP_WORDS) -> bool:
    """The generated and the real title have a content word in common."""
    return bool(content_words(title, stop_words) & content_words(reference, stop_words))


def repeated_title_words(title: str) -> int:
    """How many words of the title repeat an earlier one ("Egg egg salad" -> 1)."""
    keys = [word_key(w) for w in words(title)]
    return len(keys) - len(set(keys))


def _step_key(step: str) -> str:
    return " ".join(words(step) + re.findall(r"\d+", step))


def repeated_steps(steps: Sequence[str]) -> int:
    """Steps that repeat an earlier step of the same card (case and punctuation ignored)."""
    keys = [k for k in map(_step_key, steps) if k]
    return len(keys) - len(set(keys))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _step_tokens(step: str) -> list[str]:
    return re.findall(r"[^\W_]+", step.lower())


def distinct_ngram_ratio(cards_steps: Iterable[Sequence[str]], n: int = 4) -> float:
    """Distinct / total n-grams, counted per card (the n-grams of each step, pooled over the
    card's steps, so a step looping on a phrase or a step repeated later both count) and summed
    over cards. 1.0 when no card repeats a 4-word phrase; 1.0 when there are no n-grams."""
    distinct = total = 0
    for steps in cards_steps:
        grams = [g for s in steps for g in ngrams(_step_tokens(s), n)]
        distinct += len(set(grams))
        total += len(grams)
    return distinct / total if total else 1.0


def distinct_ngram_ratio_across(cards_steps: Iterable[Sequence[str]], n: int = 4) -> float:
    """Distinct / total n-grams over all steps of all cards together (diversity between cards)."""
    grams = [g for steps in cards_steps for s in steps for g in ngrams(_step_tokens(s), n)]
    return len(set(grams)) / len(grams) if grams else 1.0


def without_staples(names: Iterable[str], staples: Iterable[str]) -> list[str]:
    """``names`` minus the staples (order kept)."""
    stop = set(staples)
    return [n for n in names if n not in stop]


def set_prf(predicted: Sequence[Iterable[str]], reference: Sequence[Iterable[str]]) -> dict:
    """Micro precision/recall/F1 from TP/FP/FN summed over cards (duplicates count once)."""
    if len(predicted) != len(reference):
        raise ValueError("predicted and reference need one set per card")
    tp = fp = fn = 0
    for p, r in zip(predicted, reference):
        p, r = set(p), set(r)
        tp += len(p & r)
        fp += len(p - r)
        fn += len(r - p)
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def most_frequent(ranked: Sequence[str], k: int, exclude: Iterable[str] = ()) -> list[str]:
    """The first ``k`` names of ``ranked`` (most frequent first) that are not in ``exclude``."""
    skip = set(exclude)
    return [n for n in ranked if n not in skip][: max(0, k)]


def steps_naming(steps: Sequence[str], ingredients: Iterable[str], find: Callable) -> int:
    """Steps that name at least one of ``ingredients``; ``find(tokens) -> labels`` is the
    vocabulary matcher (e.g. :meth:`IngredientMatcher.find`)."""
    wanted = set(ingredients)
    return sum(1 for s in steps if wanted & set(find(_step_tokens(s))))


# ----------------------------------------------------------------------------------- cards
@dataclasses.dataclass
class Card:
    """One generated card with what it is scored against."""

    path: str
    title: str
    ingredients: list[str]  # predicted, canonical vocabulary names
    instructions: list[str]
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    reference_title: str | None = None
    reference_ingredients: list[str] | None = None  # None: the folder has none (Food-101)
    dish: str | None = None  # Food-101 class label ("apple pie")


def _share(count: int, total: int) -> dict[str, float | int]:
    return {"share": count / total if total else 0.0, "count": count}


def summarize(
    cards: Sequence[Card],
    staples: Iterable[str] = STAPLES,
    ranked_vocabulary: Sequence[str] = (),
    find: Callable | None = None,
    stop_words: Iterable[str] = STOP_WORDS,
) -> dict[str, Any]:
    """All measures over ``cards`` (the ``"ingredients"``, ``"titles"``, ``"steps"`` and
    ``"seconds_per_card"`` parts of the JSON report).

    ``ranked_vocabulary`` (most frequent training ingredient first) feeds the baseline; ``find``
    maps step tokens to vocabulary labels for "steps naming a predicted ingredient" (default: an
    :class:`IngredientMatcher` over the cards' predicted names).
    """
    staples = list(staples)
    n = len(cards)
    out: dict[str, Any] = {"cards": n}
    scored = [c for c in cards if c.reference_ingredients is not None]
    if scored:
        pred = [c.ingredients for c in scored]
        ref = [c.reference_ingredients or [] for c in scored]
        pred_ns = [without_staples(p, staples) for p in pred]
        ref_ns = [without_staples(r, staples) for r in ref]
        model_all = set_prf(pred, ref) | {"mean_size": statistics.fmean(map(len, pred))}
        model_ns = set_prf(pred_ns, ref_ns) | {"mean_size": statistics.fmean(map(len, pred_ns))}
        ingredients: dict[str, Any] = {
            "cards": len(scored),
            "mean_reference_size": statistics.fmean(map(len, ref)),
            "model": {"all": model_all, "without_staples": model_ns},
            "most_frequent_baseline": None,
        }
        if ranked_vocabulary:
            k_all = max(1, round(model_all["mean_size"]))
            k_ns = max(1, round(model_ns["mean_size"]))
            base_all = most_frequent(ranked_vocabulary, k_all)
            base_ns = most_frequent(ranked_vocabulary, k_ns, exclude=staples)
            ingredients["most_frequent_baseline"] = {
                "all": set_prf([base_all] * len(scored), ref) | {"k": k_all, "names": base_all},
                "without_staples": set_prf([base_ns] * len(scored), ref_ns)
                | {"k": k_ns, "names": base_ns},
            }
        out["ingredients"] = ingredients
    else:
        out["ingredients"] = None
    with_dish = [c for c in cards if c.dish is not None]
    with_ref = [c for c in cards if c.reference_title]
    out["titles"] = {
        "names_dish": _share(
            sum(title_names_dish(c.title, c.dish or "", stop_words) for c in with_dish),
            len(with_dish),
        )
        if with_dish
        else None,
        "shares_content_word": _share(
            sum(
                shares_content_word(c.title, c.reference_title or "", stop_words) for c in with_ref
            ),
            len(with_ref),
        )
        if with_ref
        else None,
        "distinct": len({" ".join(words(c.title)) for c in cards}),
        "most_common": [[t, k] for t, k in Counter(c.title for c in cards).most_common(5)],
        "repeating_a_word": sum(repeated_title_words(c.title) > 0 for c in cards),
    }
    steps = [c.instructions for c in cards]
    total_steps = sum(map(len, steps))
    repeats = [repeated_steps(s) for s in steps]
    if find is None:
        names = {name for c in cards for name in c.ingredients}
        find = IngredientMatcher(sorted(names)).find if names else (lambda tokens: ())
    naming = sum(steps_naming(c.instructions, c.ingredients, find) for c in cards)
    out["steps"] = {
        "total": total_steps,
        "mean_per_card": total_steps / n if n else 0.0,
        "distinct_4gram_ratio": distinct_ngram_ratio(steps, 4),
        "distinct_4gram_ratio_across_cards": distinct_ngram_ratio_across(steps, 4),
        "cards_with_repeated_step": sum(r > 0 for r in repeats),
        "repeated_steps": sum(repeats),
        "naming_a_predicted_ingredient": _share(naming, total_steps),
    }
    secs = [c.seconds for c in cards]
    out["seconds_per_card"] = {
        "mean": statistics.fmean(secs) if secs else 0.0,
        "median": statistics.median(secs) if secs else 0.0,
        "cpu_mean": statistics.fmean(c.cpu_seconds for c in cards) if cards else 0.0,
    }
    if with_dish:
        by_dish: dict[str, dict[str, int]] = {}
        for c in with_dish:
            row = by_dish.setdefault(c.dish or "", {"cards": 0, "names_dish": 0})
            row["cards"] += 1
            row["names_dish"] += int(title_names_dish(c.title, c.dish or "", stop_words))
        out["titles"]["by_dish"] = by_dish
    return out


# ---------------------------------------------------------------------------------- photos
@dataclasses.dataclass
class Photo:
    path: Path
    group: str  # Food-101 class or Recipe1M recipe id (for a balanced --limit)
    reference_title: str | None = None
    reference_lines: list[str] | None = None
    dish: str | None = None


class EvaluateError(BeyondvisError, ValueError):
    """The folder cannot be evaluated (unknown layout, unreadable files, no photos)."""


def detect_layout(root: str | os.PathLike) -> str:
    root = Path(root)
    if (root / "layer1.json").is_file():
        return "recipe1m"
    if (root / "meta" / "classes.txt").is_file():
        return "food101"
    raise EvaluateError(
        f"{root}: neither a Recipe1M folder (layer1.json) nor a Food-101 folder "
        "(meta/classes.txt); pass --layout"
    )


def interleave(photos: Sequence[Photo]) -> list[Photo]:
    """Round-robin over groups (first photo of every group, then the second, ...), so that
    ``--limit`` takes all Food-101 classes / all recipes instead of the first ones listed."""
    groups: dict[str, list[Photo]] = {}
    for p in photos:
        groups.setdefault(p.group, []).append(p)
    out: list[Photo] = []
    depth = max((len(g) for g in groups.values()), default=0)
    for i in range(depth):
        out.extend(g[i] for g in groups.values() if i < len(g))
    return out


def list_photos(
    root: str | os.PathLike, layout: str | None = None, split: str = "test"
) -> tuple[str, list[Photo], list[dict[str, str]]]:
    """``(layout, photos, skipped)`` of one split; ``skipped`` lists unreadable entries."""
    root = Path(root)
    if not root.is_dir():
        raise EvaluateError(f"{root}: no such folder")
    layout = layout or detect_layout(root)
    skipped: list[dict[str, str]] = []
    photos: list[Photo] = []
    if layout == "food101":
        from beyondvis.data.food101 import Food101Error, load_food101

        try:
            data = load_food101(root, split)
        except Food101Error as exc:
            raise EvaluateError(str(exc)) from exc
        skipped += [{"item": w, "reason": r} for w, r in data.report.bad]
        skipped += [{"item": m, "reason": "image file missing"} for m in data.report.missing]
        skipped += [{"item": d, "reason": "duplicate entry"} for d in data.report.duplicates]
        photos = [Photo(i.path, i.class_name, reference_title=i.label, dish=i.label) for i in data]
    elif layout == "recipe1m":
        from beyondvis.data.recipe1m import PARTITIONS, Recipe1MError, load_recipe1m

        if split not in PARTITIONS:
            raise EvaluateError(f"unknown split {split!r} (choose from {', '.join(PARTITIONS)})")
        try:
            data = load_recipe1m(root)
        except Recipe1MError as exc:
            raise EvaluateError(str(exc)) from exc
        skipped += [{"item": w, "reason": r} for w, r in data.report.bad]
        in_split = {f"(recipe {r.id})" for r in data.by_partition(split)}
        skipped += [
            {"item": m, "reason": "image file missing"}
            for m in data.missing_images
            if m[m.rfind(" (recipe ") + 1 :] in in_split  # only this split's photos
        ]
        for recipe in data.by_partition(split):
            for path in data.image_paths(recipe):
                photos.append(Photo(path, recipe.id, recipe.title, list(recipe.ingredients)))
    else:
        raise EvaluateError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    return layout, photos, skipped


# ------------------------------------------------------------------------- bundle vocabulary
def load_vocabulary(folder: str | os.PathLike) -> IngredientVocabulary:
    """The bundle's ingredient vocabulary (``ingredients.json``); its raw -> kept ``mapping``
    and ``counts`` are used when the bundle ships them."""
    data = json.loads(Path(folder, "ingredients.json").read_text(encoding="utf-8"))
    return IngredientVocabulary(data["names"], data.get("mapping") or {}, data.get("counts") or {})


def ranked_names(vocab: IngredientVocabulary) -> list[str]:
    """Most frequent training ingredient first: by ``counts`` when shipped, else the vocabulary
    order (:meth:`IngredientVocabulary.from_counts` sorts names by training count)."""
    if vocab.counts:
        return sorted(vocab.names, key=lambda n: (-vocab.counts.get(n, 0), vocab.index[n]))
    return list(vocab.names)


def bundle_staples(folder: str | os.PathLike, model: Any = None) -> tuple[list[str], str] | None:
    """Staples the bundle defines itself (``staples`` in ``ingredients.json`` or on the model)."""
    data = json.loads(Path(folder, "ingredients.json").read_text(encoding="utf-8"))
    if isinstance(data.get("staples"), list):
        return [str(s) for s in data["staples"]], "bundle ingredients.json"
    names = getattr(model, "staples", None)
    if isinstance(names, list | tuple | set | frozenset) and names:
        return sorted(map(str, names)), "bundle model"
    return None


def canonical_names(vocab: IngredientVocabulary, names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        c = vocab.canonical(name) or vocab.canonical(normalize_name(name)) or normalize_name(name)
        out.append(c)
    return list(dict.fromkeys(out))


def reference_ingredients(vocab: IngredientVocabulary, lines: Iterable[str]) -> list[str]:
    """Vocabulary names found in a recipe's ingredient lines (longest match first)."""
    found: list[str] = []
    for line in lines:
        found += vocab.find_in_text(line)
    return list(dict.fromkeys(found))


# ------------------------------------------------------------------------------------ run
def _default_decoding(model: Any) -> str:
    """``default``, plus the method when the bundle names one (its ``decoding.json``)."""
    decoding = getattr(model, "decoding", None)
    method = decoding.get("method") if isinstance(decoding, dict) else None
    return f"default ({method})" if method else "default"


def evaluate_folder(
    root: str | os.PathLike,
    layout: str | None = None,
    split: str = "test",
    limit: int | None = None,
    decode: str | None = None,
    model_folder: str | os.PathLike | None = None,
    device: str = "auto",
    staples: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool | None = None,
    cards_out: list[Card] | None = None,
    runtime: str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """Make a card for every photo of ``split`` (at most ``limit``) and score them.

    Photos that cannot be loaded are reported in ``"skipped"`` and left out. ``decode=None`` uses
    the card's own default decoding; ``runtime``/``device``/``threads`` as for ``beyondvis
    cook`` (:func:`load_model`). Returns the JSON report (shape in docs/recipes-generation.md,
    "Evaluating cards on any folder"); the cards themselves are appended to ``cards_out``.
    """
    from beyondvis.io import ImageLoadError, load_image
    from beyondvis.recipes.generation.onnx_cook import PACKAGE_BUNDLE

    layout, photos, skipped = list_photos(root, layout, split)
    photos = interleave(photos)
    if limit is not None:
        photos = photos[: max(0, limit)]
    if not photos:
        raise EvaluateError(f"{root}: no photos in split {split!r}")
    folder = Path(model_folder) if model_folder else PACKAGE_BUNDLE
    t0 = time.perf_counter()
    model, runtime_name = load_model(folder, runtime, device, threads)
    load_seconds = time.perf_counter() - t0
    vocab = load_vocabulary(folder)
    if staples is not None:
        staple_names, staple_source = list(staples), "given"
    else:
        staple_names, staple_source = bundle_staples(folder, model) or (list(STAPLES), "default")
    staple_names = canonical_names(vocab, staple_names)
    matcher = IngredientMatcher(list(vocab.names))
    # both runtimes seed sampling from ``seed`` (a torch generator / NumPy's)
    options: dict[str, Any] = {"seed": seed} if decode == "sample" else {}
    show = sys.stderr.isatty() if progress is None else progress
    from tqdm.auto import tqdm

    cards: list[Card] = []
    for photo in tqdm(
        photos, desc="cards", unit="card", disable=not show_progress(show), file=sys.stderr
    ):
        try:
            image = load_image(photo.path)
        except (ImageLoadError, OSError) as exc:
            skipped.append({"item": str(photo.path), "reason": str(exc)})
            continue
        t, cpu = time.perf_counter(), time.process_time()
        result = model.cook(image, decode, **options) if decode else model.cook(image)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        ref = None
        if photo.reference_lines is not None:
            ref = reference_ingredients(vocab, photo.reference_lines)
        cards.append(
            Card(
                path=str(photo.path),
                title=result.title,
                ingredients=canonical_names(vocab, [i["name"] for i in result.ingredients]),
                instructions=list(result.instructions),
                seconds=seconds,
                cpu_seconds=cpu,
                reference_title=photo.reference_title,
                reference_ingredients=ref,
                dish=photo.dish,
            )
        )
    if not cards:
        raise EvaluateError(f"{root}: none of the {len(photos)} photos could be loaded")
    report: dict[str, Any] = {
        "format": EVAL_FORMAT,
        "root": str(Path(root).resolve()),
        "layout": layout,
        "split": split,
        "bundle": str(folder.resolve()),
        "decode": decode or _default_decoding(model),
        "runtime": runtime_name,
        "device": str(getattr(model, "device", "cpu")),
        "photos": len(photos),
        "skipped": skipped,
        "staples": {"source": staple_source, "names": staple_names},
        "model_load_seconds": load_seconds,
    }
    report |= summarize(cards, staple_names, ranked_names(vocab), matcher.find)
    if cards_out is not None:
        cards_out.extend(cards)
    return report


# ---------------------------------------------------------------------------------- table
def _pct(part: dict | None) -> str:
    return "n/a" if part is None else f"{100 * part['share']:.1f} %"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_report(report: dict[str, Any]) -> str:
    """The on-screen table of :func:`evaluate_folder`'s report."""
    lines = [
        f"{report['layout']} {report['split']} at {report['root']}",
        f"bundle {report['bundle']} on {report.get('runtime', '?')}, decoding {report['decode']},"
        f" {report['cards']} cards"
        f" ({len(report['skipped'])} items skipped)",
        "",
    ]
    ing = report.get("ingredients")
    if ing:
        lines.append(f"{'ingredients':<34}{'P':>7}{'R':>7}{'F1':>7}{'size':>7}")

        def row(name: str, m: dict, size: float) -> str:
            return f"{name:<34}{m['precision']:>7.3f}{m['recall']:>7.3f}{m['f1']:>7.3f}{size:>7.1f}"

        lines.append(row("model", ing["model"]["all"], ing["model"]["all"]["mean_size"]))
        base = ing["most_frequent_baseline"]
        if base:
            b = base["all"]
            lines.append(row(f"most frequent {b['k']} (baseline)", b, b["k"]))
        ns = ing["model"]["without_staples"]
        lines.append(row("model, without staples", ns, ns["mean_size"]))
        if base:
            b = base["without_staples"]
            lines.append(row(f"most frequent {b['k']}, without staples", b, b["k"]))
            if b["f1"] > 0:
                ratio = ns["f1"] / b["f1"]
                lines.append(f"{'F1 without staples, model / baseline':<48}{ratio:>7.2f}")
        lines.append(f"{'reference ingredients per card':<48}{ing['mean_reference_size']:>7.1f}")
        lines.append("")
    t, s = report["titles"], report["steps"]
    n = report["cards"]
    rows = [
        ("titles naming the dish", _pct(t["names_dish"])),
        ("titles sharing a content word with the real one", _pct(t["shares_content_word"])),
        ("distinct titles", f"{t['distinct']} / {n}"),
        ("most common title", f"{t['most_common'][0][1]}x {t['most_common'][0][0]!r}"),
        ("titles repeating a word", f"{t['repeating_a_word']}"),
        ("steps per card", f"{s['mean_per_card']:.1f}"),
        ("distinct-4-gram ratio (within cards)", f"{s['distinct_4gram_ratio']:.3f}"),
        ("distinct-4-gram ratio (across cards)", f"{s['distinct_4gram_ratio_across_cards']:.3f}"),
        ("cards with a repeated step", f"{s['cards_with_repeated_step']}"),
        ("repeated steps", f"{s['repeated_steps']}"),
        ("steps naming a predicted ingredient", _pct(s["naming_a_predicted_ingredient"])),
        (
            "seconds per card (mean / median)",
            f"{report['seconds_per_card']['mean']:.3f} / {report['seconds_per_card']['median']:.3f}",
        ),
        ("CPU seconds per card (mean)", _num(report["seconds_per_card"].get("cpu_mean"))),
    ]
    width = max(len(r[0]) for r in rows) + 2
    lines += [f"{name:<{width}}{value:>12}" for name, value in rows]
    by_dish = t.get("by_dish")
    if by_dish:
        lines += ["", "titles naming the dish, per dish:"]
        lines += [
            f"  {dish:<30}{row['names_dish']:>4} / {row['cards']}" for dish, row in by_dish.items()
        ]
    if report["skipped"]:
        lines += ["", f"skipped ({len(report['skipped'])}):"]
        lines += [f"  {s['item']}: {s['reason']}" for s in report["skipped"][:10]]
        if len(report["skipped"]) > 10:
            lines.append(f"  ... {len(report['skipped']) - 10} more (see --json)")
    return "\n".join(lines)


def write_cards(cards: Iterable[Any], path: str | os.PathLike) -> None:
    """The cards of :func:`evaluate_folder` (``cards_out``) as JSON Lines, written atomically."""
    from beyondvis.utils import atomic_write

    with atomic_write(path, mode="w") as fh:
        for card in cards:
            fh.write(json.dumps(dataclasses.asdict(card), ensure_ascii=False) + "\n")
