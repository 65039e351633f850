"""``beyondvis index build --method frcnn`` and the shared search / add / info commands."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from beyondvis.cli.main import main


def _photos(folder, n=4):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        a = (rng.random((48, 64, 3)) * 80).astype(np.uint8)
        a[8:30, 10 + 5 * i : 30 + 5 * i] = [200, 60 * i, 40]
        Image.fromarray(a).save(folder / f"p{i}.png")
    return folder


def test_frcnn_build_search_add_info(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    idx = tmp_path / "idx"
    common = ["--max-side", "64", "--proposals", "10", "--threads", "1"]
    assert main(["index", "build", str(photos), "--out", str(idx), "--method", "frcnn",
                 *common]) == 0  # fmt: skip
    assert "frcnn" in capsys.readouterr().out
    q = str(photos / "p1.png")
    assert main(["index", "search", str(idx), q, "--box", "15,8,35,30", "--json",
                 "--qe", "gqe", "--qe-top", "2"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "beyondvis-frcnn-results" and len(out["results"]) == 4
    assert all(r["box"] is not None for r in out["results"])  # CA-SR localised every photo
    more = _photos(tmp_path / "more", 2)
    (more / "p0.png").rename(more / "new0.png")
    (more / "p1.png").rename(more / "new1.png")
    assert main(["index", "add", str(idx), str(more)]) == 0
    assert "now holds 6" in capsys.readouterr().out
    assert main(["index", "info", str(idx)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "beyondvis-frcnn-index" and info["num_images"] == 6
    # CS-SR without fine-tuning, a LQE, or --finetune without queries are one-line errors
    for argv, message in [
        (["index", "search", str(idx), q, "--sr", "cs"], "fine-tuned"),
        (["index", "search", str(idx), q, "--qe", "lqe"], "gqe"),
        (["index", "build", str(photos), "--out", str(tmp_path / "x"), "--method", "frcnn",
          "--finetune", "fc"], "go together"),
    ]:  # fmt: skip
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
