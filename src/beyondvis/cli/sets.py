"""``beyondvis sets ...``: image-to-set prediction (train, eval, tune, probe, multi-seed table,
models, packaged configs)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from beyondvis.cli.common import (
    CLIError,
    add_config_arguments,
    add_resume_arguments,
    add_threads_argument,
    apply_threads,
    load_cli_config,
    print_json,
    run_outcome,
    train_with_resume,
)
from beyondvis.validation import device_choice, positive_float, positive_int

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("sets", help="image-to-set prediction (multi-label classification)")
    sub = p.add_subparsers(dest="sets_command", metavar="ACTION")

    t = sub.add_parser(
        "train",
        help="train one set predictor from a YAML config (into train.out_dir, by default "
        "runs/sets/<config>/<model>/seed<k>; resumes its last.pt when the settings match)",
    )
    add_config_arguments(t, "sets", required=True, trailing=True)
    add_resume_arguments(t)
    add_threads_argument(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "eval",
        help="score a checkpoint on its own split, or on any folder in a dataset layout (--root)",
    )
    e.add_argument("--checkpoint", type=Path, required=True, help="best.pt / last.pt of a run")
    e.add_argument(
        "--root",
        type=Path,
        help="score this folder instead of the checkpoint's data (no training data needed)",
    )
    e.add_argument(
        "--dataset",
        choices=["miml", "voc", "coco", "nuswide", "ade20k", "jsonl", "food101"],
        help="layout of --root (default: the checkpoint's dataset); jsonl: a .jsonl file or a "
        "folder with test.jsonl",
    )
    e.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        help="split to score (default: test; with --root: all images of the folder)",
    )
    e.add_argument(
        "--device", type=device_choice, default="cpu", help="cpu | cuda | auto (default: cpu)"
    )
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument("--plot", type=Path, help="write the I-F1 vs cardinality plot (PNG/PDF)")
    add_threads_argument(e)
    e.set_defaults(func=cmd_eval)

    u = sub.add_parser(
        "tune",
        help="Hyperband search (Optuna, eta=3) on validation O-F1",
    )
    add_config_arguments(u, "sets", required=True, trailing=True, what=" (the base of every trial)")
    u.add_argument("--out", type=Path, required=True, help="study folder (resumable)")
    u.add_argument("--trials", type=positive_int, default=20, help="total trials of the study")
    u.add_argument("--max-resource", type=positive_int, default=27, help="R, in resource units")
    u.add_argument(
        "--unit-epochs", type=positive_float, default=1.0, help="epochs per resource unit"
    )
    u.add_argument("--seed", type=int, default=0, help="sampler seed and every trial's seed")
    u.add_argument(
        "--timeout", type=positive_float, help="stop starting trials after this many seconds"
    )
    u.add_argument("--save-config", type=Path, help="also write the best config here")
    add_threads_argument(u)
    u.set_defaults(func=cmd_tune)

    b = sub.add_parser(
        "probe",
        help="linear-probe baseline: one-vs-rest logistic regression on pooled cached features",
    )
    add_config_arguments(b, "sets", required=True, trailing=True)
    b.add_argument("--views", action="store_true", help="also train on the cached augmented views")
    add_threads_argument(b)
    b.set_defaults(func=cmd_probe)

    m = sub.add_parser("table", help="multi-seed runs -> mean (std) table like Table 5.3")
    m.add_argument(
        "--spec", required=True, help="table YAML (base, models, seeds, probe) or packaged name"
    )
    m.add_argument("--models", help="comma list: only these models of the spec ('probe' too)")
    m.add_argument(
        "--device", type=device_choice, help="override train.device (default: the configs' choice)"
    )
    m.add_argument(
        "--seeds", help="comma list: only these seeds of the spec (default: all of them)"
    )
    add_threads_argument(m)
    m.set_defaults(func=cmd_table)

    s = sub.add_parser("data", help="dataset summary (sizes, cardinality) of a config's data")
    add_config_arguments(s, "sets", required=True, trailing=True)
    s.set_defaults(func=cmd_data)

    c = sub.add_parser("configs", help="list the set configs shipped inside the package")
    c.set_defaults(func=cmd_configs)

    n = sub.add_parser("models", help="list the set predictors and their decoding rules")
    n.set_defaults(func=cmd_models)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _config(args: argparse.Namespace):
    from beyondvis.sets import load_sets_config

    return load_cli_config(args, system="sets", loader=load_sets_config)


def cmd_train(args: argparse.Namespace) -> int:
    from beyondvis.sets import prepare, train

    apply_threads(args)
    cfg, _, result = train_with_resume(args, _config(args), prepare, train)
    print_json(
        {
            "model": cfg.model.name,
            "best_val_o_f1": result.best_metric,
            **run_outcome(result),
            "stopped_early": result.stopped_early,
        },
        fmt="beyondvis.sets.train/1",
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from beyondvis.sets import eval_lines, score_checkpoint

    apply_threads(args)
    if args.root is not None:
        if not args.root.exists():
            raise CLIError(f"--root {args.root} does not exist")
    elif args.dataset:
        raise CLIError("--dataset needs --root")
    elif args.split == "all":
        raise CLIError("--split all needs --root")
    report = score_checkpoint(
        args.checkpoint, args.root, args.dataset, args.split, device=args.device, plot=args.plot
    )
    if args.json:
        print_json(report, fmt="beyondvis.sets.eval/1")
    else:
        for line in eval_lines(report, args.split, args.root):
            print(line)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import sys

    from beyondvis.data import SetDataError
    from beyondvis.sets import run_tune as tune
    from beyondvis.sets import tune_summary_line

    apply_threads(args)
    cfg = _config(args)
    try:
        summary = tune(
            cfg,
            args.out,
            n_trials=args.trials,
            max_resource=args.max_resource,
            unit_epochs=args.unit_epochs,
            seed=args.seed,
            timeout=args.timeout,
            save_config=args.save_config,
        )
    except (SetDataError, ValueError, RuntimeError) as exc:
        raise CLIError(str(exc)) from None
    print_json(summary, fmt="beyondvis.sets.tune/1")
    print(tune_summary_line(summary, args.out), file=sys.stderr)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from beyondvis.data import SetDataError
    from beyondvis.sets import run_probe

    apply_threads(args)
    cfg = _config(args)
    try:
        report = run_probe(cfg, views=args.views)
    except (SetDataError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    report.pop("_metrics")
    print_json(report, fmt="beyondvis.sets.probe/1")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from beyondvis.sets import load_table_spec, run_table

    apply_threads(args)
    try:
        spec = load_table_spec(args.spec)
    except (OSError, ValueError, yaml_error()) as exc:
        raise CLIError(str(exc)) from None
    models = [m.strip() for m in args.models.split(",")] if args.models else None
    try:
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else None
        out = run_table(spec, models, device=args.device, seeds=seeds)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(out["table"], end="")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from beyondvis.data import SetDataError
    from beyondvis.sets import read_splits

    cfg = _config(args)
    try:
        splits = read_splits(cfg.data)
    except SetDataError as exc:
        raise CLIError(str(exc)) from None
    print_json(
        {**splits.summary(), "vocab": splits.vocab[:50], "notes": splits.notes},
        fmt="beyondvis.sets.data/1",
    )
    return 0


def yaml_error() -> type[Exception]:
    import yaml

    return yaml.YAMLError


def cmd_configs(args: argparse.Namespace) -> int:
    from beyondvis.sets import list_set_configs as packaged_configs

    names = packaged_configs()
    if not names:
        print("no packaged set configs")
    for name in names:
        print(name)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from beyondvis.sets import SET_MODELS, create_set_predictor

    for name in SET_MODELS.names():
        model = create_set_predictor(name, 2, 2, 4, embed_dim=0, hidden_size=8, tf_heads=2)
        empty = "" if model.represents_empty_set else "  [cannot predict the empty set]"
        print(f"{name:13s} {model.decoding}{empty}")
    return 0
