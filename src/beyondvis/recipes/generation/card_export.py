"""Write and measure the card-retrieval assets (``beyondvis.recipes.retrieval.card_retrieval``).

``python -m beyondvis.recipes.generation.card_export export`` turns a trained Recipes I joint embedding
(``beyondvis recipes train``) and its prepared folder into the small numpy asset folder the
card loads, measures it on the validation/test photos with the card's own pipeline (the shipped
cook model's backbone and ingredient predictor), chooses the weight of the ingredient signal
on the validation photos and stores it, with the numbers, in the manifest.
``python -m beyondvis.recipes.generation.card_export evaluate`` re-measures an asset folder.

Metrics: image -> recipe, one (recipe, first photo) pair per recipe with photos, ranks are
1-based and pessimistic on ties. Two candidate sets: ``pairs`` (only the split's recipes with
photos, the thesis' protocol, here 37 test recipes) and ``all`` (all shipped recipes, what the
card searches: 12,570).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from beyondvis.data.recipe1m import read_provenance, source_prefix
from beyondvis.recipes.retrieval.card_retrieval import (
    ASSET_FILES,
    CARD_FORMAT_VERSION,
    MANIFEST,
    PACKAGE_ASSETS,
    SOURCES,
    RecipeRetriever,
    file_sha256,
)
from beyondvis.recipes.retrieval.metrics import rank_metrics
from beyondvis.utils import atomic_write_bytes, atomic_write_json

WEIGHT_GRID = tuple(round(0.05 * i, 2) for i in range(21))


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _gzip_bytes(text: str) -> bytes:
    # mtime=0: the same content always gives the same bytes (and checksum)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def _folder_lock(folder: Path):  # noqa: ANN202 - a context manager
    """Refuse a second writer of an asset folder (the shared folder lock)."""
    from beyondvis.utils.locks import folder_lock

    return folder_lock(folder, ".card_export.lock")


def export_assets(
    prep_dir: str | Path,
    model_path: str | Path,
    out_dir: str | Path,
    provenance: str | Path,
    train_command: str = "",
) -> dict[str, Any]:
    """Write the asset folder (manifest last, so a crash leaves no manifest over half files)."""
    import torch

    from beyondvis.data.recipe1m import read_recipes_jsonl
    from beyondvis.recipes.pipeline.ingredients import IngredientVocabulary
    from beyondvis.recipes.retrieval.features import MAX_INGREDIENTS, RecipeFeatures
    from beyondvis.recipes.retrieval.train import embed_recipes, load_joint

    prep, out = Path(prep_dir), Path(out_dir)
    model, extra = load_joint(model_path)
    encoder = extra["train_config"].get("encoder", "skip")
    features = RecipeFeatures.load(prep / f"recipe_features_{encoder}.npz")
    rows = {r["id"]: r for r in read_recipes_jsonl(prep / "recipes.jsonl")}
    vocab = IngredientVocabulary.load(prep / "ingredient_vocab.json")
    sources = read_provenance(provenance)
    with torch.no_grad():
        emb = embed_recipes(model, features, list(range(len(features))))
    head = {
        "adapter_w1": model.adapter[0].weight,
        "adapter_b1": model.adapter[0].bias,
        "adapter_w2": model.adapter[2].weight,
        "adapter_b2": model.adapter[2].bias,
        "proj_w": model.image_proj[1].weight,
        "proj_b": model.image_proj[1].bias,
    }
    head_np = {k: v.detach().cpu().numpy().astype(np.float16) for k, v in head.items()}
    ids = np.full((len(features), MAX_INGREDIENTS), -1, dtype=np.int16)
    columns: dict[str, list[str]] = {"ids": [], "titles": [], "sources": [], "source_ids": []}
    lines, counts = [], {}
    for row_index, rid in enumerate(features.ids):
        r = rows[rid]
        names = [vocab.index[n] for n in r.get("ingredients_reduced", []) if n in vocab.index]
        names = list(dict.fromkeys(names))[:MAX_INGREDIENTS]
        ids[row_index, : len(names)] = names
        sid = sources.get(rid, "")
        key = source_prefix(sid)
        counts[key] = counts.get(key, 0) + 1
        for col, value in zip(columns, (rid, r["title"], key, sid)):
            columns[col].append(value)
        if SOURCES.get(key, {}).get("full_text"):  # only what the source licence allows
            text = {"ingredients": list(r["ingredients"]), "instructions": list(r["instructions"])}
            lines.append(rid + "\t" + json.dumps(text, ensure_ascii=False, separators=(",", ":")))
    vocabulary = {
        "format": 1,
        "names": vocab.names,
        "mapping": {k: v for k, v in sorted(vocab.mapping.items()) if v in vocab.index and k != v},
    }
    head_buf = io.BytesIO()
    np.savez(head_buf, **head_np)
    payloads = {
        "image_head.npz": head_buf.getvalue(),
        "recipe_embeddings.npy": _npy_bytes(emb.astype(np.float16)),
        "recipe_ingredients.npy": _npy_bytes(ids),
        "ingredients.json.gz": _gzip_bytes(json.dumps(vocabulary, separators=(",", ":"))),
        "recipes.json.gz": _gzip_bytes(json.dumps(columns, ensure_ascii=False)),
        "recipe_texts.jsonl.gz": _gzip_bytes("\n".join(lines) + "\n"),
    }
    assert set(payloads) == set(ASSET_FILES)
    out.mkdir(parents=True, exist_ok=True)
    with _folder_lock(out):
        (out / MANIFEST).unlink(missing_ok=True)  # no manifest describes half-written files
        for name, data in payloads.items():
            atomic_write_bytes(out / name, data)
        manifest = {
            "format": CARD_FORMAT_VERSION,
            "kind": "beyondvis-card-retrieval",
            "recipes": len(features),
            "emb_dim": int(emb.shape[1]),
            "image_dim": int(head_np["adapter_w1"].shape[1]),
            "image_features": "efficientnet_lite0 pooled (mean of the 1280-channel stride-32 map)",
            "ingredient_weight": 0.0,
            "recipes_by_source": counts,
            "full_text_recipes": len(lines),
            "sources": SOURCES,
            "model": {
                "joint_config": extra["joint_config"],
                "train_config": extra["train_config"],
                "train_command": train_command,
            },
            "files": {
                n: {"sha256": file_sha256(out / n), "bytes": len(d)} for n, d in payloads.items()
            },
        }
        atomic_write_json(out / MANIFEST, manifest)
    return manifest


# ------------------------------------------------------------------------ weak supervision
_WORD = re.compile(r"[a-z]+")


def _word_keys(text: str) -> set[str]:
    """Plural-insensitive words ("beignets" ~ "beignet", "ribs" ~ "rib")."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if len(w) > 4 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.add(w)
    return out


def dish_recipes(titles: list[str], dish: str) -> list[int]:
    """Indices of the titles that contain every word of ``dish`` ("apple_pie")."""
    keys = _word_keys(dish.replace("_", " "))
    return [i for i, t in enumerate(titles) if keys and keys <= _word_keys(t)]


def train_card_embedding(
    prep_dir: str | Path,
    out_dir: str | Path,
    cfg: Any,
    food101_features: str | Path | None = None,
) -> dict[str, Any]:
    """``beyondvis.recipes.retrieval.train.train_joint`` plus, optionally, weak image-recipe pairs from
    dish-labelled photos (Food-101 layout, pooled features of ``FeatureExtractor``, with the
    dish as ``recipe_ids``): each training recipe whose title names a dish is paired with all
    the photos of that dish (one drawn per visit). Model selection stays on the recipe1m_mini
    validation photos. Writes ``out_dir/model.pt``; returns history, pair counts, test metrics.
    """
    from beyondvis.recipes.retrieval.features import ImageFeatures
    from beyondvis.recipes.retrieval.train import (
        PairData,
        evaluate_joint,
        fit_joint,
        load_inputs,
        pairs_for_split,
    )

    prep, out = Path(prep_dir), Path(out_dir)
    recipes, images, w2v = load_inputs(prep, cfg.encoder)
    train_pairs = pairs_for_split(recipes, images, "train")
    info: dict[str, Any] = {"recipe1m_pairs": len(train_pairs), "weak": {}}
    if food101_features is not None:
        weak = ImageFeatures.load(food101_features)
        offset = len(images.image_ids)
        images = ImageFeatures(
            images.image_ids + weak.image_ids,
            images.recipe_ids + ["food101:" + d for d in weak.recipe_ids],
            np.concatenate([images.features, weak.features]).astype(np.float32),
            images.backbone,
        )
        from beyondvis.data.recipe1m import read_recipes_jsonl

        title_of = {r["id"]: r["title"] for r in read_recipes_jsonl(prep / "recipes.jsonl")}
        train_rows = [i for i, p in enumerate(recipes.partitions) if p == "train"]
        titles = [title_of[recipes.ids[i]] for i in train_rows]
        rec_rows, img_rows = list(train_pairs.recipe_rows), list(train_pairs.image_rows)
        for dish in sorted(set(weak.recipe_ids)):
            photos = [offset + j for j, d in enumerate(weak.recipe_ids) if d == dish]
            matched = [train_rows[k] for k in dish_recipes(titles, dish)]
            info["weak"][dish] = {"photos": len(photos), "recipes": len(matched)}
            for row in matched:
                rec_rows.append(row)
                img_rows.append(photos)
        train_pairs = PairData(rec_rows, img_rows)
    info["train_pairs"] = len(train_pairs)
    model, history = fit_joint(prep, out, cfg, recipes, images, w2v, train_pairs)
    test = evaluate_joint(model, recipes, images, pairs_for_split(recipes, images, "test"))
    return {"history": history, "pairs": info, "test": test}


# ------------------------------------------------------------------------------ measuring
def cook_queries(paths: list[Path], bundle: str | Path | None = None) -> dict[str, Any]:
    """Pooled features and predicted ingredients of photos, computed exactly as
    ``beyondvis cook`` does (the shipped cook model's backbone and ingredient predictor)."""
    import torch

    from beyondvis.io import load_image
    from beyondvis.recipes.generation.bundle import PACKAGE_BUNDLE, CookModel

    cook = CookModel(bundle or PACKAGE_BUNDLE)
    pooled, probs = [], []
    with torch.no_grad():
        for path in paths:
            fmap = cook.feature_map(load_image(path))
            _, p = cook.ingredients(fmap)
            pooled.append(fmap.mean(dim=(2, 3))[0].float().cpu().numpy())
            probs.append(p)
    return {"pooled": np.stack(pooled), "probs": np.stack(probs), "names": cook.ingredient_names}


def photo_queries(
    prep_dir: str | Path, root: str | Path, split: str, bundle: str | Path | None = None
) -> dict[str, Any]:
    """:func:`cook_queries` of the first photo of every ``split`` recipe with photos."""
    from beyondvis.data.recipe1m import image_path, read_recipes_jsonl

    rows = [
        r
        for r in read_recipes_jsonl(Path(prep_dir) / "recipes.jsonl")
        if r["partition"] == split and r.get("images")
    ]
    paths = [image_path(root, split, r["images"][0]) for r in rows]
    return {"ids": [r["id"] for r in rows], **cook_queries(paths, bundle)}


def dish_naming(
    retriever: RecipeRetriever,
    root: str | Path,
    weights: dict[str, float],
    split: str = "test",
    bundle: str | Path | None = None,
) -> dict[str, Any]:
    """On dish-labelled photos (Food-101 layout): share whose best retrieved real recipe
    (top 1, any of the top 3) names the dish, over the dishes that some shipped title names."""
    from beyondvis.data.food101 import load_food101

    photos = load_food101(root, split)
    titles = retriever.titles
    named = {d: set(dish_recipes(titles, d)) for d in photos.classes}
    items = [i for i in photos.items if named[i.class_name]]
    q = cook_queries([i.path for i in items], bundle)
    img = retriever.image_scores(q["pooled"])
    ingr = np.stack([retriever.ingredient_scores(p, q["names"]) for p in q["probs"]])
    out: dict[str, Any] = {
        "photos": len(items),
        "dishes": sorted(d for d in named if named[d]),
        "dishes_without_recipes": sorted(d for d in named if not named[d]),
    }
    for name, w in weights.items():
        top = np.argsort(-((1.0 - w) * img + w * ingr), axis=1, kind="stable")[:, :3]
        hits = [[int(t) in named[it.class_name] for t in row] for it, row in zip(items, top)]
        out[name] = {
            "top1": float(np.mean([h[0] for h in hits])),
            "top3": float(np.mean([any(h) for h in hits])),
        }
    return out


def _ranks(scores: np.ndarray, true_cols: np.ndarray) -> np.ndarray:
    true = scores[np.arange(len(scores)), true_cols][:, None]
    return (scores >= true).sum(axis=1)  # pessimistic on ties: the match itself counts 1


def measure(
    retriever: RecipeRetriever, queries: dict[str, Any], weights: tuple[float, ...] = WEIGHT_GRID
) -> dict[float, dict[str, dict[str, float]]]:
    """For each weight: metrics over all shipped recipes (``all``) and over the split's
    recipes with photos (``pairs``)."""
    row_of = {rid: i for i, rid in enumerate(retriever.ids)}
    true = np.array([row_of[i] for i in queries["ids"]])
    img = retriever.image_scores(queries["pooled"])
    ingr = np.stack([retriever.ingredient_scores(p, queries["names"]) for p in queries["probs"]])
    out = {}
    for w in weights:
        s = (1.0 - w) * img + w * ingr
        pairs = s[:, true]
        out[w] = {
            "all": rank_metrics(_ranks(s, true)),
            "pairs": rank_metrics(_ranks(pairs, np.arange(len(true)))),
        }
    return out


def choose_weight(val: dict[float, dict[str, dict[str, float]]]) -> float:
    """Lowest val medR over all recipes, then highest R@10, R@5, R@1, then the smaller weight."""

    def key(w: float) -> tuple:
        m = val[w]["all"]
        return (m["medR"], -m["R@10"], -m["R@5"], -m["R@1"], w)

    return min(val, key=key)


def evaluate_assets(
    assets: str | Path,
    prep_dir: str | Path,
    root: str | Path,
    bundle: str | Path | None = None,
    food101: str | Path | None = None,
) -> dict[str, Any]:
    """Val-chosen weight and test numbers: image only, ingredients only, both; with
    ``food101`` (a Food-101-layout folder) also how often the best recipe names the dish."""
    retriever = RecipeRetriever.load(assets)
    val_q = photo_queries(prep_dir, root, "val", bundle)
    test_q = photo_queries(prep_dir, root, "test", bundle)
    val = measure(retriever, val_q)
    w = choose_weight(val)
    test = measure(retriever, test_q, (0.0, 1.0, w))
    signals = {"image only": 0.0, "ingredients only": 1.0, f"image + ingredients (w={w})": w}
    result = {
        "format": 1,
        "chosen_weight": w,
        "val_photos": len(val_q["ids"]),
        "test_photos": len(test_q["ids"]),
        "recipes": len(retriever),
        "val": {str(k): v for k, v in val.items()},
        "test": {
            "image only": test[0.0],
            "ingredients only": test[1.0],
            f"image + ingredients (w={w})": test[w],
        },
    }
    if food101 is not None:
        result["dish_naming"] = dish_naming(retriever, food101, signals, "test", bundle)
    return result


def format_table(result: dict[str, Any]) -> str:
    n_all, n_test = result["recipes"], result["test_photos"]
    lines = [
        f"| signal | medR / {n_all:,} | R@1 | R@5 | R@10 | medR / {n_test} | R@1 | R@5 | R@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in result["test"].items():
        a, p = m["all"], m["pairs"]
        lines.append(
            f"| {name} | {a['medR']:.1f} | {a['R@1']:.3f} | {a['R@5']:.3f} | {a['R@10']:.3f} "
            f"| {p['medR']:.1f} | {p['R@1']:.3f} | {p['R@5']:.3f} | {p['R@10']:.3f} |"
        )
    dish = result.get("dish_naming")
    if dish:
        lines += [
            "",
            f"Food-101 test photos ({dish['photos']}, dishes {', '.join(dish['dishes'])}): "
            "best real recipe names the dish",
            "",
            "| signal | top 1 | any of top 3 |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {dish[name]['top1']:.3f} | {dish[name]['top3']:.3f} |"
            for name in result["test"]
        ]
    return "\n".join(lines)


def food101_features(root: str | Path, split: str, out: str | Path) -> dict[str, Any]:
    """Pooled efficientnet_lite0 features of a Food-101-layout split (dish as ``recipe_ids``)."""
    from beyondvis.backbones import FeatureExtractor, create_backbone
    from beyondvis.data.food101 import load_food101
    from beyondvis.recipes.retrieval.features import ImageFeatures

    photos = load_food101(root, split)
    extractor = FeatureExtractor(create_backbone("efficientnet_lite0"), output="pooled")
    res = extractor.extract_paths([str(i.path) for i in photos.items], batch_size=32)
    kept = [photos.items[i] for i in res.indices]
    ImageFeatures(
        [i.id for i in kept],
        [i.class_name for i in kept],
        res.features.numpy().astype(np.float32),
        "efficientnet_lite0",
    ).save(out)
    return {"photos": len(kept), "read": photos.report.summary(), "unreadable": len(res.errors)}


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m beyondvis.recipes.generation.card_export",
        description="Train / export / measure the real-recipe retrieval of the recipe card.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("food101-features", formatter_class=fmt, help="pooled photo features")
    p.add_argument("--root", required=True, help="a Food-101-layout folder")
    p.add_argument("--split", default="train", choices=["train", "test"], help="split to read")
    p.add_argument("--out", required=True, help="features file to write (.npz)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p = sub.add_parser("train", formatter_class=fmt, help="joint embedding (+ weak pairs)")
    p.add_argument("--data", required=True, help="folder written by 'recipes prepare'")
    p.add_argument("--out", required=True, help="run folder (model.pt, results.json)")
    p.add_argument("--config", default=None, help="YAML with JointTrainConfig fields")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )
    p.add_argument(
        "--food101-features",
        default=None,
        help="features written by food101-features, for weak pairs (None: no weak pairs)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    for name in ("export", "evaluate"):
        p = sub.add_parser(name, formatter_class=fmt, help=f"{name} the card assets")
        p.add_argument("--data", required=True, help="folder written by 'recipes prepare'")
        p.add_argument("--root", required=True, help="the Recipe1M-layout folder (photos)")
        p.add_argument(
            "--assets", default=str(PACKAGE_ASSETS), help="asset folder to write / measure"
        )
        p.add_argument("--bundle", default=None, help="cook model bundle (None: the shipped one)")
        p.add_argument("--json", default=None, help="also write the measurements to this file")
        p.add_argument(
            "--food101",
            default=None,
            help="Food-101-layout folder: also measure dish naming on its test photos",
        )
        p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
        if name == "export":
            p.add_argument("--model", required=True, help="model.pt of 'recipes train'")
            p.add_argument(
                "--provenance",
                default=None,
                help="provenance.jsonl (None: ROOT/provenance.jsonl)",
            )
            p.add_argument("--train-command", default="", help="recorded in the manifest")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.cmd == "food101-features":
        print(json.dumps(food101_features(args.root, args.split, args.out)))
        return 0
    if args.cmd == "train":
        from beyondvis.engine import load_config
        from beyondvis.recipes.retrieval.train import JointTrainConfig

        cfg = load_config(args.config or {}, JointTrainConfig, overrides=args.set)
        result = train_card_embedding(args.data, args.out, cfg, args.food101_features)
        atomic_write_json(Path(args.out) / "results.json", result)
        print(json.dumps({k: result[k] for k in ("history", "pairs")}))
        print(json.dumps(result["test"]["im2recipe"]))
        return 0
    if args.cmd == "export":
        prov = args.provenance or str(Path(args.root) / "provenance.jsonl")
        export_assets(args.data, args.model, args.assets, prov, args.train_command)
    result = evaluate_assets(args.assets, args.data, args.root, args.bundle, args.food101)
    if args.cmd == "export":
        manifest_path = Path(args.assets) / MANIFEST
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["ingredient_weight"] = result["chosen_weight"]
        keep = ("chosen_weight", "test", "test_photos", "dish_naming")
        manifest["measured"] = {k: result[k] for k in keep if k in result}
        atomic_write_json(manifest_path, manifest)
    if args.json:
        atomic_write_json(args.json, result)
    sys.stdout.write(
        f"ingredient weight chosen on {result['val_photos']} val photos: "
        f"{result['chosen_weight']}\n{format_table(result)}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
