"""``beyondvis recipes ...``: Recipe1M data pipeline and image <-> recipe retrieval.

beyondvis recipes prepare --root DATA/recipe1m_mini --out runs/r1m
beyondvis recipes text-features --data runs/r1m
beyondvis recipes image-features --data runs/r1m --root DATA/recipe1m_mini
beyondvis recipes train --data runs/r1m --out runs/r1m/joint_sem --config configs/recipes/joint.yaml
beyondvis recipes baselines --data runs/r1m
beyondvis recipes table --data runs/r1m --run "joint emb. + sem.=runs/r1m/joint_sem"
beyondvis recipes index --data runs/r1m --model runs/r1m/joint_sem/model.pt --out runs/bundle
beyondvis recipes search photo.jpg --bundle runs/bundle --top 5 [--json]
beyondvis recipes search --text "chicken curry with rice" --bundle runs/bundle
beyondvis recipes arithmetic --bundle runs/bundle --plus "chicken pizza" --minus pizza --plus salad
"""

from __future__ import annotations

import argparse
from pathlib import Path

from beyondvis.cli.common import (
    CLIError,
    add_config_arguments,
    add_device_argument,
    add_threads_argument,
    apply_threads,
    load_cli_config,
    print_json,
)
from beyondvis.validation import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recipes", help="Recipe1M data pipeline and image<->recipe retrieval (thesis ch. 8)"
    )
    sub = parser.add_subparsers(dest="recipes_command", metavar="STEP")

    p = sub.add_parser("prepare", help="read, clean, extract ingredients, build vocabularies")
    p.add_argument("--root", required=True, help="Recipe1M-style folder (layer1.json, ...)")
    p.add_argument("--out", required=True, help="output folder for the prepared data")
    p.add_argument(
        "--min-ingredient-count",
        type=int,
        default=10,
        help="keep ingredient names seen at least this often in training (default: 10)",
    )
    p.add_argument(
        "--ingredient-reduction",
        choices=("names", "thesis"),
        default="names",
        help="names: keep multi-word names such as 'white pepper' (default); thesis: the "
        "thesis' first/last-word clustering",
    )
    p.add_argument(
        "--min-word-count",
        type=int,
        default=10,
        help="keep instruction words seen at least this often in training",
    )
    p.add_argument(
        "--extractor",
        choices=("tagger", "slicer"),
        default="tagger",
        help="ingredient names from lines: tagger = the thesis' bi-LSTM trained on the corpus; "
        "slicer = the rule-based ingredient-slicer package",
    )
    p.add_argument(
        "--tagger-epochs", type=positive_int, default=2, help="training epochs of the tagger"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (tagger, sampling)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("text-features", help="train word2vec + skip-instructions, encode recipes")
    p.add_argument("--data", required=True, help="folder written by 'recipes prepare'")
    p.add_argument(
        "--encoder",
        choices=("skip", "minilm"),
        default="skip",
        help="instruction encoder: skip = skip-instructions trained here (thesis); minilm = "
        "the offline all-MiniLM-L6-v2 sentence embeddings",
    )
    p.add_argument(
        "--w2v-dim", type=positive_int, default=64, help="ingredient word2vec dimensions"
    )
    p.add_argument(
        "--skip-steps", type=positive_int, default=300, help="skip-instructions train steps"
    )
    add_threads_argument(p, default=1)
    p.add_argument("--seed", type=int, default=0, help="random seed of both trainings")
    p.set_defaults(func=_text_features)

    p = sub.add_parser("image-features", help="frozen backbone features of every photo")
    p.add_argument("--data", required=True, help="folder written by 'recipes prepare'")
    p.add_argument("--root", required=True, help="the Recipe1M-style folder with images/")
    p.add_argument("--backbone", default="efficientnet_lite0", help="feature network")
    p.set_defaults(func=_image_features)

    p = sub.add_parser("train", help="train the joint embedding (two-stage schedule)")
    p.add_argument("--data", required=True, help="folder written by 'recipes prepare'")
    p.add_argument("--out", required=True, help="run folder to write (model.pt, results.json)")
    add_config_arguments(p, "recipes", what="; JointTrainConfig fields, e.g. --set sem_weight=0")
    add_threads_argument(p, default=1)
    p.set_defaults(func=_train)

    p = sub.add_parser("baselines", help="random ranking and CCA on the test split")
    p.add_argument("--data", required=True, help="folder written by 'recipes prepare'")
    p.add_argument(
        "--cca-dim", type=positive_int, default=32, help="canonical directions of the CCA"
    )
    p.add_argument(
        "--cca-reg",
        type=float,
        default=0.1,
        help="CCA ridge: this fraction of the mean variance added to each covariance diagonal",
    )
    p.set_defaults(func=_baselines)

    p = sub.add_parser("table", help="markdown table of baselines + trained runs")
    p.add_argument("--data", required=True, help="folder written by 'recipes prepare'")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a table row NAME from DIR/results.json, a 'recipes train' run (repeatable)",
    )
    p.set_defaults(func=_table)

    p = sub.add_parser("index", help="embed all recipes and photos into a search bundle")
    p.add_argument("--data", required=True, help="folder written by 'recipes prepare'")
    p.add_argument("--model", required=True, help="model.pt written by 'recipes train'")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument(
        "--kind",
        choices=("fp16", "flat"),
        default="fp16",
        help="FAISS index: fp16 = float16 scalar quantizer (half the size), flat = float32",
    )
    p.set_defaults(func=_index)

    p = sub.add_parser("search", help="photo -> recipes, or --text -> photos")
    p.add_argument("image", nargs="?", help="query photo")
    p.add_argument("--text", help="query text (ingredients / steps) instead of a photo")
    p.add_argument(
        "--bundle",
        required=True,
        help="search bundle folder written by 'beyondvis recipes index' (required: none is "
        "shipped; for photo -> real recipes with the shipped embedding use 'beyondvis cook "
        "--retrieve K')",
    )
    p.add_argument("--top", type=positive_int, default=5, help="results to show (default: 5)")
    p.add_argument("--json", action="store_true", help="print the query and results as JSON")
    add_device_argument(p)
    p.set_defaults(func=_search)

    p = sub.add_parser("arithmetic", help="v(a) - v(b) + v(c) over recipe or photo embeddings")
    p.add_argument(
        "--bundle",
        required=True,
        help="search bundle folder written by 'beyondvis recipes index' (required: none is "
        "shipped; for photo -> real recipes with the shipped embedding use 'beyondvis cook "
        "--retrieve K')",
    )
    p.add_argument(
        "--plus",
        action="append",
        default=[],
        required=True,
        metavar="PHRASE",
        help="add the mean embedding of the items whose title has all these words (repeatable)",
    )
    p.add_argument(
        "--minus",
        action="append",
        default=[],
        metavar="PHRASE",
        help="subtract the mean embedding of the items whose title has all these words",
    )
    p.add_argument(
        "--space",
        choices=("recipes", "images"),
        default="recipes",
        help="embeddings to compute with and search: recipes or photos",
    )
    p.add_argument("--top", type=positive_int, default=5, help="results to show (default: 5)")
    p.add_argument("--json", action="store_true", help="print the phrases and results as JSON")
    p.set_defaults(func=_arithmetic)

    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _need_dir(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise CLIError(f"{what} {p} is not a folder")
    return p


def _prepare(args: argparse.Namespace) -> int:
    from beyondvis.recipes import PrepareConfig, format_stats
    from beyondvis.recipes import prepare_recipe1m as prepare

    root = _need_dir(args.root, "--root")
    if not (root / "layer1.json").is_file():
        raise CLIError(f"{root} has no layer1.json")
    cfg = PrepareConfig(
        extractor=args.extractor,
        min_ingredient_count=args.min_ingredient_count,
        ingredient_reduction=args.ingredient_reduction,
        min_word_count=args.min_word_count,
        tagger_epochs=args.tagger_epochs,
        seed=args.seed,
    )
    try:
        stats = prepare(root, args.out, cfg)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    print(format_stats(stats))
    print(f"written to {args.out}")
    return 0


def _text_features(args: argparse.Namespace) -> int:
    from beyondvis.recipes import build_text_features

    apply_threads(args)
    _need_dir(args.data, "--data")
    info = build_text_features(
        args.data, args.w2v_dim, skip_steps=args.skip_steps, encoder=args.encoder, seed=args.seed
    )
    print_json(info, fmt="beyondvis.recipes.text_features/1")
    return 0


def _image_features(args: argparse.Namespace) -> int:
    from beyondvis.recipes import build_image_features

    _need_dir(args.data, "--data")
    _need_dir(args.root, "--root")
    info = build_image_features(args.data, args.root, args.backbone)
    print(
        f"{info['images']} photos embedded with {info['backbone']} ({info['dim']}-d), "
        f"{len(info['skipped'])} skipped"
    )
    for line in info["skipped"]:
        print(f"  skipped {line}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from beyondvis.recipes import JointTrainConfig, format_metrics, train_run

    _need_dir(args.data, "--data")
    cfg = load_cli_config(args, JointTrainConfig, "recipes")
    apply_threads(args)
    try:
        result = train_run(args.data, args.out, cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    print(format_metrics(result["test"]))
    print(f"model: {Path(args.out) / 'model.pt'}")
    return 0


def _baselines(args: argparse.Namespace) -> int:
    from beyondvis.recipes import format_metrics, run_baselines

    _need_dir(args.data, "--data")
    try:
        out = run_baselines(args.data, cca_dim=args.cca_dim, cca_reg=args.cca_reg)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    for name, res in out.items():
        print(f"[{name}]\n" + format_metrics(res["test"]))
    return 0


def _table(args: argparse.Namespace) -> int:
    from beyondvis.recipes import results_table

    data = _need_dir(args.data, "--data")
    runs = []
    for spec in args.run:
        name, _, folder = spec.partition("=")
        runs.append((name, folder or name))
    print(results_table(data, runs))
    return 0


def _index(args: argparse.Namespace) -> int:
    from beyondvis.recipes import build_bundle

    _need_dir(args.data, "--data")
    if not Path(args.model).is_file():
        raise CLIError(f"--model {args.model} not found")
    info = build_bundle(args.data, args.model, args.out, args.kind)
    print(
        f"bundle {args.out}: {info['recipes']} recipes, {info['images']} photos, "
        f"{info['emb_dim']}-d"
    )
    return 0


def _search(args: argparse.Namespace) -> int:
    from beyondvis.recipes import open_searcher, search_lines, search_recipes

    if (args.image is None) == (args.text is None):
        raise CLIError("give exactly one of IMAGE or --text")
    if args.top < 1:
        raise CLIError("--top must be >= 1")
    device = "cpu" if args.device == "auto" else args.device
    searcher = open_searcher(args.bundle, device)
    try:
        out = search_recipes(searcher, image=args.image, text=args.text, top=args.top)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    if args.json:
        print_json(out, fmt="beyondvis.recipes.search/1")
        return 0
    for line in search_lines(out):
        print(line)
    return 0


def _arithmetic(args: argparse.Namespace) -> int:
    from beyondvis.recipes import arithmetic_lines, open_searcher, recipe_arithmetic

    searcher = open_searcher(args.bundle)
    try:
        out = recipe_arithmetic(searcher, args.plus, args.minus, args.top, args.space)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    if args.json:
        print_json(out, fmt="beyondvis.recipes.arithmetic/1")
        return 0
    for line in arithmetic_lines(out):
        print(line)
    return 0
