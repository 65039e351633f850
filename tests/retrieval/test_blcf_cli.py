"""End to end on real photos: `beyondvis index build` then `index search` from the CLI."""

import json

import numpy as np
import pytest
from PIL import Image

from beyondvis.cli.main import main

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
    code = main(
        ["index", "build", str(photos), "--out", str(root / "idx"), "--codebook-size", "64",
         "--max-side", "256", "--device", "cpu", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    return root


def _search(capsys, *argv):
    capsys.readouterr()
    assert main(["index", "search", *map(str, argv), "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)["results"]


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
