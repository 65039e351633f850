"""End to end on a tiny synthetic Recipe1M folder: prepare -> text features -> joint training
-> CCA/random baselines -> search bundle -> CLI search/table (image features are synthetic so the
test needs no backbone weights)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from beyondvis.cli.main import main
from beyondvis.recipes.pipeline.ingredients import RuleBasedExtractor
from beyondvis.recipes.pipeline.prepare import PrepareConfig, prepare
from beyondvis.recipes.pipeline.tagger import TrainedTagger
from beyondvis.recipes.retrieval.features import ImageFeatures, build_text_features
from beyondvis.recipes.retrieval.search import RecipeSearcher, build_bundle
from beyondvis.recipes.retrieval.train import (
    JointTrainConfig,
    fit_cca_baseline,
    random_baseline,
    train_joint,
)

DISHES = {
    "tomato soup": ["tomato", "onion", "garlic", "olive oil"],
    "chicken curry": ["chicken", "onion", "curry powder", "rice"],
    "apple pie": ["apple", "sugar", "butter", "flour"],
    "green salad": ["lettuce", "cucumber", "olive oil", "lemon juice"],
}


def _make_root(root, n=48):
    rng = random.Random(0)
    layer1, layer2 = [], []
    dishes = list(DISHES)
    for i in range(n):
        dish = dishes[i % len(dishes)]
        names = DISHES[dish]
        bare = (i // 4) % 2 == 0  # half the recipes of each dish list bare names, as in real data
        lines = [nm.title() if bare else f"{rng.randint(1, 3)} cups chopped {nm}" for nm in names]
        # blocks of four (one recipe of each dish): every split holds all four dishes (with
        # i % 4 the test split was one dish, and no ranking could tell its pairs apart)
        partition = ["train", "train", "val", "test"][(i // 4) % 4] if i >= 8 else "train"
        layer1.append(
            {
                "id": f"r{i:03d}",
                "title": f"My {dish} {i}",
                "partition": partition,
                "url": "",
                "ingredients": [{"text": t} for t in lines],
                "instructions": [
                    {"text": f"Prepare the {names[0]} and {names[1]}."},
                    {"text": f"Cook the {dish} slowly."},
                    {"text": "Serve warm."},
                ],
            }
        )
        layer2.append({"id": f"r{i:03d}", "images": [{"id": f"{i:04d}abcd.jpg"}]})
    layer1.append({"id": "broken", "partition": "train"})  # malformed: skipped and reported
    (root / "layer1.json").write_text(json.dumps(layer1))
    (root / "layer2.json").write_text(json.dumps(layer2))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("r1m")
    root, out = base / "root", base / "prep"
    root.mkdir()
    _make_root(root)
    cfg = PrepareConfig(
        min_ingredient_count=1, min_word_count=1, tagger_epochs=2, baseline_sample=30,
        bigram_min_count=1,
    )  # fmt: skip
    stats = prepare(root, out, cfg)
    build_text_features(out, w2v_dim=8, w2v_epochs=2, skip_steps=3)
    # Synthetic "photo" features: one cluster per dish, so retrieval is learnable.
    rows = [json.loads(line) for line in (out / "recipes.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(len(DISHES), 32))
    dish_of = {d: k for k, d in enumerate(DISHES)}
    feats = [
        centers[dish_of[" ".join(r["title"].split()[1:3])]] + 0.1 * rng.normal(size=32)
        for r in rows
    ]
    ImageFeatures(
        [f"{r['id']}.jpg" for r in rows], [r["id"] for r in rows], np.asarray(feats, np.float32),
        "synthetic",
    ).save(out / "image_features.npz")  # fmt: skip
    return root, out, stats


def test_prepare_outputs_and_stats(prepared):
    _, out, stats = prepared
    assert stats["read"]["malformed_skipped"] == 1
    assert stats["cleaning"]["after"] == 48
    ext = stats["ingredient_extraction"]
    assert ext["labelled_lines"] > 0 and ext["agreement_sample"] == 30
    # The agreement counts whole lines out of the 30 sampled, and its examples are what the
    # saved tagger and the slicer give for those lines now.
    agreeing = ext["agreement_with_slicer"] * 30
    assert agreeing == pytest.approx(round(agreeing), abs=2e-3)
    lines = [e["line"] for e in ext["agreement_examples"]]
    assert len(lines) == 10
    assert TrainedTagger.load(out / "tagger.pt")(lines) == [
        e["tagger"] for e in ext["agreement_examples"]
    ]
    assert RuleBasedExtractor().extract_many(lines) == [
        e["slicer"] for e in ext["agreement_examples"]
    ]
    vocab = json.loads((out / "ingredient_vocab.json").read_text())
    assert "olive_oil" in vocab["names"]
    det = json.loads((out / "det_ingrs.json").read_text())
    assert len(det) == 48 and set(det[0]) == {"id", "ingredients", "valid"}
    for name in ("instruction_vocab.json", "categories.json", "stats.json", "tagger.pt"):
        assert (out / name).is_file()
    assert (out / "plots" / "ingredients_per_recipe.png").stat().st_size > 0


def test_train_baselines_bundle_and_search(prepared, tmp_path, capsys):
    _, out, _ = prepared
    cfg = JointTrainConfig(stage1_epochs=2, stage2_epochs=1, emb_dim=16, ingr_hidden=8,
                           instr_hidden=8, adapter_hidden=8, repeats=2)  # fmt: skip
    cfg.train.out_dir = str(tmp_path)
    result = train_joint(out, tmp_path / "run", cfg)
    test = result["test"]
    assert test["protocol"]["pairs"] == 12 and test["protocol"]["subset_size"] == 12
    for side in ("im2recipe", "recipe2im"):
        assert test[side]["R@1"] <= test[side]["R@5"] <= test[side]["R@10"]
    # The photo features are one cluster per dish, so CCA finds the dish: the true recipe is
    # among the test split's three of that dish (medR 3 on 12 pairs), chance is far lower.
    cca = fit_cca_baseline(out, k=4)["test"]
    assert cca["im2recipe"]["R@5"] == 1.0 and cca["im2recipe"]["medR"] <= 3
    assert random_baseline(out)["test"]["im2recipe"]["medR"] > cca["im2recipe"]["medR"]

    info = build_bundle(out, tmp_path / "run" / "model.pt", tmp_path / "bundle")
    assert info["recipes"] == 48 and info["images"] == 48
    searcher = RecipeSearcher(tmp_path / "bundle")
    hits, names = searcher.search_text("Cook chicken with onion and rice.", top=3)
    assert len(hits) == 3 and "chicken" in names
    assert searcher.arithmetic(["chicken curry"], [], top=2)

    (tmp_path / "run" / "results.json").write_text(json.dumps(result))
    assert main(["recipes", "table", "--data", str(out), "--run", f"joint={tmp_path / 'run'}"]) == 0
    table = capsys.readouterr().out
    assert "| joint |" in table and "Test pairs: 12" in table
    code = main(["recipes", "search", "--text", "apple pie with butter", "--bundle",
                 str(tmp_path / "bundle"), "--top", "2", "--json"])  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["results"]) == 2 and "apple" in payload["query"]["ingredients_found"]


def test_cli_errors(tmp_path, capsys):
    assert main(["recipes", "search", "--bundle", str(tmp_path)]) == 1
    assert "exactly one" in capsys.readouterr().err
    assert main(["recipes", "search", "--text", "x", "--bundle", str(tmp_path)]) == 1
    assert "not a search bundle" in capsys.readouterr().err
    assert main(["recipes", "prepare", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "layer1.json" in capsys.readouterr().err


def test_card_embedding_adds_weak_dish_pairs(prepared, tmp_path):
    # the card's retrieval assets train the same joint embedding plus weak pairs: every
    # training recipe whose title names a dish, paired with the dish-labelled photos
    from beyondvis.recipes.generation.card_export import train_card_embedding

    _, out, _ = prepared
    cfg = JointTrainConfig(stage1_epochs=1, stage2_epochs=0, emb_dim=16, ingr_hidden=8,
                           instr_hidden=8, adapter_hidden=8, repeats=1)  # fmt: skip
    dim = ImageFeatures.load(out / "image_features.npz").features.shape[1]
    weak = ImageFeatures(
        [f"w{i}" for i in range(6)],
        ["apple_pie"] * 3 + ["tomato_soup"] * 3,
        np.random.default_rng(0).normal(size=(6, dim)).astype(np.float32),
        "efficientnet_lite0",
    )
    weak.save(tmp_path / "weak.npz")
    plain = train_card_embedding(out, tmp_path / "plain", cfg)
    result = train_card_embedding(
        out, tmp_path / "weak", cfg, food101_features=tmp_path / "weak.npz"
    )
    pairs = result["pairs"]
    assert plain["pairs"]["weak"] == {} and pairs["recipe1m_pairs"] == plain["pairs"]["train_pairs"]
    for dish in ("apple_pie", "tomato_soup"):
        assert pairs["weak"][dish]["photos"] == 3 and pairs["weak"][dish]["recipes"] > 0
    added = sum(d["recipes"] for d in pairs["weak"].values())
    assert pairs["train_pairs"] == pairs["recipe1m_pairs"] + added
    assert (tmp_path / "weak" / "model.pt").is_file()
    assert result["test"]["protocol"]["pairs"] == plain["test"]["protocol"]["pairs"] == 12
