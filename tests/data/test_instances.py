import json

import numpy as np
import pytest
from PIL import Image

from beyondvis.data.instances import InstanceConfig, make_instances, paste, transform_object
from beyondvis.data.oxford import read_gt_files


def _square_object(size=40):
    obj = Image.new("RGBA", (size, size), (200, 30, 30, 255))
    return obj


def test_paste_reports_visible_box_and_fraction():
    scene = Image.new("RGB", (100, 80), "white")
    box, visible = paste(scene, _square_object(20), (10, 30))
    assert box == [10, 30, 30, 50] and visible == pytest.approx(1.0)
    assert scene.getpixel((15, 35)) == (200, 30, 30)
    # three quarters outside the right border
    box, visible = paste(scene, _square_object(20), (95, 10))
    assert box == [95, 10, 100, 30] and visible == pytest.approx(0.25)
    assert paste(scene, _square_object(20), (200, 200)) == (None, 0.0)


def test_transform_object_keeps_alpha_and_target_height():
    rng = np.random.default_rng(0)
    out = transform_object(_square_object(60), 30, rng)
    assert out.mode == "RGBA"
    alpha = np.asarray(out.getchannel("A")) > 127
    ys, _ = np.nonzero(alpha)
    # rotated/warped, so only roughly the requested height
    assert 20 <= ys.max() - ys.min() + 1 <= 60
    assert 0 < alpha.mean() < 1  # transparent corners after rotation/perspective


@pytest.mark.data
def test_make_instances_writes_oxford_benchmark(shared_data, tmp_path):
    root = shared_data("")
    for sub in ("PennFudanPed", "cvppp_a1"):
        shared_data(sub)
    cfg = InstanceConfig(pedestrians=2, plants=1, pastes_per_object=3, distractors=4, seed=1)
    summary = make_instances(root, tmp_path, cfg)
    assert summary["queries"] == 3
    queries = read_gt_files(tmp_path / "gt_files")
    db = {p.stem for p in (tmp_path / "images").glob("*.jpg")}
    assert len(db) == summary["database_images"] >= 4 + 3 * 3 - 1
    ann = json.loads((tmp_path / "annotations.json").read_text())["instances"]
    for q in queries:
        assert (tmp_path / "queries" / f"{q.image}.jpg").exists()
        assert q.image not in db  # a query never matches its own photo
        assert set(q.good + q.ok + q.junk) <= db
        assert len(q.good) + len(q.ok) + len(q.junk) >= 1
        with Image.open(tmp_path / "queries" / f"{q.image}.jpg") as im:
            x0, y0, x1, y1 = q.box
            assert 0 <= x0 < x1 <= im.width and 0 <= y0 < y1 <= im.height
    for a in ann:
        with Image.open(tmp_path / "images" / f"{a['image']}.jpg") as im:
            x0, y0, x1, y1 = a["box"]
            assert 0 <= x0 < x1 <= im.width and 0 <= y0 < y1 <= im.height
        assert (a["label"] == "junk") == (a["visible"] < 0.25)
