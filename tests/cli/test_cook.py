"""``beyondvis cook``: the shipped model turns the shipped food photo into a recipe card."""

from __future__ import annotations

import json

from beyondvis.cli.main import main
from beyondvis.recipes.generation.bundle import DEMO_PHOTO, PACKAGE_BUNDLE


def test_shipped_files_exist_and_are_small():
    assert DEMO_PHOTO.is_file() and DEMO_PHOTO.stat().st_size < 200_000
    total = sum(p.stat().st_size for p in PACKAGE_BUNDLE.iterdir())
    assert total < 50_000_000


def test_cook_json_on_the_shipped_photo(capsys):
    assert main(["cook", str(DEMO_PHOTO), "--json", "--device", "cpu"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert set(card) == {"title", "ingredients", "instructions", "retrieved"}
    assert isinstance(card["title"], str) and card["title"]
    assert card["ingredients"], "the predictor should find some ingredient in a goulash"
    for ing in card["ingredients"]:
        assert set(ing) == {"name", "prob"} and 0.0 <= ing["prob"] <= 1.0
    probs = [i["prob"] for i in card["ingredients"]]
    assert probs == sorted(probs, reverse=True)
    assert len({i["name"] for i in card["ingredients"]}) == len(card["ingredients"])
    assert card["instructions"] and all(isinstance(s, str) and s for s in card["instructions"])
    assert all("<unk>" not in s and "<eoi>" not in s for s in card["instructions"])
    assert len(card["retrieved"]) == 3
    for r in card["retrieved"]:
        assert set(r) == {"id", "title", "score"} and isinstance(r["score"], float)
    scores = [r["score"] for r in card["retrieved"]]
    assert scores == sorted(scores, reverse=True)


def test_cook_text_card_with_beam(capsys):
    assert main(["cook", str(DEMO_PHOTO), "--decode", "beam", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Ingredients:" in out and "Instructions:" in out and "Closest real recipes:" in out
    assert "  1. " in out


def test_bad_photo_is_an_error_with_exit_code_1(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["cook", str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot load image {bad}")


def test_missing_photo_is_an_error(tmp_path, capsys):
    assert main(["cook", str(tmp_path / "nope.jpg")]) == 1
    assert "error: cannot load image" in capsys.readouterr().err
