"""`beyondvis demo` (what `make demo` runs) works offline and prints real predictions."""

from __future__ import annotations

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
    diagonal = [line.split()[i + 1] for i, line in enumerate(out.splitlines()[-3:])]
    assert diagonal == ["1.000", "1.000", "1.000"]
