"""``beyondvis classify``: real ImageNet classes for scikit-image's photos, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from beyondvis.cli.main import main


@pytest.fixture(scope="module")
def samples() -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    return Path(skimage_data.__file__).parent


def classify_json(capsys, *argv):
    assert main(["classify", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["predictions"]


def test_chelsea_is_a_cat(samples, capsys):
    predictions = classify_json(capsys, samples / "chelsea.png", "--top", "3", "--device", "cpu")
    assert len(predictions) == 3
    assert set(predictions[0]) == {"index", "label", "prob"}
    assert 281 <= predictions[0]["index"] <= 285
    probs = [p["prob"] for p in predictions]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_coffee_is_espresso_in_text_output(samples, capsys):
    assert main(["classify", str(samples / "coffee.png"), "--top", "2"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first[0] == "967" and first[1] == "espresso"


def test_bad_image_is_an_error_with_exit_code_1(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["classify", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot load image {bad}: ")


def test_missing_weights_name_the_file(samples, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    assert main(["classify", str(samples / "coffee.png"), "--backbone", "resnet50"]) == 1
    assert "'resnet50-0676ba61.pth'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message, code",
    [(["--top", "0"], "--top: must be >= 1", 2), (["--device", "cuda:7"], "device", 1)],
)
def test_bad_options(samples, capsys, argv, message, code):
    if argv[1].startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    try:
        got = main(["classify", str(samples / "coffee.png"), *argv])
    except SystemExit as exc:  # refused by the parser (a beyondvis.validation type): usage, 2
        got = exc.code
    assert got == code
    assert message in capsys.readouterr().err


def test_parser_backbone_names_match_the_registry():
    from beyondvis.backbones import DEFAULT_BACKBONE, list_backbones
    from beyondvis.cli import classify

    assert sorted(classify.BACKBONE_NAMES) == sorted(list_backbones())
    assert classify.DEFAULT_BACKBONE == DEFAULT_BACKBONE


def test_top_level_help_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "from beyondvis.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
