"""``beyondvis classify IMAGE``: ImageNet top-k of one image, proof that the weights are real."""

from __future__ import annotations

import argparse

from beyondvis.cli.common import CLIError, add_device_argument, print_json
from beyondvis.validation import positive_int

# Named here, not imported from beyondvis.backbones: building the parser must not import
# torch/torchvision (`beyondvis --help` would take seconds). A test checks they agree.
BACKBONE_NAMES = ("efficientnet_lite0", "resnet50", "resnet101", "vgg16")
DEFAULT_BACKBONE = "efficientnet_lite0"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="ImageNet top-k classes of an image with a pretrained backbone",
        description="Print the ImageNet top-k classes of IMAGE.",
    )
    parser.add_argument("image", metavar="IMAGE", help="image file (any format Pillow reads)")
    parser.add_argument(
        "--top", type=positive_int, default=5, metavar="K", help="classes to show (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print {'predictions': [...]} as JSON")
    parser.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        choices=BACKBONE_NAMES,
        help=f"model (default {DEFAULT_BACKBONE})",
    )
    parser.add_argument("--weights", metavar="PATH", help="weights file instead of the default")
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from beyondvis import resolve_device
    from beyondvis.backbones import WeightsNotFoundError, create_backbone, top_classes
    from beyondvis.io import ImageLoadError, load_image

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    try:
        image = load_image(args.image)
    except ImageLoadError as exc:
        raise CLIError(str(exc)) from None
    try:
        backbone = create_backbone(args.backbone, pretrained=True, weights=args.weights)
    except (WeightsNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    predictions = top_classes(backbone.to(device), image, args.top, device)
    if args.json:
        print_json({"predictions": predictions}, fmt="beyondvis.classify/1")
    else:
        width = max(len(p["label"]) for p in predictions)
        for p in predictions:
            print(f"{p['index']:4d}  {p['label']:<{width}}  {p['prob']:.4f}")
    return 0
