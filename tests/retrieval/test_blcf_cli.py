"""End to end on real photos: `beyondvis index build` then `index search` from the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from beyondvis.cli.main import main
from beyondvis.retrieval.index import shipped_model

skimage_data = pytest.importorskip("skimage.data")
NAMES = ["astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry"]


def _rgb(name: str) -> Image.Image:
    a = getattr(skimage_data, name)()
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    img = Image.fromarray(a[..., :3])
    img.thumbnail((256, 256))
    return img


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    photos = root / "photos"
    photos.mkdir()
    for n in NAMES:
        _rgb(n).save(photos / f"{n}.png")
    (photos / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    # the defaults: the shipped codebook, no k-means on these six photos
    code = main(["index", "build", str(photos), "--out", str(root / "idx"), "--threads", "1"])
    assert code == 0
    return root


def _search(capsys, *argv):
    capsys.readouterr()
    assert main(["index", "search", *map(str, argv), "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "beyondvis-blcf-results"
    return out["results"]


def test_build_uses_the_shipped_codebook(built):
    manifest = json.loads((built / "idx" / "manifest.json").read_text())
    assert manifest["codebook"] == "generic"
    assert manifest["vocab_size"] == shipped_model().codebook.size
    assert not (built / "idx" / "work").exists()


def test_top_zero_returns_the_whole_ranking_without_unmatched_photos(built, capsys):
    q = built / "photos" / "rocket.png"
    every = _search(capsys, built / "idx", q, "--top", "0", "--unmatched", "--no-rerank")
    assert len(every) == len(NAMES)
    matched = _search(capsys, built / "idx", q, "--top", "0", "--no-rerank")
    assert 1 <= len(matched) <= len(NAMES) and all(r["score"] > 0 for r in matched)
    assert [r["image"] for r in matched] == [r["image"] for r in every[: len(matched)]]
    assert len(_search(capsys, built / "idx", q, "--top", "2")) == 2


def test_fit_codebook_is_capped_by_the_features(built, caplog, capsys):
    out = built / "fitted"
    with caplog.at_level("WARNING"):
        code = main(["index", "build", str(built / "photos"), "--out", str(out), "--fit-codebook",
                     "--codebook-size", "100000", "--max-side", "128", "--threads", "1"])  # fmt: skip
    assert code == 0
    assert "codebook size capped at" in caplog.text and "(asked 100000)" in caplog.text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["codebook"] == "fitted" and manifest["vocab_size"] < 100000
    # codebook options without --fit-codebook are refused: they would not change anything
    assert main(["index", "build", str(built / "photos"), "--out", str(built / "x"),
                 "--codebook-size", "64"]) == 1  # fmt: skip
    assert "--fit-codebook" in capsys.readouterr().err


def test_faiss_loader_messages_are_silent_unless_verbose(tmp_path):
    # a fresh process: FAISS logs its loader lines once, at its first import
    cmd = [sys.executable, "-m", "beyondvis.cli.main", "index", "info", str(tmp_path)]
    quiet = subprocess.run(cmd, capture_output=True, text=True)
    assert quiet.returncode == 1
    assert quiet.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not a complete BLCF index: no manifest.json"
    ]


def test_corrupt_photo_skipped_and_reported(built):
    images = json.loads((built / "idx" / "images.json").read_text())
    assert len(images["paths"]) == len(NAMES)
    assert [s["path"].endswith("corrupt.jpg") for s in images["skipped"]] == [True]


def test_flipped_copy_finds_its_original(built, capsys):
    q = built / "flipped_chelsea.png"
    _rgb("chelsea").transpose(Image.FLIP_LEFT_RIGHT).save(q)
    results = _search(capsys, built / "idx", q, "--augment")
    assert results[0]["image"].endswith("chelsea.png")
    assert set(results[0]) == {"image", "score", "box"}


def test_cropped_object_with_box_is_found_and_localised(built, capsys, tmp_path):
    full = _rgb("coffee")
    w, h = full.size
    crop_box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    # query photo: the crop pasted into another photo; --box marks where it is
    canvas = _rgb("camera").resize((w, h))
    canvas.paste(full.crop(crop_box), (0, 0))
    q = tmp_path / "query.png"
    canvas.save(q)
    box = f"0,0,{crop_box[2] - crop_box[0]},{crop_box[3] - crop_box[1]}"
    results = _search(capsys, built / "idx", q, "--box", box, "--grid", tmp_path / "g.png",
                      "--html", tmp_path / "g.html")  # fmt: skip
    assert results[0]["image"].endswith("coffee.png")
    x0, y0, x1, y1 = results[0]["box"]
    # the found window overlaps the true crop region
    assert min(x1, crop_box[2]) > max(x0, crop_box[0]) and min(y1, crop_box[3]) > max(
        y0, crop_box[1]
    )
    assert (tmp_path / "g.png").stat().st_size > 0 and "<img" in (tmp_path / "g.html").read_text()


def test_cli_errors_are_clear(built, capsys, tmp_path):
    q = built / "idx" / ".." / "photos" / "coffee.png"
    assert main(["index", "search", str(built / "idx"), str(q), "--backbone", "resnet50"]) == 1
    assert "built with backbone 'efficientnet_lite0'" in capsys.readouterr().err
    assert main(["index", "search", str(built / "idx"), str(q), "--box", "5,5,1,1"]) == 1
    assert main(["index", "search", str(tmp_path), str(q)]) == 1
    assert "not a complete BLCF index" in capsys.readouterr().err
