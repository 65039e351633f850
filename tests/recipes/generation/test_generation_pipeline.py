"""Inverse-cooking pipeline on a tiny prepared folder: data, masking, two stages, bundle, cook."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from beyondvis.engine import TrainConfig
from beyondvis.recipes.generation.bundle import CookModel, build_retrieval, save_bundle
from beyondvis.recipes.generation.data import MAX_INGREDIENTS, build_data
from beyondvis.recipes.generation.training import (
    TextItems,
    batch_conditions,
    decoder_config,
    make_text_collate,
    same_style_text,
    train_decoder,
    train_ingredients,
)
from beyondvis.recipes.pipeline.ingredients import IngredientVocabulary
from beyondvis.recipes.pipeline.text import Vocabulary, tokenize

INGREDIENTS = ["salt", "sugar", "flour", "egg", "butter", "milk"]
STEPS = ["mix the flour and sugar .", "add egg and milk .", "bake until golden ."]


def _prepared(tmp_path, n=24):
    rng = random.Random(0)
    rows = []
    for i in range(n):
        names = rng.sample(INGREDIENTS, 3)
        rows.append(
            {
                "id": f"r{i:03d}",
                "title": f"cake {i % 3}",
                "partition": ["train", "val", "test"][0 if i < 16 else 1 if i < 20 else 2],
                "ingredients": names,
                "instructions": STEPS,
                "images": [],
                "ingredients_reduced": names + (["unknown thing"] if i == 0 else []),
            }
        )
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "recipes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    IngredientVocabulary(INGREDIENTS, {}, {n: 10 for n in INGREDIENTS}).save(
        folder / "ingredient_vocab.json"
    )
    words = sorted({w for s in [*STEPS, "cake 0 1 2"] for w in tokenize(s)})
    Vocabulary(words).save(folder / "instruction_vocab.json")
    return folder


def _tiny_decoder_config(data, fusion="concat", **sizes):
    """A one-block 16-wide decoder over both conditions (fast enough for every test here)."""
    sizes = {"d_model": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32, **sizes}
    return decoder_config(data, sizes, fusion, ("image", "ingredients"))


@pytest.fixture()
def data(tmp_path):
    data = build_data(_prepared(tmp_path), None, tmp_path / "cache")
    # Fake frozen feature maps: half the recipes get one photo each.
    data.features = torch.randn(len(data.recipes), 1280, 2, 2).half()
    for i, r in enumerate(data.recipes):
        r.images = [i] if i % 2 == 0 else []
    return data


def test_build_data_ids(data):
    first = data.recipes[0]
    assert len(first.ingredients) == 3  # the unknown name is dropped, not an error
    assert all(0 <= i < len(INGREDIENTS) for i in first.ingredients)
    assert first.words[0] == "<start>" and first.words[-1] == "<end>"
    assert data.word_vocab.decode(first.tokens) == first.words
    assert MAX_INGREDIENTS == 20


def test_origin_from_provenance_and_same_style_text(tmp_path):
    prepared = _prepared(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    # r000-r003 come from the photo recipes' site, the rest from another one
    lines = [
        {"id": f"r{i:03d}", "source_id": ("pdr:" if i < 4 else "epi:") + str(i)} for i in range(24)
    ]
    (root / "provenance.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    data = build_data(prepared, root, tmp_path / "cache")  # no photo files: none found
    assert [r.origin for r in data.recipes[:5]] == ["pdr"] * 4 + ["epi"]
    assert same_style_text(data.recipes) == []  # no photo recipe: no style to match
    data.recipes[0].images = [0]  # r000 (pdr) has a photo
    train = data.split("train")
    assert [r.id for r in same_style_text(train)] == ["r001", "r002", "r003"]
    assert same_style_text(train + train[1:2]) == same_style_text(train)  # each once
    assert build_data(prepared, None, tmp_path / "cache").recipes[0].origin == ""


def test_missing_prepared_files_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipes prepare"):
        build_data(tmp_path, None, tmp_path / "cache")


def test_recipes_without_photo_do_not_see_image_features(data):
    cfg = _tiny_decoder_config(data, dropout=0.0)
    from beyondvis.recipes.generation.decoder import InstructionDecoder

    decoder = InstructionDecoder(cfg).eval()
    items = TextItems(data.recipes[:2], pick_random_photo=False)  # photo, no photo
    batch = make_text_collate(cfg.special, cfg.ingredient_pad_id)([items[0], items[1]])
    assert batch.image_rows.tolist() == [0, -1]
    with torch.no_grad():
        before = decoder(batch.inputs, conditions=batch_conditions(decoder, batch, data.features))
        other = torch.randn_like(data.features.float()).half()
        after = decoder(batch.inputs, conditions=batch_conditions(decoder, batch, other))
    assert not torch.allclose(before[0], after[0])  # the photo recipe sees its photo
    torch.testing.assert_close(before[1], after[1])  # the other one sees no photo at all


def test_two_stages_bundle_and_cook(data, tmp_path):
    tiny = dict(epochs=1, max_steps=2, batch_size=4, device="cpu", progress=False)
    set_model, extra = train_ingredients(
        data,
        "ff_bce",
        {"embed_dim": 8, "hidden_dims": []},
        TrainConfig(out_dir=str(tmp_path / "s1"), monitor="val_iou", monitor_mode="max", **tiny),
    )
    assert (tmp_path / "s1" / "best.pt").is_file()
    cfg = _tiny_decoder_config(data, "independent", max_len=40)
    decoder, _ = train_decoder(
        data, cfg, TrainConfig(out_dir=str(tmp_path / "s2"), monitor="val_ppl", **tiny)
    )
    bundle = tmp_path / "bundle"
    save_bundle(
        bundle,
        set_model,
        {"name": extra["name"], "options": extra["options"]},
        decoder,
        list(data.ingredient_vocab.names),
        list(data.word_vocab.itos),
        list(data.word_vocab.specials),
        build_retrieval(data.recipes, len(data.ingredient_vocab)),
    )
    state = torch.load(bundle / "model.pt", weights_only=True)
    assert all(v.dtype != torch.float32 for v in state["decoder"]["state"].values())

    # The same bundle assembled from the two engine checkpoints (`generation export`).
    from beyondvis.recipes.generation.experiment import GenerationConfig, export_from_checkpoints

    cfg = GenerationConfig(prepared_dir=str(tmp_path / "prepared"), out_dir=str(tmp_path))
    summary = export_from_checkpoints(
        cfg,
        str(tmp_path / "s1" / "best.pt"),
        str(tmp_path / "s2" / "best.pt"),
        str(tmp_path / "bundle2"),
    )
    assert summary["ingredient_model"] == "ff_bce" and summary["fusion"] == "independent"
    with pytest.raises(ValueError, match="not a generation ingredients checkpoint"):
        export_from_checkpoints(
            cfg,
            str(tmp_path / "s2" / "best.pt"),
            str(tmp_path / "s2" / "best.pt"),
            str(tmp_path / "bundle3"),
        )
    model = CookModel(bundle)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 120, 3), np.uint8))
    for method in ("greedy", "beam", "sample"):
        card = model.cook(photo, method).to_json()
        assert set(card) == {"title", "ingredients", "instructions", "retrieved"}
        assert len(card["retrieved"]) == 3
        assert all(i["name"] in INGREDIENTS for i in card["ingredients"])
    # Retrieval: the recipe whose ingredients are exactly the query comes first.
    target = data.recipes[5]
    probs = np.zeros(len(INGREDIENTS), np.float32)
    probs[target.ingredients] = 1.0
    top = model.retrieve(probs, k=3)
    assert top[0]["score"] == pytest.approx(1.0, abs=1e-4)
    exact = {r.id for r in data.recipes if sorted(r.ingredients) == sorted(target.ingredients)}
    assert top[0]["id"] in exact


def test_incomplete_bundle_is_a_clear_error(tmp_path):
    from beyondvis.recipes.generation.bundle import BundleError

    with pytest.raises(BundleError, match="model.pt"):
        CookModel(tmp_path)


def test_decoder_resume_with_other_settings_is_refused_unless_forced(data, tmp_path):
    from beyondvis.engine.config import ResumeConfigError

    tiny = dict(epochs=1, max_steps=2, batch_size=4, device="cpu", progress=False)
    cfg = _tiny_decoder_config(data, max_len=40)
    out = str(tmp_path / "s2")
    train_decoder(data, cfg, TrainConfig(out_dir=out, monitor="val_ppl", lr=1e-3, **tiny))
    with pytest.raises(ResumeConfigError, match="lr"):
        train_decoder(data, cfg, TrainConfig(out_dir=out, monitor="val_ppl", lr=5e-4, **tiny))
    decoder, _ = train_decoder(
        data, cfg, TrainConfig(out_dir=out, monitor="val_ppl", lr=5e-4, **tiny), resume="force"
    )
    assert decoder.config.vocab_size == len(data.word_vocab)


def test_packaged_generation_configs_are_typed_and_checked():
    from beyondvis.recipes.generation.config import DecoderSizes
    from beyondvis.recipes.generation.experiment import load_generation_config

    cfg = load_generation_config("generation/cook_cpu_stage3")
    assert isinstance(cfg.decoder, DecoderSizes) and cfg.decoder.num_layers == 3
    assert cfg.decoder_weak_per_dish == 150 and cfg.train_decoder.scheduler == "cosine"
    later = load_generation_config("generation/cook_cpu_stage5")  # stage 4 + 5 on top of 3
    assert later.style_oversample == 6 and later.style_start and later.decoder_weak_per_dish == 150
    assert later.train_decoder.lr == 2e-4 and later.train_decoder.epochs == 1
    for bad in ("decoder.dropout=2", "decoder.num_heads=7"):
        with pytest.raises(ValueError, match="decoder"):
            load_generation_config("generation/cook_cpu", [bad])


def test_a_bundle_with_a_memory_cooks_the_same_on_both_runtimes(data, tmp_path):
    from beyondvis.recipes.generation.decoder import InstructionDecoder
    from beyondvis.recipes.generation.memory import attach_memory
    from beyondvis.recipes.generation.onnx_cook import OrtCookModel
    from beyondvis.recipes.generation.onnx_export import export_onnx_bundle
    from beyondvis.recipes.generation.training import build_set_predictor

    torch.manual_seed(0)
    set_model = build_set_predictor("ff_bce", len(INGREDIENTS), {"embed_dim": 8, "hidden_dims": []})
    cfg = _tiny_decoder_config(data, max_len=40)
    decoder = InstructionDecoder(cfg).eval()
    memory = attach_memory(decoder, data.split("train"), data.features, dim=8)
    bundle = tmp_path / "bundle"
    save_bundle(
        bundle,
        set_model,
        {"name": "ff_bce", "options": {"embed_dim": 8, "hidden_dims": []}},
        decoder,
        list(data.ingredient_vocab.names),
        list(data.word_vocab.itos),
        list(data.word_vocab.specials),
        build_retrieval(data.recipes, len(data.ingredient_vocab)),
        image_size=64,
    )
    torch_model = CookModel(bundle)  # float16 weights; int8 keys and int32 words kept as they are
    loaded = torch_model.decoder.memory
    assert loaded is not None and loaded.settings == memory.settings and bool(loaded.filled)
    assert torch.equal(loaded.keys, memory.keys) and loaded.keys.dtype == torch.int8
    export_onnx_bundle(bundle)  # checks the two runtimes on a probe itself
    ort_model = OrtCookModel(bundle)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 120, 3), np.uint8))
    a, b = torch_model.cook(photo, "greedy").to_json(), ort_model.cook(photo, "greedy").to_json()
    assert a["title"] == b["title"] and a["instructions"] == b["instructions"]
    # The exported step takes any number of rows (the memory's chunking is not traced in).
    fmap, _, _ = ort_model.features(photo)
    rows = 300
    ingr = np.zeros((rows, 2), np.int64)
    state = ort_model.nets.start(np.repeat(fmap, rows, axis=0), ingr)
    tokens = np.full((rows, 1), cfg.special.bos, np.int64)
    logits = ort_model.nets.step(state, tokens)
    with torch.no_grad():
        t_state = torch_model.decoder.start(
            torch.from_numpy(np.repeat(fmap, rows, 0)), torch.from_numpy(ingr)
        )
        expected = (
            torch_model.decoder.step(t_state, torch.from_numpy(tokens))[:, -1].float().numpy()
        )
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, atol=2e-3, rtol=1e-3)
