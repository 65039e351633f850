"""The chapter-9 tables on a prepared split (``beyondvis generation table ...``).

* ``ingredients``: IoU / F1 / cardinality error of each ingredient set predictor (Table 9.2);
* ``fusions``: perplexity of the four fusions + I2R + L2R, teacher-forced on the test recipes
  with photos and ground-truth ingredients (Table 9.1);
* ``retrieval``: generation vs retrieval — ingredient IoU/F1 of a predictor against RI2L
  (image -> closest training photo -> its ingredients), and the precision/recall of the
  ingredients mentioned in the generated instructions against the reference (Table 9.3 right).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from beyondvis.recipes.generation.bundle import CookModel
from beyondvis.recipes.generation.config import IMAGE, INGREDIENTS
from beyondvis.recipes.generation.data import GenData
from beyondvis.recipes.generation.experiment import GenerationConfig
from beyondvis.recipes.generation.metrics import IngredientSetMetrics, MentionMetrics
from beyondvis.recipes.generation.training import (
    decoder_config,
    evaluate_ingredients,
    first_photo_items,
    text_eval,
    train_decoder,
    train_ingredients,
)

INGREDIENT_MODELS = ("ff_bce", "ff_siou", "ff_bce_dc", "ff_td", "tf", "tf_shuffle", "tf_set")
FUSION_ROWS = (
    ("concat", (IMAGE, INGREDIENTS)),
    ("independent", (IMAGE, INGREDIENTS)),
    ("seq_img_first", (IMAGE, INGREDIENTS)),
    ("seq_ingr_first", (IMAGE, INGREDIENTS)),
    ("I2R (image only)", (IMAGE,)),
    ("L2R (ingredients only)", (INGREDIENTS,)),
)


def _scores(metrics: IngredientSetMetrics) -> dict[str, float]:
    s = metrics.compute()
    return {k: round(float(s[k]), 4) for k in ("iou", "f1", "card_err", "pred_size")}


def ingredient_table(
    cfg: GenerationConfig, data: GenData, models: tuple[str, ...] = INGREDIENT_MODELS
) -> list[dict[str, Any]]:
    test = first_photo_items(data.split("test", True), data)
    rows = []
    for name in models:
        t0 = time.perf_counter()
        train_cfg = dataclasses.replace(
            cfg.train_ingredients, out_dir=str(Path(cfg.out_dir) / "table_ingredients" / name)
        )
        model, _ = train_ingredients(data, name, cfg.ingredient_options, train_cfg)
        rows.append(
            {
                "model": name,
                **_scores(evaluate_ingredients(model, test)),
                "train_s": round(time.perf_counter() - t0, 1),
            }
        )
    return rows


def fusion_table(
    cfg: GenerationConfig, data: GenData, only: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """``only``: row names to run (first word: concat, ..., I2R, L2R); default all six."""
    test = data.split("test", True)
    rows = []
    for label, conditions in FUSION_ROWS:
        if only and label.split(" ")[0] not in only:
            continue
        fusion = label if conditions == (IMAGE, INGREDIENTS) else cfg.fusion
        t0 = time.perf_counter()
        dcfg = decoder_config(data, cfg.decoder, fusion, conditions)
        name = label.split(" ")[0]
        train_cfg = dataclasses.replace(
            cfg.train_decoder, out_dir=str(Path(cfg.out_dir) / "table_fusions" / name)
        )
        decoder, _ = train_decoder(data, dcfg, train_cfg, cfg.label_smoothing)
        ppl = text_eval(decoder, test, data.features).compute()
        rows.append(
            {
                "model": label,
                "ppl": round(float(ppl["ppl"]), 2),
                "ppl_per_recipe": round(float(ppl["ppl_per_recipe"]), 2),
                "train_s": round(time.perf_counter() - t0, 1),
            }
        )
    return rows


def retrieval_table(data: GenData, bundle: str | Path) -> dict[str, Any]:
    """Shipped model vs RI2L on the test recipes with photos (first photo of each)."""
    model = CookModel(bundle)
    feats = data.features.float()
    pooled = F.normalize(feats.mean((2, 3)), dim=1)
    train = data.split("train", True)
    train_rows = torch.as_tensor([r.images[0] for r in train])
    test = data.split("test", True)
    n = len(data.ingredient_vocab)
    gen_m, ret_m = IngredientSetMetrics(n), IngredientSetMetrics(n)

    def find(words: list[str]) -> list[str]:  # the Recipes I vocabulary's own matcher
        return data.ingredient_vocab.find_in_text(" ".join(words))

    mentions, mentions_ret = MentionMetrics(find), MentionMetrics(find)
    names = data.ingredient_vocab.names

    def hot(ids: list[int]) -> torch.Tensor:
        out = torch.zeros(1, n)
        out[0, ids] = 1
        return out

    for r in test:
        row = r.images[0]
        target = hot(r.ingredients)
        labels, probs = model.ingredients(feats[row : row + 1])
        gen_m.update(hot(labels), target)
        nearest = train[int((pooled[train_rows] @ pooled[row]).argmax())]
        ret_m.update(hot(nearest.ingredients), target)
        # Mention P/R: generated steps (greedy, from the photo + predicted ingredients) vs the
        # retrieved recipe's own steps, both against the reference ingredients.
        ingr = torch.as_tensor([labels or [model.decoder.config.ingredient_pad_id]])
        from beyondvis.recipes.generation.decoding import generate
        from beyondvis.recipes.generation.sequences import split_recipe

        gen = generate(
            model.decoder,
            "greedy",
            feats[row : row + 1],
            ingr,
            banned=list(model.banned_ids),
        )
        _, steps = split_recipe(gen.tokens[0][: int(gen.lengths[0])], model.decoder.config.special)
        words = [model.itos[i] for s in steps for i in s]
        reference = [names[i] for i in r.ingredients]
        mentions.update(words, reference)
        ref_words = nearest.words  # steps only, as for the generated recipe: skip the title
        cut = ref_words.index("<eoi>") + 1 if "<eoi>" in ref_words else 0
        mentions_ret.update(ref_words[cut:], reference)
    return {
        "recipes": len(test),
        "generation": _scores(gen_m),
        "retrieval_RI2L": _scores(ret_m),
        "mentions_generated": {k: round(float(v), 4) for k, v in mentions.compute().items()},
        "mentions_retrieved": {k: round(float(v), 4) for k, v in mentions_ret.compute().items()},
    }


TABLES = ("ingredients", "fusions", "retrieval")
TABLE_FORMAT = "beyondvis.generation.table/1"


def generation_table(
    config: GenerationConfig,
    which: str,
    models: Sequence[str] | None = None,
    bundle: str | Path | None = None,
    data: GenData | None = None,
) -> Any:
    """The rows of chapter-9 table ``which`` (``ingredients``, ``fusions`` or ``retrieval``)
    on ``config``'s prepared data (``load_data(config)`` unless ``data`` is given).

    ``models`` restricts the ingredient predictors (default :data:`INGREDIENT_MODELS`) or the
    fusion rows (default all); ``bundle`` is the cook bundle the retrieval table scores
    (default the shipped one).
    """
    from beyondvis.recipes.generation.card import PACKAGE_BUNDLE
    from beyondvis.recipes.generation.experiment import load_data

    if which not in TABLES:
        raise ValueError(f"unknown table {which!r}; choose from {', '.join(TABLES)}")
    data = data if data is not None else load_data(config)
    if which == "ingredients":
        return ingredient_table(config, data, tuple(models) if models else INGREDIENT_MODELS)
    if which == "fusions":
        return fusion_table(config, data, tuple(models) if models else None)
    return retrieval_table(data, bundle or PACKAGE_BUNDLE)


def write_table(rows: Any, path: str | Path) -> None:
    """``rows`` as the ``beyondvis.generation.table/1`` JSON that ``generation table`` prints,
    written atomically."""
    import json

    from beyondvis.utils import atomic_write

    with atomic_write(path, mode="w") as fh:
        fh.write(json.dumps({"format": TABLE_FORMAT, "rows": rows}, indent=2) + "\n")
