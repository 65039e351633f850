"""``beyondvis sets ...``: image-to-set prediction (train, eval, tune, multi-seed table, models)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from beyondvis.cli.common import CLIError, print_json

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("sets", help="image-to-set prediction (multi-label classification)")
    sub = p.add_subparsers(dest="sets_command", metavar="ACTION")

    t = sub.add_parser("train", help="train one set predictor from a YAML config")
    t.add_argument("--config", type=Path, required=True)
    t.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. model.name=lstm train.lr=1e-3"
    )
    t.add_argument("--no-resume", action="store_true", help="start afresh even if last.pt exists")
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="score a checkpoint on a split (default: test)")
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument("--plot", type=Path, help="write the I-F1 vs cardinality plot (PNG/PDF)")
    e.add_argument("--threads", type=int)
    e.set_defaults(func=cmd_eval)

    u = sub.add_parser("tune", help="Hyperband search (Optuna, eta=3) on validation O-F1")
    u.add_argument("--config", type=Path, required=True)
    u.add_argument("overrides", nargs="*")
    u.add_argument("--out", type=Path, required=True, help="study folder (resumable)")
    u.add_argument("--trials", type=int, default=20)
    u.add_argument("--max-resource", type=int, default=27, help="R, in resource units")
    u.add_argument("--unit-epochs", type=float, default=0.15, help="epochs per resource unit")
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    u.add_argument("--threads", type=int)
    u.set_defaults(func=cmd_tune)

    m = sub.add_parser("table", help="multi-seed runs -> mean (std) table like Table 5.3")
    m.add_argument("--spec", type=Path, required=True, help="table YAML (base, models, seeds)")
    m.add_argument("--models", help="comma list: only these models of the spec")
    m.add_argument("--device", help="override train.device")
    m.add_argument("--threads", type=int)
    m.set_defaults(func=cmd_table)

    s = sub.add_parser("data", help="dataset summary (sizes, cardinality) of a config's data")
    s.add_argument("--config", type=Path, required=True)
    s.add_argument("overrides", nargs="*")
    s.set_defaults(func=cmd_data)

    n = sub.add_parser("models", help="list the set predictors and their decoding rules")
    n.set_defaults(func=cmd_models)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _config(path: Path, overrides: list[str]):
    from beyondvis.engine import ConfigError
    from beyondvis.sets.experiment import load_sets_config

    try:
        return load_sets_config(path, overrides)
    except (ConfigError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def cmd_train(args: argparse.Namespace) -> int:
    from beyondvis.data.sets_readers import SetDataError
    from beyondvis.sets.experiment import prepare, train

    _threads(args)
    cfg = _config(args.config, args.overrides)
    try:
        prepared = prepare(cfg)
    except SetDataError as exc:
        raise CLIError(str(exc)) from None
    result = train(cfg, prepared, resume=False if args.no_resume else "auto")
    print_json(
        {
            "model": cfg.model.name,
            "best_val_o_f1": result.best_metric,
            "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
            "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
            "epochs": result.epochs,
            "steps": result.steps,
            "stopped_early": result.stopped_early,
        }
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from beyondvis.engine import CheckpointError
    from beyondvis.sets.experiment import load_trained, test_report
    from beyondvis.sets.metrics import plot_f1_by_cardinality

    _threads(args)
    try:
        prepared = load_trained(args.checkpoint)
    except (CheckpointError, ValueError, KeyError) as exc:
        raise CLIError(f"cannot load {args.checkpoint}: {exc}") from None
    report = test_report(prepared, args.split)
    metrics = report.pop("_metrics")
    if args.plot:
        plot_f1_by_cardinality({report["model"]: metrics.f1_by_cardinality()}, args.plot)
        report["plot"] = str(args.plot)
    if args.json:
        print_json(report)
    else:
        print(f"{report['model']} on {args.split} ({int(report['num_images'])} images)")
        for key in ("o_f1", "c_f1", "i_f1", "iou", "card_err", "p@1"):
            if key in report:
                print(f"  {key:9s} {report[key]:.4f}")
        if "warning" in report:
            print(f"  warning: {report['warning']}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from beyondvis.sets.tune import tune

    _threads(args)
    cfg = _config(args.config, args.overrides)
    summary = tune(
        cfg,
        args.out,
        n_trials=args.trials,
        max_resource=args.max_resource,
        unit_epochs=args.unit_epochs,
        seed=args.seed,
        timeout=args.timeout,
    )
    print_json(summary)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from beyondvis.sets.multiseed import load_table_spec, run_table

    _threads(args)
    try:
        spec = load_table_spec(args.spec)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    models = [m.strip() for m in args.models.split(",")] if args.models else None
    try:
        out = run_table(spec, models, device=args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(out["table"], end="")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from beyondvis.data.sets_readers import SetDataError
    from beyondvis.sets.experiment import read_splits

    cfg = _config(args.config, args.overrides)
    try:
        splits = read_splits(cfg.data)
    except SetDataError as exc:
        raise CLIError(str(exc)) from None
    print_json({**splits.summary(), "vocab": splits.vocab[:50], "notes": splits.notes})
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from beyondvis.sets.models import SET_MODELS, create_set_predictor

    for name in SET_MODELS.names():
        model = create_set_predictor(name, 2, 2, 4, embed_dim=0, hidden_size=8, tf_heads=2)
        empty = "" if model.represents_empty_set else "  [cannot predict the empty set]"
        print(f"{name:13s} {model.decoding}{empty}")
    return 0
