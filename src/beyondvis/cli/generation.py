"""``beyondvis generation train|table``: train the inverse-cooking model, make the ch. 9 tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from beyondvis.cli.common import CLIError, print_json


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/generation/demo.yaml", help="YAML config")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. prepared_dir=DIR or train_decoder.max_steps=100",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generation", help="inverse cooking: train the model, evaluate the chapter-9 tables"
    )
    sub = parser.add_subparsers(dest="generation_command", required=True)
    train = sub.add_parser("train", help="stage 1 (ingredients) + stage 2 (instructions)")
    _common(train)
    train.add_argument("--export", default=None, help="write the cook bundle to this folder")
    train.set_defaults(func=run_train)
    export = sub.add_parser("export", help="cook bundle from a stage-1 and a stage-2 best.pt")
    _common(export)
    export.add_argument("--ingredients", required=True, help="stage-1 checkpoint (best.pt)")
    export.add_argument("--decoder", required=True, help="stage-2 checkpoint (best.pt)")
    export.add_argument("--out", required=True, help="bundle folder to write")
    export.set_defaults(func=run_export)
    table = sub.add_parser("table", help="evaluate a chapter-9 table on the test split")
    _common(table)
    table.add_argument("which", choices=["ingredients", "fusions", "retrieval"])
    table.add_argument(
        "--models",
        default=None,
        help="comma-separated ingredient models, or fusion rows (concat, ..., I2R, L2R)",
    )
    table.add_argument("--bundle", default=None, help="model bundle for `retrieval`")
    table.add_argument("--out", default=None, help="also write the rows to this JSON file")
    table.set_defaults(func=run_table)


def _config(args: argparse.Namespace):
    import torch

    from beyondvis.recipes.generation.experiment import load_generation_config

    torch.set_num_threads(max(1, args.threads))
    try:
        return load_generation_config(args.config, args.set)
    except (OSError, ValueError) as exc:
        raise CLIError(f"bad config {args.config}: {exc}") from exc


def run_train(args: argparse.Namespace) -> int:
    from beyondvis.recipes.generation.experiment import run_training

    cfg = _config(args)
    try:
        summary = run_training(cfg, export_to=args.export)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from exc
    print_json(summary)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from beyondvis.engine import CheckpointError
    from beyondvis.recipes.generation.experiment import export_from_checkpoints

    cfg = _config(args)
    try:
        summary = export_from_checkpoints(cfg, args.ingredients, args.decoder, args.out)
    except (OSError, ValueError, CheckpointError) as exc:
        raise CLIError(str(exc)) from exc
    print_json(summary)
    return 0


def run_table(args: argparse.Namespace) -> int:
    from beyondvis.recipes.generation import tables
    from beyondvis.recipes.generation.bundle import PACKAGE_BUNDLE
    from beyondvis.recipes.generation.experiment import load_data

    cfg = _config(args)
    try:
        data = load_data(cfg)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from exc
    if args.which == "ingredients":
        models = tuple(args.models.split(",")) if args.models else tables.INGREDIENT_MODELS
        rows = tables.ingredient_table(cfg, data, models)
    elif args.which == "fusions":
        only = tuple(args.models.split(",")) if args.models else None
        rows = tables.fusion_table(cfg, data, only)
    else:
        rows = tables.retrieval_table(data, args.bundle or PACKAGE_BUNDLE)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print_json(rows)
    return 0
