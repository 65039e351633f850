"""Index writers: adding a folder twice, and a second writer on one index folder.

* ``index add`` of an already indexed folder (same spelling, or ``./photos`` from another
  working directory) adds nothing and says how many it skipped: it used to index all twice.
* ``index add`` loads the index only once it holds the folder lock: two concurrent adds each
  loaded it first, and the later save dropped the other's photos (450 of 600 kept).
* A second ``index build`` / ``index add`` while a writer holds the folder is refused.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from beyondvis.cli.main import main


def _photos(folder, n, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        a = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).resize((96, 96), Image.NEAREST).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("writers")
    _photos(root / "base", 2, 0)
    argv = ["index", "build", str(root / "base"), "--out", str(root / "idx")]
    assert main([*argv, "--threads", "1", "--max-side", "96", "--device", "cpu"]) == 0
    return root


def _count(idx) -> int:
    return json.loads((idx / "manifest.json").read_text())["num_images"]


def _add(idx, photos) -> int:
    return main(["index", "add", str(idx), str(photos), "--threads", "1", "--device", "cpu"])


def test_adding_the_same_folder_twice_adds_it_once(index, capsys, monkeypatch):
    idx = index / "idx"
    extra = _photos(index / "extra", 3, 1)
    start = _count(idx)
    assert _add(idx, extra) == 0
    assert _count(idx) == start + 3
    capsys.readouterr()
    assert _add(idx, extra) == 0
    assert _count(idx) == start + 3
    assert "added 0 image(s)" in capsys.readouterr().out
    monkeypatch.chdir(index)  # the same photos spelled relative to another folder
    assert _add(idx, "./extra") == 0
    assert _count(idx) == start + 3
    out = capsys.readouterr().out
    assert "added 0 image(s)" in out and "skipped 3 already indexed" in out


def test_add_reads_the_index_only_under_the_lock(index, monkeypatch):
    from beyondvis.retrieval import BLCFIndex

    idx = index / "idx"
    extra = _photos(index / "more", 1, 2)
    seen = []
    real = BLCFIndex.load.__func__

    def load(cls, folder, *args, **kwargs):
        seen.append((idx / "work" / "lock").exists())
        return real(cls, folder, *args, **kwargs)

    monkeypatch.setattr(BLCFIndex, "load", classmethod(load))
    assert _add(idx, extra) == 0
    assert seen and all(seen)  # what another writer saved before we got the lock is kept


def test_a_second_writer_on_a_busy_index_is_refused(index, capsys):
    from beyondvis.retrieval import folder_lock

    idx = index / "idx"
    before = (idx / "manifest.json").read_bytes()
    extra = _photos(index / "busy", 1, 3)
    with folder_lock(idx):  # another build/add is writing the folder
        capsys.readouterr()
        assert _add(idx, extra) == 1
        assert "is being written by process" in capsys.readouterr().err
    assert (idx / "manifest.json").read_bytes() == before  # nothing lost or mixed
    assert not (idx / "work").exists()  # the lock is gone with its writer
    fresh = index / "fresh"
    with folder_lock(fresh):  # a build is running into this folder
        argv = ["index", "build", str(extra), "--out", str(fresh), "--threads", "1"]
        assert main([*argv, "--max-side", "96", "--device", "cpu"]) == 1
        assert "is being written by process" in capsys.readouterr().err
    assert not (fresh / "manifest.json").exists()


def test_add_to_a_missing_index_leaves_no_folder(tmp_path, capsys):
    photos = _photos(tmp_path / "p", 1, 4)
    assert _add(tmp_path / "nothing", photos) == 1
    assert capsys.readouterr().err.startswith("error:")
    assert not (tmp_path / "nothing").exists()
