"""``beyondvis rsis ...``: recurrent instance segmentation (train, eval, predict, export, data)."""

from __future__ import annotations

import argparse
import json
import logging
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
    prepare_run,
    print_json,
    resume_mode,
    resume_refusal,
)
from beyondvis.validation import fraction, positive_int

log = logging.getLogger(__name__)


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


def _threads(args: argparse.Namespace) -> None:
    apply_threads(args)


def _config(args: argparse.Namespace):
    from beyondvis.segmentation import load_rsis_config

    return load_cli_config(args, system="segmentation", loader=load_rsis_config)


def cmd_train(args: argparse.Namespace) -> int:
    from beyondvis.data import InstanceDataError
    from beyondvis.engine import ResumeConfigError
    from beyondvis.segmentation import prepare, train

    _threads(args)
    cfg = prepare_run(args, _config(args))  # --new-run; a changed resume refused before caching
    try:
        prepared = prepare(cfg)
    except InstanceDataError as exc:
        raise CLIError(str(exc)) from None
    try:
        result = train(cfg, prepared, resume=resume_mode(args))
    except ResumeConfigError as exc:
        raise resume_refusal(exc) from None
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    print_json(
        {
            "format": "beyondvis.rsis.train/1",
            "dataset": prepared.splits.name,
            "train_items": len(prepared.train_data),
            f"best_{cfg.train.monitor}": result.best_metric,
            "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
            "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
            "epochs": result.epochs,
            "steps": result.steps,
        },
        fmt="beyondvis.rsis.train/1",
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses

    from beyondvis import resolve_device
    from beyondvis import segmentation as ex
    from beyondvis.data import InstanceDataError
    from beyondvis.engine import CheckpointError
    from beyondvis.segmentation import plot_error_analysis

    _threads(args)
    if not args.checkpoint.is_file():
        raise CLIError(f"checkpoint not found: {args.checkpoint}")
    try:
        model, cfg, extra = ex.model_from_checkpoint(args.checkpoint)
        if args.data_root:
            cfg.data = dataclasses.replace(cfg.data, root=args.data_root)
        splits = ex.read_splits(cfg.data)
    except (CheckpointError, ValueError, KeyError, InstanceDataError) as exc:
        raise CLIError(f"cannot evaluate {args.checkpoint}: {exc}") from None
    if args.stop_threshold is not None:
        cfg.inference = dataclasses.replace(cfg.inference, stop_threshold=args.stop_threshold)
    if model.encoder is None:
        model.encoder = ex.build_backbone(cfg.encoder)
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    report, skipped = ex.evaluate_records(
        model,
        splits.split(args.split),
        splits.classes,
        cfg.data.image_size,
        cfg.inference,
        resolve_device(args.device),
        full_resolution=args.resolution == "original",
        progress=sys.stderr.isatty(),
    )
    out = {
        "format": "beyondvis.rsis.eval/1",
        "checkpoint": str(args.checkpoint),
        "dataset": splits.name,
        "split": args.split,
        "image_size": cfg.data.image_size,
        "resolution": args.resolution,
        "stop_threshold": cfg.inference.stop_threshold,
        **report,
        "skipped_items": [{"item": i, "reason": r} for i, r in skipped],
    }
    if args.plot:
        plot_error_analysis(out, str(args.plot))
        out["plot"] = str(args.plot)
    if args.json:
        print_json(out, fmt="beyondvis.rsis.eval/1")
    else:
        print(
            f"{splits.name} {args.split}: {out['num_images']} images ({args.resolution} resolution)"
        )
        print(f"  SBD     {100 * out['sbd']:.1f} (+-{100 * out['sbd_std']:.1f})")
        print(
            f"  |DiC|   {out['abs_dic']:.2f} (+-{out['abs_dic_std']:.2f})   DiC {out['dic']:+.2f}"
        )
        print(
            "  AP      "
            + "  ".join(f"{k} {100 * out[k]:.1f}" for k in ("ap", "ap50", "ap60", "ap70", "ap80"))
        )
        taus = out["order_kendall_tau"]
        print("  order   " + "  ".join(f"{k} {v:+.3f}" for k, v in taus.items()))
        for item, reason in skipped:
            print(f"  skipped {item}: {reason}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from beyondvis import resolve_device
    from beyondvis.segmentation import Segmenter

    _threads(args)
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
    from beyondvis import resolve_device
    from beyondvis import segmentation as ex
    from beyondvis.data import InstanceDataError
    from beyondvis.engine import CheckpointError
    from beyondvis.segmentation import ViewDataset

    _threads(args)
    if not args.checkpoint.is_file():
        raise CLIError(f"checkpoint not found: {args.checkpoint}")
    try:
        model, cfg, _ = ex.model_from_checkpoint(args.checkpoint)
        splits = ex.read_splits(cfg.data)
    except (CheckpointError, ValueError, KeyError, InstanceDataError) as exc:
        raise CLIError(f"cannot load {args.checkpoint}: {exc}") from None
    records = splits.split(args.split)
    if not records:
        raise CLIError(f"the {args.split} split of {splits.name} is empty")
    cfg.train.progress = sys.stderr.isatty()
    device = resolve_device(args.device)
    if model.encoder is None:  # frozen encoder: reuse (or build) the cached maps of the split
        backbone = ex.build_backbone(cfg.encoder)
        data = ex.cache_views(cfg, records, args.split, backbone, augment=False)
    else:
        pre = model.encoder.preprocess
        views = ViewDataset(records, cfg.data.image_size, None, mean=pre.mean, std=pre.std)
        data = ex.OnlineViews(views)
    rows = ex.stop_threshold_sweep(cfg, model.to(device), data, device, list(args.thresholds))
    if args.pick == "sbd":
        best = max(rows, key=lambda r: r["sbd"])
    else:
        best = min(rows, key=lambda r: (r["abs_dic"], -r["sbd"]))
    out = {"format": "beyondvis.rsis.tune-stop/1", "checkpoint": str(args.checkpoint),
           "split": args.split, "config_stop_threshold": cfg.inference.stop_threshold,
           "best": best, "sweep": rows}  # fmt: skip
    if args.json:
        print_json(out, fmt="beyondvis.rsis.tune_stop/1")
    else:
        print(f"{'threshold':>9}  {'SBD':>6}  {'DiC':>6}  {'|DiC|':>6}")
        for r in rows:
            mark = "  <- best" if r is best else ""
            print(
                f"{r['stop_threshold']:9.2f}  {100 * r['sbd']:6.1f}  {r['dic']:+6.2f}  "
                f"{r['abs_dic']:6.2f}{mark}"
            )
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
    import numpy as np

    from beyondvis.data import InstanceDataError, read_annotation
    from beyondvis.segmentation import read_splits

    cfg = _config(args)
    try:
        splits = read_splits(cfg.data)
    except InstanceDataError as exc:
        raise CLIError(str(exc)) from None
    out = {"format": "beyondvis.rsis.data/1", "dataset": splits.name, "classes": splits.classes,
           "notes": splits.notes, "splits": {}}  # fmt: skip
    for name in ("train", "val", "test"):
        counts = []
        for record in splits.split(name):
            try:
                counts.append(len(read_annotation(record)[1]))
            except (InstanceDataError, OSError) as exc:
                log.warning("skipped %s: %s", record.item_id, exc)
        c = np.asarray(counts)
        out["splits"][name] = {
            "images": len(counts),
            "objects_mean": float(c.mean()) if len(c) else 0.0,
            "objects_min": int(c.min()) if len(c) else 0,
            "objects_max": int(c.max()) if len(c) else 0,
        }
    print_json(out, fmt="beyondvis.rsis.data/1")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    from beyondvis.segmentation import CONFIG_DIR, list_rsis_configs

    for name in list_rsis_configs():
        print(f"{name}\t{CONFIG_DIR / (name + '.yaml')}")
    return 0
