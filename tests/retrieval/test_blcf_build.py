"""Index folders (beyondvis.retrieval.build): a resumable build bound to its settings, adding
under the lock, merging shards, refusing to write over a finished index."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from _fake_features import PatchFeatures
from test_blcf_index import _config, _photos

from beyondvis.errors import BeyondvisError
from beyondvis.retrieval import (
    BUILD_SETTINGS,
    BLCFIndex,
    BuildSettingsError,
    IndexExistsError,
    add_to_index_folder,
    build_index_folder,
    build_settings,
    check_build_settings,
    check_no_index,
    merge_index_folders,
)


def _settings(tmp_path, **config):
    return build_settings(replace(_config(), **config), "fitted", tmp_path / "photos", None)


def test_build_settings_name_what_binds_the_chunks(tmp_path):
    s = build_settings(_config(), "shipped", tmp_path / "photos", "0/2")
    assert s["format"] == "beyondvis.index.build_settings/1"
    assert s["codebook"] == "shipped" and s["shard"] == "0/2"
    assert s["photos"] == str((tmp_path / "photos").resolve())
    assert s["config"]["codebook_size"] == 16 and s["config"]["features"]["backbone"] == "fake"


def test_a_started_build_resumes_only_with_its_settings(tmp_path):
    work, out = tmp_path / "idx" / "work", tmp_path / "idx"
    first = _settings(tmp_path)
    check_build_settings(work, first, out)  # a new build records its settings
    assert json.loads((work / BUILD_SETTINGS).read_text()) == first
    # nothing computed yet: other settings simply replace the recorded ones
    other = _settings(tmp_path, codebook_size=32)
    check_build_settings(work, other, out)
    assert json.loads((work / BUILD_SETTINGS).read_text()) == other
    (work / "chunk_00000.npz").write_bytes(b"computed")  # now the build has started
    check_build_settings(work, other, out)  # the same settings resume
    with pytest.raises(BuildSettingsError) as err:
        check_build_settings(work, _settings(tmp_path, codebook_size=64), out)
    message = str(err.value)
    assert isinstance(err.value, BeyondvisError)
    assert f"{out} holds an interrupted build with other settings" in message
    assert "config.codebook_size 32 -> 64" in message and f"remove {work}" in message
    (work / BUILD_SETTINGS).write_text("{not json")
    with pytest.raises(BuildSettingsError, match="is unreadable"):
        check_build_settings(work, other, out)


def test_build_add_merge_folders(tmp_path):
    photos = _photos(tmp_path / "photos", 8)
    more = _photos(tmp_path / "more", 3, seed=1)
    index = BLCFIndex(_config(), extractor=PatchFeatures())
    out = tmp_path / "idx"
    settings = _settings(tmp_path)
    built = build_index_folder(index, photos, out, settings)
    assert built is index and len(index) == 8 and (out / "manifest.json").is_file()
    with pytest.raises(IndexExistsError, match="already holds an index; use `index add`"):
        build_index_folder(BLCFIndex(_config(), extractor=PatchFeatures()), photos, out)
    with pytest.raises(IndexExistsError, match="pick another"):
        check_no_index(out, "pick another")
    check_no_index(tmp_path / "fresh")  # no index there: nothing to refuse

    shard = tmp_path / "shard"
    second = BLCFIndex(model=index.model, extractor=PatchFeatures())
    build_index_folder(second, more, shard)
    merged = merge_index_folders([out, shard], tmp_path / "merged")
    assert len(merged) == 11 and len(BLCFIndex.load(tmp_path / "merged")) == 11
    with pytest.raises(IndexExistsError, match="merge into another --out"):
        merge_index_folders([out, shard], tmp_path / "merged")


def test_add_to_index_folder_reports_what_it_did(tmp_path, monkeypatch):
    photos = _photos(tmp_path / "photos", 6)
    out = tmp_path / "idx"
    index = BLCFIndex(_config(), extractor=PatchFeatures())
    build_index_folder(index, photos[:4], out)
    # the loaded index encodes with the stand-in features too (no backbone in this test)
    real_load = BLCFIndex.load.__func__

    def load(cls, folder, **kw):
        loaded = real_load(cls, folder, **kw)
        loaded._extractor = PatchFeatures()
        return loaded

    monkeypatch.setattr(BLCFIndex, "load", classmethod(load))
    (tmp_path / "photos" / "broken.png").write_bytes(b"not a png")
    done = add_to_index_folder(out, [*photos, tmp_path / "photos" / "broken.png"])
    assert (done.added, done.already_indexed, len(done.index)) == (2, 4, 6)
    assert [s["path"] for s in done.skipped] == [str(tmp_path / "photos" / "broken.png")]
    assert len(real_load(BLCFIndex, out)) == 6
    with pytest.raises(BeyondvisError, match="not a complete BLCF index"):
        add_to_index_folder(tmp_path / "nothing", photos)
    assert not (tmp_path / "nothing").exists()  # refused before the lock made a folder


def test_detector_folders_refuse_like_blcf_ones(tmp_path):
    from beyondvis.retrieval import add_to_detector_folder, build_detector_folder

    with pytest.raises(BeyondvisError, match="detector index"):
        add_to_detector_folder(tmp_path / "none", [])
    assert not (tmp_path / "none").exists()  # refused before the lock made a folder
    out = tmp_path / "idx"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    with pytest.raises(IndexExistsError, match="already holds an index"):
        build_detector_folder(None, [], out)  # refused before any training
