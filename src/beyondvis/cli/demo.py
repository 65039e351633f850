"""``beyondvis demo``: the main job on the embedded defaults, with nothing to download.

First the headline job: ``beyondvis cook`` on the food photo shipped with the package (recipe
card from the shipped inverse-cooking model). Then the backbone check: the sample photos that
scikit-image ships are classified and embedded with the default backbone and its real ImageNet
weights, and the cosine similarities of their embeddings are printed.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from beyondvis.cli.common import CLIError, add_device_argument

SAMPLE_IMAGES = ("chelsea.png", "coffee.png", "astronaut.png")


def sample_image_paths() -> list[Path]:
    """Paths of the sample photos scikit-image installs (no download involved)."""
    try:
        root = resources.files("skimage") / "data"
    except ModuleNotFoundError:
        raise CLIError(
            "scikit-image is not installed; it provides the demo's sample photos"
        ) from None
    paths = [Path(str(root / name)) for name in SAMPLE_IMAGES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise CLIError(f"scikit-image's sample photos are missing: {', '.join(missing)}")
    return paths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job on the bundled sample photos (what `make demo` runs)",
        description=__doc__,
    )
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from beyondvis import resolve_device
    from beyondvis.backbones import (
        DEFAULT_BACKBONE,
        FeatureExtractor,
        create_backbone,
        top_classes,
    )
    from beyondvis.io import load_image

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    from beyondvis.cli.cook import run as cook
    from beyondvis.recipes.generation import DEMO_PHOTO

    print(f"$ beyondvis cook {DEMO_PHOTO.name}\n")
    cook(
        argparse.Namespace(
            photo=str(DEMO_PHOTO),
            json=False,
            decode="greedy",
            seed=0,
            model=None,
            device=args.device,
        )
    )
    print()
    paths = sample_image_paths()
    backbone = create_backbone(DEFAULT_BACKBONE).to(device)
    print(f"backbone: {DEFAULT_BACKBONE} (ImageNet weights), device: {device}\n")
    for path in paths:
        print(f"{path.name}:")
        for p in top_classes(backbone, load_image(path), 3, device):
            print(f"  {p['index']:4d}  {p['label']:<28} {p['prob']:.3f}")

    extractor = FeatureExtractor(backbone, output="pooled", device=device)
    result = extractor.extract_paths([str(p) for p in paths])
    vectors = torch.nn.functional.normalize(result.features, dim=1)
    similarity = vectors @ vectors.T
    names = [Path(p).stem for p in result.paths]
    print(f"\ncosine similarity of the {vectors.shape[1]}-d embeddings ({extractor.runtime}):")
    print(" " * 11 + "".join(f"{n:>11}" for n in names))
    for name, row in zip(names, similarity.tolist()):
        print(f"{name:>11}" + "".join(f"{v:11.3f}" for v in row))
    return 0
