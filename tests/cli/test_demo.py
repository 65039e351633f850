"""`beyondvis demo` (what `make demo` runs) works offline and prints real predictions."""

from __future__ import annotations

import numpy as np
import torch

from beyondvis.cli.demo import sample_image_paths
from beyondvis.cli.main import main


def test_sample_images_are_installed():
    assert [p.name for p in sample_image_paths()] == ["chelsea.png", "coffee.png", "astronaut.png"]


def test_demo_classifies_and_embeds(capsys):
    assert main(["demo", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "beyondvis cook demo_food.jpg" in out
    assert "Ingredients:" in out and "Instructions:" in out and "Closest real recipes:" in out
    assert "967  espresso" in out
    assert "cosine similarity of the 1280-d embeddings" in out
    header, *rows = out.splitlines()[-4:]
    assert header.split() == ["chelsea", "coffee", "astronaut"]
    printed = np.array([[float(v) for v in row.split()[1:]] for row in rows])
    # The table must hold the backbone's own embeddings, computed here independently through
    # the documented Python API (the demo batches them through its FeatureExtractor, ONNX
    # Runtime when present); the diagonal alone (1.000) would hold for any normalised vectors.
    from beyondvis import create_backbone, load_image

    backbone = create_backbone("efficientnet_lite0")
    with torch.no_grad():
        vectors = torch.cat(
            [backbone(backbone.transform()(load_image(p))[None]) for p in sample_image_paths()]
        )
    vectors = torch.nn.functional.normalize(vectors, dim=1)
    np.testing.assert_allclose(printed, (vectors @ vectors.T).numpy(), atol=2e-3)
    # A cat, a cup of coffee and an astronaut: no pair of them is alike.
    assert printed[~np.eye(3, dtype=bool)].max() < 0.5
