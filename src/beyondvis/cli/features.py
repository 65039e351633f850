"""``beyondvis features cache|info``: cache backbone features of an image folder on disk.

The cache is what heads train on (see docs/engine.md): run the frozen backbone once, then
``CachedFeatureDataset`` serves the memory-mapped features. A killed ``cache`` resumes when rerun
with the same arguments; a finished one is reused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from beyondvis.cli.common import CLIError, add_device_argument, print_json
from beyondvis.validation import non_negative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="cache backbone features of an image folder (memory-mapped, resumable)",
        description="Cache backbone features of images on disk, or describe a cache.",
    )
    commands = parser.add_subparsers(dest="features_command", metavar="ACTION", required=True)

    cache = commands.add_parser(
        "cache",
        help="run a backbone over every image under IMAGES and store the features in OUT",
        description="Run a frozen backbone over every image under IMAGES (bad files are skipped "
        "and listed) and store the features in OUT. Rerun the same command to resume.",
    )
    cache.add_argument(
        "images", metavar="IMAGES", help="image file or folder (searched recursively)"
    )
    cache.add_argument("out", metavar="OUT", help="cache folder")
    cache.add_argument("--backbone", default="efficientnet_lite0", help="backbone name")
    cache.add_argument("--weights", metavar="PATH", help="weights file instead of the default")
    cache.add_argument(
        "--random-init", action="store_true", help="random weights (for testing the pipeline)"
    )
    cache.add_argument(
        "--output",
        choices=("pooled", "map"),
        default="pooled",
        help="pooled vector (default) or the last feature map (B, C, H/32, W/32)",
    )
    cache.add_argument(
        "--size", type=positive_int, help="input size in pixels (default: the backbone's own)"
    )
    cache.add_argument(
        "--batch-size", type=positive_int, default=32, help="images per forward pass (default: 32)"
    )
    cache.add_argument(
        "--workers",
        type=non_negative_int,
        default=0,
        help="DataLoader worker processes (default: 0, in the main process)",
    )
    cache.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default="float32",
        help="stored precision (float16 halves the disk and memory)",
    )
    cache.add_argument("--overwrite", action="store_true", help="replace a different cache in OUT")
    add_device_argument(cache)
    cache.set_defaults(func=run_cache)

    info = commands.add_parser("info", help="describe a finished cache")
    info.add_argument("out", metavar="OUT", help="cache folder")
    info.set_defaults(func=run_info)


def run_cache(args: argparse.Namespace) -> int:
    from beyondvis.engine import FeatureCacheError, cache_image_features
    from beyondvis.io import iter_image_paths

    try:
        from beyondvis.backbones import WeightsNotFoundError, create_backbone, list_backbones
    except ImportError as exc:  # pragma: no cover - the backbones package ships with beyondvis
        raise CLIError(f"backbones are unavailable: {exc}") from None

    if args.backbone not in list_backbones():
        raise CLIError(f"unknown backbone {args.backbone!r}; choose from {list_backbones()}")
    if args.batch_size < 1:
        raise CLIError("--batch-size must be at least 1")
    from beyondvis.validation import check_image_memory, check_writable

    if args.size:  # before any image is read: --size 100000 ran out of memory at 22 GB
        check_image_memory(args.size, args.batch_size)
    check_writable(args.out, "cache folder")
    root = Path(args.images)
    if not root.exists():
        raise CLIError(f"no such file or folder: {root}")
    paths = list(iter_image_paths(root))
    if not paths:
        raise CLIError(f"no image files under {root}")
    if args.random_init:
        from beyondvis.engine import seed_everything

        seed_everything(0)  # the same random weights every run, so a rerun reuses the cache
    try:
        backbone = create_backbone(
            args.backbone, pretrained=not args.random_init, weights=args.weights
        )
    except WeightsNotFoundError as exc:
        raise CLIError(str(exc)) from None
    try:
        cache = cache_image_features(
            paths,
            args.out,
            backbone,
            output=args.output,
            size=args.size,
            batch_size=args.batch_size,
            num_workers=args.workers,
            dtype=args.dtype,
            device=args.device,
            overwrite=args.overwrite,
        )
    except (FeatureCacheError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print_json(cache.summary(), fmt="beyondvis.features.cache/1")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from beyondvis.engine import FeatureCache, FeatureCacheError

    try:
        cache = FeatureCache(args.out)
    except FeatureCacheError as exc:
        raise CLIError(str(exc)) from None
    print_json(cache.summary(), fmt="beyondvis.features.cache/1")
    return 0
