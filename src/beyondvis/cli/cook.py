"""``beyondvis cook PHOTO [PHOTO ...]``: the main job — a recipe card generated from food photos.

The card runs on ONNX Runtime + NumPy when the bundle ships its ONNX export (a fresh process then
never imports torch, torchvision or timm: ~0.5 s of start-up instead of ~4 s), else on PyTorch.
Nothing heavy is imported at module level: ``beyondvis --help`` imports every CLI module.

JSON (``--json``): one photo prints one indented object; several photos print JSON Lines, one
object per photo in the order given. Each object is

    {"format": 1, "photo": PATH, "runtime": "onnxruntime" | "torch", "decode": METHOD,
     "title": str, "ingredients": [{"name", "prob"}], "instructions": [str],
     "retrieved": [{"id", "title", "score", "source", "licence", ...}]}

or, for a photo that could not be read, ``{"format": 1, "photo": PATH, "error": MESSAGE}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from beyondvis.cli.common import CLIError
from beyondvis.recipes.generation import RUNTIMES
from beyondvis.validation import device_choice, non_negative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cook",
        help="generate a recipe (title, ingredients, steps) from food photos",
        description=(
            "Predict the ingredients of each food photo, generate a title and cooking steps from "
            "the photo and those ingredients (inverse cooking, thesis chapter 9) and list the "
            "closest real recipes, the best one in full. Runs the model shipped inside the "
            "package, offline. A photo that cannot be read is reported on stderr (and as an "
            "error line with --json) and skipped; the exit status is then 1."
        ),
    )
    parser.add_argument("photo", nargs="+", metavar="PHOTO", help="food photos (JPEG, PNG, ...)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the card as JSON (JSON Lines, one object per photo, with several photos)",
    )
    parser.add_argument(
        "--decode",
        choices=["greedy", "beam", "sample"],
        default=None,
        help="instruction decoding: greedy, beam or sample, each with the anti-repetition "
        "rules (default: the bundle's choice in its decoding.json; beam for the shipped model)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed for --decode sample (default: %(default)s)"
    )
    parser.add_argument(
        "--retrieve",
        type=non_negative_int,
        default=3,
        metavar="K",
        help="list the K closest real recipes and print the best one in full; 0: none "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads (intra-op) for ONNX Runtime / PyTorch, >= 1 (default: the "
        "runtime's own, one per core)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="auto: ONNX Runtime on the CPU when the bundle ships its ONNX export and the "
        "device is cpu or auto, else PyTorch (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model bundle folder (default: the one shipped in the package)",
    )
    parser.add_argument(
        "--device",
        type=device_choice,
        default="auto",
        help="PyTorch path: auto (CUDA when present, else CPU), cpu, cuda, cuda:N; "
        "ONNX Runtime runs on the CPU (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from beyondvis.io import ImageLoadError, load_image
    from beyondvis.recipes.generation import (
        PACKAGE_BUNDLE,
        card_error_json,
        card_json,
        format_card,
        load_model,
    )

    photos = [args.photo] if isinstance(args.photo, str) else list(args.photo)
    folder = Path(args.model) if args.model else PACKAGE_BUNDLE
    model, runtime = load_model(
        folder, getattr(args, "runtime", "auto"), getattr(args, "device", "auto"),
        getattr(args, "threads", None),
    )  # fmt: skip
    model.retrieve_k = getattr(args, "retrieve", 3)
    decode = getattr(args, "decode", None) or model.default_decode
    lines = args.json and len(photos) > 1
    failed = 0
    for n, photo in enumerate(photos):
        try:
            image = load_image(photo)
        except (ImageLoadError, OSError) as exc:
            message = (
                str(exc) if isinstance(exc, ImageLoadError) else f"cannot load image {photo}: {exc}"
            )
            print(f"error: {message}", file=sys.stderr)
            failed += 1
            if args.json:
                _emit(card_error_json(photo, message), lines)
            continue
        result = model.cook(image, decode, seed=args.seed)
        if args.json:
            _emit(card_json(result, photo, runtime, decode), lines)
        else:
            if len(photos) > 1:
                sys.stdout.write(("\n" if n else "") + f"==> {photo} <==\n")
            sys.stdout.write(format_card(result) + "\n")
        sys.stdout.flush()
    return 1 if failed else 0


def _emit(obj: dict[str, Any], lines: bool) -> None:
    if lines:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    else:
        json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")


# -- `beyondvis generation export-onnx` (registered by cli/generation.py) ----------------------
def register_export_onnx(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export-onnx",
        help="write a cook bundle's ONNX export (what a torch-free `beyondvis cook` runs)",
        description=(
            "Export the networks of a cook bundle (backbone + ingredient predictor, decoder "
            "conditions, one incremental decoder step) to ONNX next to its model.pt, check them "
            "against PyTorch and write onnx.json last. Run it after every change of model.pt: "
            "cook ignores an export made from another model.pt and falls back to PyTorch."
        ),
    )
    parser.add_argument(
        "--model",
        default=None,
        help="bundle folder (default: the one shipped in the package)",
    )
    parser.add_argument(
        "--float32",
        action="store_true",
        help="store float32 weights (default: float16 weights, float32 arithmetic)",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip comparing ONNX Runtime with PyTorch on a probe (default: check)",
    )
    parser.set_defaults(func=run_export_onnx)


def run_export_onnx(args: argparse.Namespace) -> int:
    from beyondvis.recipes.generation import PACKAGE_BUNDLE, BundleError, export_onnx_bundle

    folder = Path(args.model) if args.model else PACKAGE_BUNDLE
    try:
        manifest = export_onnx_bundle(folder, float16=not args.float32, check=not args.no_check)
    except (BundleError, OSError, RuntimeError) as exc:
        raise CLIError(str(exc)) from exc
    for name, entry in manifest["files"].items():
        print(f"{entry['bytes'] / 1e6:7.2f} MB  {folder / name}")
    print(f"wrote {folder / 'onnx.json'}")
    return 0
