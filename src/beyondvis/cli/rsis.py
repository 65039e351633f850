"""``beyondvis rsis ...``: recurrent instance segmentation (train, eval, predict, export, data)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from beyondvis.cli.common import (
    CLIError,
    add_config_arguments,
    add_device_argument,
    add_resume_arguments,
    add_threads_argument,
    apply_threads,
    load_cli_config,
    print_json,
    run_outcome,
    train_with_resume,
)
from beyondvis.validation import fraction, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("rsis", help="recurrent instance segmentation: one object per step")
    sub = p.add_subparsers(dest="rsis_command", metavar="ACTION")

    t = sub.add_parser("train", help="train an RSIS model from a YAML config (resumes last.pt)")
    add_config_arguments(
        t,
        "segmentation",
        required=True,
        trailing=True,
        what="; cvppp is short for segmentation/cvppp",
    )
    add_resume_arguments(t)
    add_threads_argument(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="SBD, DiC, mask AP, object order of a checkpoint on a split")
    e.add_argument("--checkpoint", type=Path, required=True, help="best.pt / last.pt of a run")
    e.add_argument(
        "--split",
        default="test",
        choices=["train", "val", "test"],
        help="split to score (default: %(default)s)",
    )
    e.add_argument(
        "--data-root", help="dataset folder (default: the one in the checkpoint's config)"
    )
    e.add_argument(
        "--resolution",
        default="original",
        choices=["original", "model"],
        help="score masks at the original image size or the model's input size (default: %(default)s)",
    )
    e.add_argument("--stop-threshold", type=fraction, help="override the config's stop threshold")
    e.add_argument("--json", action="store_true", help="print the full report as JSON")
    e.add_argument("--plot", type=Path, help="write IoU by time step / object size (PNG or PDF)")
    add_threads_argument(e)
    add_device_argument(e)
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("predict", help="segment images: overlay PNGs (+ JSON lines with COCO RLE)")
    r.add_argument("images", nargs="+", type=Path, help="image files or folders")
    r.add_argument("--out", type=Path, required=True, help="folder for <name>_rsis.png overlays")
    r.add_argument(
        "--model",
        type=Path,
        help="exported bundle (.pt) or a training checkpoint (default: the shipped CVPPP leaf model)",
    )
    r.add_argument("--json", action="store_true", help="print one JSON line per image to stdout")
    r.add_argument(
        "--stop-threshold", type=fraction, help="stop score threshold (default: the model's)"
    )
    r.add_argument(
        "--max-steps", type=positive_int, help="most objects per image (default: the model's)"
    )
    add_threads_argument(r)
    add_device_argument(r)
    r.set_defaults(func=cmd_predict)

    s = sub.add_parser(
        "tune-stop", help="SBD and |DiC| on the validation split for a range of stop thresholds"
    )
    s.add_argument("--checkpoint", type=Path, required=True, help="best.pt / last.pt of a run")
    s.add_argument(
        "--split",
        default="val",
        choices=["train", "val", "test"],
        help="split the thresholds are scored on (default: %(default)s)",
    )
    s.add_argument(
        "--thresholds",
        type=fraction,
        nargs="+",
        default=[0.05 * i for i in range(1, 20)],
        help="stop thresholds to try (default: 0.05, 0.10, ..., 0.95)",
    )
    s.add_argument(
        "--pick",
        default="sbd",
        choices=["sbd", "abs_dic"],
        help="what the best threshold maximises (sbd) or minimises (abs_dic) (default: %(default)s)",
    )
    s.add_argument("--json", action="store_true", help="print the sweep as JSON")
    add_threads_argument(s)
    add_device_argument(s)
    s.set_defaults(func=cmd_tune_stop)

    x = sub.add_parser("export", help="checkpoint -> float16 model bundle for predict")
    x.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint (best.pt)")
    x.add_argument("--out", type=Path, required=True, help="bundle file to write (.pt)")
    x.add_argument("--info", type=Path, help="JSON file of notes (e.g. test metrics) to embed")
    x.add_argument(
        "--stop-threshold",
        type=fraction,
        help="stop threshold stored in the bundle (default: the config's)",
    )
    x.set_defaults(func=cmd_export)

    d = sub.add_parser("data", help="split sizes and objects per image of a config's dataset")
    add_config_arguments(d, "segmentation", required=True, trailing=True)
    d.set_defaults(func=cmd_data)

    c = sub.add_parser("configs", help="list the packaged RSIS configs")
    c.set_defaults(func=cmd_configs)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _config(args: argparse.Namespace):
    from beyondvis.segmentation import load_rsis_config

    return load_cli_config(args, system="segmentation", loader=load_rsis_config)


def cmd_train(args: argparse.Namespace) -> int:
    from beyondvis.segmentation import prepare, train

    apply_threads(args)
    cfg, prepared, result = train_with_resume(args, _config(args), prepare, train)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    print_json(
        {
            "format": "beyondvis.rsis.train/1",
            "dataset": prepared.splits.name,
            "train_items": len(prepared.train_data),
            f"best_{cfg.train.monitor}": result.best_metric,
            **run_outcome(result),
        },
        fmt="beyondvis.rsis.train/1",
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from beyondvis.segmentation import eval_lines, evaluate_checkpoint

    apply_threads(args)
    out = evaluate_checkpoint(
        args.checkpoint, args.split, data_root=args.data_root,
        stop_threshold=args.stop_threshold, resolution=args.resolution, device=args.device,
        plot=args.plot, progress=sys.stderr.isatty(),
    )  # fmt: skip
    if args.json:
        print_json(out, fmt="beyondvis.rsis.eval/1")
    else:
        for line in eval_lines(out):
            print(line)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from beyondvis import resolve_device
    from beyondvis.segmentation import Segmenter

    apply_threads(args)
    try:
        seg = Segmenter.load(args.model, device=resolve_device(args.device))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise CLIError(f"cannot load the RSIS model: {exc}") from None
    if args.stop_threshold is not None:
        seg.stop_threshold = args.stop_threshold
    if args.max_steps is not None:
        seg.max_steps = args.max_steps
    paths = _expand(args.images)
    if not paths:
        raise CLIError("no images given (folders are searched for image files)")
    failed = 0
    for path in paths:
        try:
            result = seg.predict_path(path, out_dir=args.out)
        except Exception as exc:  # noqa: BLE001 - a bad image is reported and skipped
            from beyondvis.io import ImageLoadError

            if not isinstance(exc, ImageLoadError | OSError | ValueError):
                raise
            failed += 1
            print(f"skipped {path}: {exc}", file=sys.stderr)
            if args.json:
                print(
                    json.dumps(
                        {
                            "format": "beyondvis.rsis.predict/1",
                            "image": str(path),
                            "error": str(exc),
                        }
                    )
                )
            continue
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"{path}: {len(result['instances'])} objects -> {result['overlay']}")
    if failed:
        print(f"{failed} of {len(paths)} images skipped", file=sys.stderr)
    return 0 if failed < len(paths) else 1


def _expand(items: list[Path]) -> list[Path]:
    from beyondvis.io import iter_image_paths

    out: list[Path] = []
    for item in items:
        if item.is_dir():
            out.extend(Path(p) for p in iter_image_paths(item))
        else:
            out.append(item)
    return out


def cmd_tune_stop(args: argparse.Namespace) -> int:
    from beyondvis.segmentation import sweep_lines, tune_stop_threshold

    apply_threads(args)
    out = tune_stop_threshold(
        args.checkpoint, args.split, list(args.thresholds), pick=args.pick, device=args.device,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    if args.json:
        print_json(out, fmt="beyondvis.rsis.tune_stop/1")
    else:
        for line in sweep_lines(out):
            print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from beyondvis.engine import CheckpointError
    from beyondvis.segmentation import export_bundle

    info = {}
    if args.info:
        try:
            info = json.loads(args.info.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CLIError(f"cannot read {args.info}: {exc}") from None
    try:
        meta = export_bundle(args.checkpoint, args.out, info, args.stop_threshold)
    except (CheckpointError, ValueError, KeyError, FileNotFoundError) as exc:
        raise CLIError(f"cannot export {args.checkpoint}: {exc}") from None
    meta["out"] = str(args.out)
    meta["bytes"] = args.out.stat().st_size
    print_json(meta, fmt="beyondvis.rsis.export/1")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from beyondvis.segmentation import dataset_summary

    print_json(dataset_summary(_config(args)), fmt="beyondvis.rsis.data/1")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    from beyondvis.segmentation import CONFIG_DIR, list_rsis_configs

    for name in list_rsis_configs():
        print(f"{name}\t{CONFIG_DIR / (name + '.yaml')}")
    return 0
