"""``beyondvis cook``: the shipped model turns food photos into recipe cards.

The default path is ONNX Runtime + NumPy (no torch in the process); the PyTorch ``CookModel``
is the reference it must agree with, and the fallback when a bundle has no usable export.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from beyondvis.cli.main import main
from beyondvis.io import load_image
from beyondvis.recipes.generation.bundle import DEMO_PHOTO, PACKAGE_BUNDLE
from beyondvis.recipes.generation.constraints import DecodingRules
from beyondvis.recipes.generation.onnx_cook import (
    ONNX_FILES,
    ONNX_MANIFEST,
    OnnxBundleError,
    OrtCookModel,
    Special,
    StepState,
    decode_beam,
    decode_sequential,
    has_onnx,
    preprocess,
    split_recipe,
)

CARD_KEYS = {"format", "photo", "runtime", "decode", "title", "ingredients", "instructions"}


@pytest.fixture(scope="module")
def ort_model():
    return OrtCookModel(PACKAGE_BUNDLE, threads=1)


@pytest.fixture(scope="module")
def torch_model():
    import torch

    from beyondvis.recipes.generation.bundle import CookModel

    torch.set_num_threads(1)
    return CookModel(PACKAGE_BUNDLE)


@pytest.fixture(scope="module")
def demo_image():
    return load_image(DEMO_PHOTO)


def test_shipped_files_exist_and_are_small():
    assert DEMO_PHOTO.is_file() and DEMO_PHOTO.stat().st_size < 200_000
    assert has_onnx(PACKAGE_BUNDLE), "the shipped bundle must ship its ONNX export"
    total = sum(p.stat().st_size for p in PACKAGE_BUNDLE.iterdir())
    assert total < 50_000_000


def _check_card(card: dict) -> None:
    assert CARD_KEYS <= set(card) and card["format"] == 1
    assert isinstance(card["title"], str) and card["title"]
    assert card["ingredients"], "the predictor should find some ingredient in a goulash"
    for ing in card["ingredients"]:
        assert {"name", "prob"} <= set(ing) and 0.0 <= ing["prob"] <= 1.0
    assert len({i["name"] for i in card["ingredients"]}) == len(card["ingredients"])
    assert card["instructions"] and all(isinstance(s, str) and s for s in card["instructions"])
    assert all("<unk>" not in s and "<eoi>" not in s for s in card["instructions"])
    assert len(set(card["instructions"])) == len(card["instructions"]), "a step is repeated"


def test_cook_json_on_the_shipped_photo(capsys):
    assert main(["cook", str(DEMO_PHOTO), "--json", "--device", "cpu", "--threads", "1"]) == 0
    card = json.loads(capsys.readouterr().out)
    _check_card(card)
    assert card["photo"] == str(DEMO_PHOTO) and card["runtime"] == "onnxruntime"
    assert len(card["retrieved"]) == 3
    for r in card["retrieved"]:
        assert {"id", "title", "score"} <= set(r) and isinstance(r["score"], float)
    scores = [r["score"] for r in card["retrieved"]]
    assert scores == sorted(scores, reverse=True)


def test_cook_text_card_on_torch(capsys):
    args = ["cook", str(DEMO_PHOTO), "--runtime", "torch", "--decode", "greedy", "--threads", "1"]
    assert main([*args, "--retrieve", "2"]) == 0
    out = capsys.readouterr().out
    assert "Ingredients:" in out and "Instructions:" in out and "Closest real recipes:" in out
    assert "  1. " in out


def test_batch_with_a_corrupt_photo_prints_the_good_ones(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    photos = [str(DEMO_PHOTO), str(bad), str(DEMO_PHOTO)]
    argv = ["cook", *photos, "--json", "--retrieve", "1", "--decode", "greedy", "--threads", "1"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["photo"] for line in lines] == photos
    assert all(line["format"] == 1 for line in lines)
    assert set(lines[1]) == {"format", "photo", "error"}
    assert lines[1]["error"].startswith(f"cannot load image {bad}")
    for card in (lines[0], lines[2]):
        _check_card(card)
        assert len(card["retrieved"]) == 1
    assert lines[0]["title"] == lines[2]["title"]
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot load image {bad}")


def test_batch_text_cards_have_a_header_per_photo(tmp_path, capsys):
    missing = tmp_path / "nope.jpg"
    argv = ["cook", str(missing), str(DEMO_PHOTO), "--retrieve", "0", "--decode", "greedy"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert f"==> {DEMO_PHOTO} <==" in captured.out and "Instructions:" in captured.out
    assert "Closest real recipes:" not in captured.out  # --retrieve 0
    assert captured.err.startswith(f"error: cannot load image {missing}: file not found")


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_threads_must_be_a_positive_integer(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cook", str(DEMO_PHOTO), "--threads", value])
    assert exc.value.code == 2
    assert "--threads" in capsys.readouterr().err


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["cook", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("(default:") >= 7


def test_bad_photo_is_an_error_with_exit_code_1(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["cook", str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot load image {bad}")


def test_missing_photo_is_an_error(tmp_path, capsys):
    assert main(["cook", str(tmp_path / "nope.jpg")]) == 1
    assert "error: cannot load image" in capsys.readouterr().err


# -- ONNX Runtime path == PyTorch reference ------------------------------------------------------
def test_preprocessing_matches_the_backbone_transform(ort_model, torch_model, demo_image):
    from PIL import Image

    portrait = demo_image.resize((301, 517)).transpose(Image.Transpose.ROTATE_90)
    small = demo_image.resize((90, 70))
    for image in (demo_image, portrait, small):
        ours = preprocess(image, ort_model.image_size, ort_model.preprocess_config)
        theirs = torch_model.transform(image)[None].numpy()
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_onnx_card_equals_torch_card(method, ort_model, torch_model, demo_image):
    ours = ort_model.cook(demo_image, method)
    theirs = torch_model.cook(demo_image, method)
    assert ours.title == theirs.title
    assert ours.instructions == theirs.instructions
    assert [i["name"] for i in ours.ingredients] == [i["name"] for i in theirs.ingredients]
    for a, b in zip(ours.ingredients, theirs.ingredients):
        assert abs(a["prob"] - b["prob"]) < 5e-3  # float16 backbone weights in the export
    assert [r["id"] for r in ours.retrieved] == [r["id"] for r in theirs.retrieved]


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_sampling_is_seeded(runtime, ort_model, torch_model, demo_image):
    # both runtimes take ``seed=`` (the CLI, the web app and evaluate pass only that)
    model = ort_model if runtime == "onnxruntime" else torch_model
    a = model.cook(demo_image, "sample", seed=3)
    b = model.cook(demo_image, "sample", seed=3)
    assert (a.title, a.instructions) == (b.title, b.instructions)
    assert len(set(a.instructions)) == len(a.instructions)
    others = {tuple(model.cook(demo_image, "sample", seed=s).instructions) for s in (4, 5, 6)}
    assert others != {tuple(a.instructions)}, "the seed changes nothing"


def test_cook_process_never_imports_torch(tmp_path):
    code = (
        "import json, sys\n"
        "from beyondvis.cli.main import main\n"
        f"rc = main(['cook', {str(DEMO_PHOTO)!r}, '--json', '--threads', '1'])\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules)\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    *card, last = out.stdout.strip().splitlines()
    assert json.loads(last) == {"rc": 0, "heavy": []}
    assert json.loads("\n".join(card))["runtime"] == "onnxruntime"


def test_a_stale_export_is_refused(tmp_path):
    for f in PACKAGE_BUNDLE.iterdir():
        (tmp_path / f.name).symlink_to(f)
    manifest = json.loads((PACKAGE_BUNDLE / ONNX_MANIFEST).read_text())
    manifest["source"]["model.pt"]["sha256"] = "0" * 64
    (tmp_path / ONNX_MANIFEST).unlink()
    (tmp_path / ONNX_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(OnnxBundleError, match="another model.pt"):
        OrtCookModel(tmp_path)
    (tmp_path / ONNX_FILES[0]).unlink()
    assert not has_onnx(tmp_path)


# -- the NumPy decoding loop keeps the rules on a decoder that loops ------------------------------
class _LoopingNets:
    """A fake decoder step whose favourite next word always closes the loop
    ``bos -> 4 -> 5 -> <eoi> -> 4 -> 5 -> <eoi> ...`` (eos is its last choice)."""

    vocab = 12
    favourite = {1: 4, 4: 5, 5: 3, 3: 4}

    def step(self, state: StepState, tokens: np.ndarray) -> np.ndarray:
        logits = np.tile(np.linspace(0.0, 1.0, self.vocab, dtype=np.float32), (len(tokens), 1))
        logits[:, 2] = -5.0
        for row, t in enumerate(tokens[:, 0].tolist()):
            logits[row, self.favourite.get(t, 4)] = 10.0
        state.length += 1
        return logits


SPECIAL = Special(pad=0, bos=1, eos=2, eoi=3)


def _state() -> StepState:
    return StepState([], [])


def test_plain_greedy_loops_and_rules_stop_it():
    nets = _LoopingNets()
    plain = decode_sequential(nets, _state(), SPECIAL, 30, rules=None)
    title, steps = split_recipe(plain.tokens, SPECIAL)
    assert len(steps) > 3 and len(set(map(tuple, steps))) == 1  # the toy really loops
    rules = DecodingRules(no_repeat_ngram=3, max_steps=4)
    for gen in (
        decode_sequential(nets, _state(), SPECIAL, 60, rules=rules),
        decode_beam(nets, _state(), SPECIAL, 60, beam_size=2, rules=rules),
    ):
        title, steps = split_recipe(gen.tokens, SPECIAL)
        segments = [tuple(title), *map(tuple, steps)]
        assert len(set(segments)) == len(segments), "a step repeats"
        assert len(set(title)) == len(title), "the title repeats a word"
        words = [w for s in segments for w in s]
        grams = [tuple(s[i : i + 3]) for s in segments for i in range(len(s) - 2)]
        assert len(set(grams)) == len(grams), "a 3-gram repeats"
        assert 1 <= len(steps) <= 4 and gen.tokens[-1] == SPECIAL.eos
        assert words
