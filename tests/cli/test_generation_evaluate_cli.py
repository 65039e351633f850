"""``beyondvis generation evaluate`` with the shipped bundle on tiny folders the test writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from beyondvis.cli.main import main
from beyondvis.recipes.generation.evaluate import (
    EVAL_FORMAT,
    distinct_ngram_ratio,
    title_names_dish,
)


@pytest.fixture(scope="module")
def _models():
    """Each runtime's shipped model, loaded once for the module (every CLI call would load it)."""
    return {}


@pytest.fixture(autouse=True)
def _reuse_models(_models, monkeypatch):
    from beyondvis.recipes.generation import evaluate

    load = evaluate.load_model

    def cached(folder, runtime="auto", device="auto", threads=None):
        if runtime not in _models:
            _models[runtime] = load(folder, runtime, device, threads)
        return _models[runtime]

    monkeypatch.setattr(evaluate, "load_model", cached)


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=80)


@pytest.fixture
def food101(tmp_path):
    root = tmp_path / "food101"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("apple_pie\nbibimbap\n")
    (root / "meta" / "labels.txt").write_text("Apple pie\nBibimbap\n")
    (root / "meta" / "test.txt").write_text(
        "apple_pie/1\napple_pie/2\nbibimbap/3\nbibimbap/404\nbibimbap/corrupt\nno slash here\n"
    )
    _jpeg(root / "images" / "apple_pie" / "1.jpg", 1)
    _jpeg(root / "images" / "apple_pie" / "2.jpg", 2)
    _jpeg(root / "images" / "bibimbap" / "3.jpg", 3)
    (root / "images" / "bibimbap" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


@pytest.fixture
def recipe1m(tmp_path):
    root = tmp_path / "r1m"
    root.mkdir()

    def rec(rid, partition, title, lines):
        return {
            "id": rid,
            "title": title,
            "partition": partition,
            "url": "",
            "ingredients": [{"text": t} for t in lines],
            "instructions": [{"text": "Mix."}, {"text": "Bake."}],
        }

    layer1 = [
        rec("r1", "test", "Beef goulash", ["500 g beef", "2 onions", "1 tbsp paprika", "salt"]),
        rec("r2", "test", "Sweet bread", ["3 cups flour", "1 tsp sugar", "2 eggs", "water"]),
        rec("r3", "train", "Not scored", ["salt"]),
    ]
    layer2 = [
        {"id": "r1", "images": [{"id": "aaaa1111.jpg"}, {"id": "bad00000.jpg"}]},
        {"id": "r2", "images": [{"id": "bbbb2222.jpg"}, {"id": "gone0000.jpg"}]},
        {"id": "r3", "images": [{"id": "cccc3333.jpg"}, {"id": "trainmiss.jpg"}]},
    ]
    (root / "layer1.json").write_text(json.dumps(layer1))
    (root / "layer2.json").write_text(json.dumps(layer2))
    for name, part in [
        ("aaaa1111.jpg", "test"),
        ("bbbb2222.jpg", "test"),
        ("cccc3333.jpg", "train"),
    ]:
        _jpeg(root / "images" / part / name[0] / name[1] / name[2] / name[3] / name, len(name))
    bad = root / "images" / "test" / "b" / "a" / "d" / "0" / "bad00000.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    return root


def _run(capsys, *argv):
    # Greedy: these tests check the evaluation, not the decoder; beam on noise photos is slow.
    if "--decode" not in argv:
        argv = (*argv, "--decode", "greedy")
    code = main(["generation", "evaluate", *argv, "--threads", "1"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_food101_folder_json(food101, capsys, tmp_path):
    cards_file = tmp_path / "cards.jsonl"
    code, out, _ = _run(capsys, "--root", str(food101), "--json", "--cards", str(cards_file))
    assert code == 0
    report = json.loads(out)
    assert report["format"] == EVAL_FORMAT and report["layout"] == "food101"
    assert report["cards"] == 3 and report["photos"] == 4
    reasons = {s["item"]: s["reason"] for s in report["skipped"]}
    assert reasons["bibimbap/404"] == "image file missing"
    assert "test.txt:6" in reasons
    assert any("corrupt.jpg" in item for item in reasons)
    assert report["ingredients"] is None
    assert report["seconds_per_card"]["mean"] > 0
    cards = [json.loads(line) for line in cards_file.read_text().splitlines()]
    assert [c["dish"] for c in cards] == ["apple pie", "bibimbap", "apple pie"]  # round-robin
    assert all(c["title"] for c in cards)
    # The report scores exactly the cards it wrote (the scoring functions have unit tests).
    titles = report["titles"]
    named = sum(title_names_dish(c["title"], c["dish"]) for c in cards)
    assert titles["names_dish"] == {"count": named, "share": named / 3}
    assert set(titles["by_dish"]) == {"apple pie", "bibimbap"}
    assert sum(row["cards"] for row in titles["by_dish"].values()) == 3
    steps = [c["instructions"] for c in cards]
    assert report["steps"]["distinct_4gram_ratio"] == pytest.approx(distinct_ngram_ratio(steps))


def test_recipe1m_folder_table_with_limit(recipe1m, capsys):
    code, out, _ = _run(capsys, "--root", str(recipe1m), "--limit", "2", "--staples", "salt,water")
    assert code == 0
    assert "recipe1m test" in out and "2 cards" in out
    for row in ("model, without staples", "most frequent", "titles sharing a content word"):
        assert row in out
    assert "gone0000.jpg (recipe r2): image file missing" in out


def test_recipe1m_folder_json_scores_ingredients(recipe1m, capsys):
    code, out, _ = _run(capsys, "--root", str(recipe1m), "--json", "--decode", "sample")
    assert code == 0
    report = json.loads(out)
    assert report["cards"] == 2 and report["decode"] == "sample"
    assert any("bad00000.jpg" in s["item"] for s in report["skipped"])
    assert not any("trainmiss" in s["item"] for s in report["skipped"])  # not in the test split
    ing = report["ingredients"]
    assert ing["cards"] == 2 and ing["mean_reference_size"] >= 2  # beef, onion, paprika, ...
    base = ing["most_frequent_baseline"]
    for part in ("all", "without_staples"):
        assert set(ing["model"][part]) >= {"precision", "recall", "f1", "tp", "fp", "fn"}
        assert base[part]["k"] >= 1 and len(base[part]["names"]) == base[part]["k"]
    assert not set(base["without_staples"]["names"]) & set(report["staples"]["names"])
    assert report["titles"]["names_dish"] is None


def test_recipe1m_folder_on_pytorch(recipe1m, capsys):
    code, out, _ = _run(
        capsys,
        "--root",
        str(recipe1m),
        "--json",
        "--runtime",
        "torch",
        "--device",
        "cpu",
        "--limit",
        "1",
    )
    assert code == 0
    report = json.loads(out)
    assert report["runtime"] == "torch" and report["cards"] == 1
    assert report["ingredients"]["cards"] == 1


def test_bad_folder_is_a_one_line_error(tmp_path, capsys):
    code, _, err = _run(capsys, "--root", str(tmp_path))
    assert code == 1 and err.startswith("error: ") and "--layout" in err
    code, _, err = _run(capsys, "--root", str(tmp_path / "nope"))
    assert code == 1 and "no such folder" in err
    code, _, err = _run(capsys, "--root", str(tmp_path), "--limit", "0")
    assert code == 1 and "--limit must be >= 1" in err
