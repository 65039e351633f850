"""``beyondvis cook PHOTO``: the main job — a recipe card generated from a food photo."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from beyondvis.cli.common import CLIError, add_device_argument, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cook",
        help="generate a recipe (title, ingredients, steps) from a food photo",
        description=(
            "Predict the ingredients of a food photo, generate a title and cooking steps from "
            "the photo and those ingredients (inverse cooking, thesis chapter 9) and list the "
            "3 closest real recipes. Runs the model shipped inside the package, offline."
        ),
    )
    parser.add_argument("photo", help="a food photo (JPEG, PNG, ...)")
    parser.add_argument("--json", action="store_true", help="print the card as JSON")
    parser.add_argument(
        "--decode",
        choices=["greedy", "beam", "sample"],
        default="greedy",
        help="instruction decoding: greedy (default, the thesis' choice), beam (3), sample",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for --decode sample")
    parser.add_argument("--model", default=None, help="model bundle folder (default: shipped)")
    add_device_argument(parser)
    parser.set_defaults(func=run)


def format_card(result) -> str:
    lines = [result.title, "=" * len(result.title), "", "Ingredients:"]
    width = max((len(i["name"]) for i in result.ingredients), default=0)
    for ing in result.ingredients:
        lines.append(f"  - {ing['name']:<{width}}  {ing['prob']:.2f}")
    if not result.ingredients:
        lines.append("  (none predicted)")
    lines += ["", "Instructions:"]
    for n, step in enumerate(result.instructions, 1):
        lines.append(
            textwrap.fill(
                step, 88, initial_indent=f"  {n}. ", subsequent_indent=" " * (len(str(n)) + 4)
            )
        )
    if not result.instructions:
        lines.append("  (no steps generated)")
    lines += ["", "Closest real recipes:"]
    for r in result.retrieved:
        lines.append(f"  {r['score']:.3f}  {r['title']}  [{r['id']}]")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from beyondvis.device import resolve_device
    from beyondvis.io import ImageLoadError, load_image
    from beyondvis.recipes.generation.bundle import PACKAGE_BUNDLE, BundleError, CookModel

    try:
        image = load_image(args.photo)
    except ImageLoadError as exc:
        raise CLIError(str(exc)) from exc
    except OSError as exc:
        raise CLIError(f"cannot load image {args.photo}: {exc}") from exc
    folder = Path(args.model) if args.model else PACKAGE_BUNDLE
    try:
        model = CookModel(folder, device=str(resolve_device(args.device)))
    except BundleError as exc:
        raise CLIError(str(exc)) from exc
    options = {}
    if args.decode == "sample":
        options["generator"] = torch.Generator(device=model.device).manual_seed(args.seed)
    result = model.cook(image, args.decode, **options)
    if args.json:
        print_json(result.to_json())
    else:
        sys.stdout.write(format_card(result) + "\n")
    return 0
