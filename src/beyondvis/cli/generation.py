"""``beyondvis generation train|export|table|evaluate``: train the inverse-cooking model, make the
ch. 9 tables, score cook cards on any folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from beyondvis.cli.common import (
    CLIError,
    add_config_arguments,
    add_device_argument,
    add_resume_arguments,
    add_threads_argument,
    apply_threads,
    load_cli_config,
    new_run_dir,
    positive_int,
    print_json,
    resume_mode,
)
from beyondvis.recipes.generation import RUNTIMES


def _common(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser,
        "generation",
        default="generation/demo",
        what="; e.g. --set prepared_dir=DIR --set train_decoder.max_steps=100",
    )
    add_threads_argument(parser, default=2)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generation", help="inverse cooking: train the model, evaluate the chapter-9 tables"
    )
    sub = parser.add_subparsers(dest="generation_command", required=True)
    train = sub.add_parser("train", help="stage 1 (ingredients) + stage 2 (instructions)")
    _common(train)
    train.add_argument("--export", default=None, help="write the cook bundle to this folder")
    add_resume_arguments(train)
    train.set_defaults(func=run_train)
    export = sub.add_parser("export", help="cook bundle from a stage-1 and a stage-2 best.pt")
    _common(export)
    export.add_argument("--ingredients", required=True, help="stage-1 checkpoint (best.pt)")
    export.add_argument("--decoder", required=True, help="stage-2 checkpoint (best.pt)")
    export.add_argument("--out", required=True, help="bundle folder to write")
    export.set_defaults(func=run_export)
    memory = sub.add_parser(
        "memory",
        help="attach an in-domain kNN memory to a trained decoder (a new decoder checkpoint)",
        description="Store the decoder's hidden states over the training recipes of the photo "
        "recipes' sources, tune its mixture (k, temperature, weight) on their validation text "
        "recipes, print perplexity with and without it on the validation and test photos, and "
        "write a decoder checkpoint that `generation export --decoder` takes. JSON shape: "
        "docs/recipes-generation.md.",
    )
    _common(memory)
    memory.add_argument("--decoder", required=True, help="decoder checkpoint (best.pt)")
    memory.add_argument("--out", required=True, help="decoder checkpoint to write")
    memory.add_argument(
        "--dim",
        type=positive_int,
        default=64,
        help="PCA dimensions of a stored state (default: 64)",
    )
    memory.set_defaults(func=run_memory)
    from beyondvis.cli.cook import register_export_onnx

    register_export_onnx(sub)
    table = sub.add_parser("table", help="evaluate a chapter-9 table on the test split")
    _common(table)
    table.add_argument(
        "which",
        choices=["ingredients", "fusions", "retrieval"],
        help="ingredients: the ingredient predictors (F1, IoU); fusions: the decoder's "
        "image/ingredient fusions (perplexity); retrieval: the shipped model against RI2L",
    )
    table.add_argument(
        "--models",
        default=None,
        help="comma-separated ingredient models, or fusion rows (concat, ..., I2R, L2R)",
    )
    table.add_argument("--bundle", default=None, help="model bundle for `retrieval`")
    table.add_argument("--out", default=None, help="also write the rows to this JSON file")
    table.set_defaults(func=run_table)
    _register_evaluate(sub)
    curve = sub.add_parser(
        "curve", help="plot validation perplexity against steps of a decoder run (PNG)"
    )
    curve.add_argument(
        "run",
        nargs="+",
        help="decoder run folder (with metrics.csv) or its metrics.csv; several = consecutive "
        "stages, each warm-started from the one before, drawn on one step axis",
    )
    curve.add_argument("--out", required=True, help="PNG file to write")
    curve.add_argument(
        "--reference", type=float, default=None, help="draw this perplexity as a dashed line"
    )
    curve.add_argument(
        "--reference-label", default="before", help="legend of --reference (default: before)"
    )
    curve.add_argument(
        "--final",
        type=float,
        default=None,
        help="mark this perplexity, reached after the last step without training (e.g. with "
        "`generation memory`), with a star (default: none)",
    )
    curve.add_argument("--final-label", default="final", help="label of --final (default: final)")
    curve.set_defaults(func=run_curve)


def run_curve(args: argparse.Namespace) -> int:
    from beyondvis.recipes.generation import plot_perplexity

    paths = [Path(p) / "metrics.csv" if Path(p).is_dir() else Path(p) for p in args.run]
    try:
        points = plot_perplexity(
            paths,
            args.out,
            args.reference,
            args.reference_label,
            final=args.final,
            final_label=args.final_label,
        )
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    for step, value in points:
        print(f"step {step:>6}  val_ppl {value:9.2f}")
    print(f"wrote {args.out}")
    return 0


def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        help="score cook cards on any Recipe1M- or Food-101-layout folder",
        description=(
            "Make a card (beyondvis cook) for every photo of a split and score it: ingredient "
            "P/R/F1 with and without staples against a most-frequent-ingredients baseline "
            "(Recipe1M layout), titles naming the dish / sharing a content word with the real "
            "title, distinct titles, distinct-4-gram ratio, repeated steps, steps naming a "
            "predicted ingredient, seconds per card. JSON shape: docs/recipes-generation.md."
        ),
    )
    evaluate.add_argument("--root", required=True, help="dataset folder to evaluate (required)")
    evaluate.add_argument(
        "--layout",
        choices=["auto", "recipe1m", "food101"],
        default="auto",
        help="folder layout (default: auto = recipe1m if layer1.json, food101 if meta/classes.txt)",
    )
    evaluate.add_argument(
        "--split",
        default="test",
        help="train|val|test (Recipe1M), train|test (Food-101) (default: test)",
    )
    evaluate.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most N photos, taken round-robin over classes / recipes (default: all)",
    )
    evaluate.add_argument(
        "--decode",
        default=None,
        help="decoding passed to cook: greedy, beam, sample, ... (default: the card's own)",
    )
    evaluate.add_argument(
        "--seed", type=int, default=0, help="random seed for --decode sample (default: 0)"
    )
    evaluate.add_argument(
        "--model", default=None, help="model bundle folder (default: the shipped bundle)"
    )
    evaluate.add_argument(
        "--staples",
        default=None,
        help="comma-separated staples (default: the bundle's list, else evaluate.STAPLES)",
    )
    evaluate.add_argument(
        "--json", action="store_true", help="print the report as JSON (default: a table)"
    )
    evaluate.add_argument(
        "--cards",
        default=None,
        help="also write every card as JSON Lines to this file (default: no)",
    )
    add_threads_argument(evaluate, what=" or ONNX Runtime (the cook model's runtime)")
    evaluate.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="as for cook: auto = ONNX Runtime on the CPU when the bundle ships its export, "
        "else PyTorch (default: auto)",
    )
    add_device_argument(evaluate)
    evaluate.set_defaults(func=run_evaluate)


def _config(args: argparse.Namespace):
    from beyondvis.recipes.generation import load_generation_config

    apply_threads(args)
    return load_cli_config(args, system="generation", loader=load_generation_config)


def run_train(args: argparse.Namespace) -> int:
    from beyondvis.recipes.generation import run_training

    cfg = _config(args)
    if args.new_run:
        cfg.out_dir = str(new_run_dir(cfg.out_dir))
    try:
        summary = run_training(cfg, export_to=args.export, resume=resume_mode(args))
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from exc
    print_json(summary, fmt="beyondvis.generation.train/1")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from beyondvis.engine import CheckpointError
    from beyondvis.recipes.generation import export_from_checkpoints

    cfg = _config(args)
    try:
        summary = export_from_checkpoints(cfg, args.ingredients, args.decoder, args.out)
    except (OSError, ValueError, CheckpointError) as exc:
        raise CLIError(str(exc)) from exc
    print_json(summary, fmt="beyondvis.generation.export/1")
    return 0


def run_memory(args: argparse.Namespace) -> int:
    from beyondvis.engine import CheckpointError
    from beyondvis.recipes.generation import build_decoder_memory

    cfg = _config(args)
    try:
        summary = build_decoder_memory(cfg, args.decoder, args.out, args.dim)
    except (OSError, ValueError, CheckpointError) as exc:
        raise CLIError(str(exc)) from exc
    print_json(summary, fmt="beyondvis.generation.memory/1")
    return 0


def run_table(args: argparse.Namespace) -> int:
    from beyondvis.recipes.generation import generation_table, write_table

    cfg = _config(args)
    models = args.models.split(",") if args.models else None
    try:
        rows = generation_table(cfg, args.which, models, bundle=args.bundle)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from exc
    if args.out:
        write_table(rows, args.out)  # as printed
    print_json(rows, fmt="beyondvis.generation.table/1")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import sys

    from beyondvis.recipes.generation import (
        EvaluateError,
        evaluate_folder,
        format_report,
        write_cards,
    )

    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be >= 1, got {args.limit}")
    staples = [s.strip() for s in args.staples.split(",") if s.strip()] if args.staples else None
    cards: list = []
    try:
        report = evaluate_folder(
            args.root,
            layout=None if args.layout == "auto" else args.layout,
            split=args.split,
            limit=args.limit,
            decode=args.decode,
            model_folder=args.model,
            device=args.device,
            staples=staples,
            seed=args.seed,
            cards_out=cards,
            runtime=args.runtime,
            threads=args.threads,
        )
    except EvaluateError as exc:
        raise CLIError(str(exc)) from exc
    if args.cards:
        write_cards(cards, args.cards)
    if args.json:
        print_json(report, fmt="beyondvis.generation.evaluate/1")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return 0
