"""``beyondvis features cache|info`` on a folder the test writes (one file is corrupt)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from beyondvis.cli.main import main

pytest.importorskip("beyondvis.backbones")


def run_json(capsys, *argv) -> dict:
    assert main([*map(str, argv)]) == 0
    return json.loads(capsys.readouterr().out)


def test_cache_a_folder_then_reuse_and_describe_it(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (40 + 10 * i, 30), (60 * i, 100, 200)).save(images / f"{i}.png")
    (images / "bad.jpg").write_bytes(b"\xff\xd8\xff truncated")
    out = tmp_path / "cache"
    args = ["features", "cache", images, out, "--random-init", "--size", "64", "--device", "cpu"]
    first = run_json(capsys, *args, "--dtype", "float16")
    assert first["items"] == 4 and first["cached"] == 3
    assert first["feature_shape"] == [1280] and first["dtype"] == "float16"
    assert [s["id"] for s in first["skipped"]] == [str(images / "bad.jpg")]
    again = run_json(capsys, *args, "--dtype", "float16")  # reused: same fingerprint
    assert again["fingerprint"] == first["fingerprint"]
    info = run_json(capsys, "features", "info", out)
    assert info == first
    # A different configuration in the same folder is refused with a clear message.
    assert main([*map(str, args), "--output", "map"]) == 1
    assert "different source" in capsys.readouterr().err


def test_clear_errors(tmp_path, capsys):
    assert main(["features", "info", str(tmp_path)]) == 1
    assert "no feature cache" in capsys.readouterr().err
    assert main(["features", "cache", str(tmp_path / "nope"), str(tmp_path / "c")]) == 1
    assert "no such file" in capsys.readouterr().err
