"""Index persistence, add, shards + merge, version/backbone errors, corrupt photos, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _fake_features import PatchFeatures
from PIL import Image

from beyondvis.retrieval.features import BackboneMismatchError, FeatureConfig
from beyondvis.retrieval.index import (
    BLCFIndex,
    IndexConfig,
    IndexFormatError,
    add_to_index,
    build_index,
    fit_model,
    merge_indexes,
    save_model_only,
)
from beyondvis.retrieval.search import SearchConfig, make_view

HERE = Path(__file__).parent


def _photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        # smooth random colour fields: distinct, compressible, quick to make
        small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((96, 72), Image.BICUBIC)
        p = folder / f"img_{seed}_{i:03d}.png"
        img.save(p)
        paths.append(p)
    return paths


def _config(**kw) -> IndexConfig:
    return IndexConfig(
        features=FeatureConfig(backbone="fake"), codebook_size=32, chunk_size=4, **kw
    )


def test_build_save_load_search_roundtrip(tmp_path):
    photos = _photos(tmp_path / "photos", 10)
    fx = PatchFeatures()
    index = build_index(photos, tmp_path / "idx", _config(), extractor=fx)
    assert not (tmp_path / "idx" / "work").exists()
    loaded = BLCFIndex.load(tmp_path / "idx")
    assert loaded.paths == index.paths and len(loaded) == 10
    assert all(m.dtype == np.uint16 for m in loaded.maps)
    for a, b in zip(index.maps, loaded.maps):
        assert np.array_equal(a, b)
    view = make_view(loaded.maps[3], tuple(loaded.image_sizes[3]))
    assert loaded.searcher().search([view], SearchConfig(mode="gs")).ids[0] == 3
    with pytest.raises(IndexFormatError, match="already holds"):
        build_index(photos, tmp_path / "idx", _config(), extractor=fx)


def test_version_and_corruption_errors(tmp_path):
    photos = _photos(tmp_path / "photos", 6)
    build_index(photos, tmp_path / "idx", _config(), extractor=PatchFeatures())
    manifest_path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="version 99"):
        BLCFIndex.load(tmp_path / "idx")
    manifest_path.write_text("{not json")
    with pytest.raises(IndexFormatError, match="malformed"):
        BLCFIndex.load(tmp_path / "idx")
    with pytest.raises(IndexFormatError, match="not a complete"):
        BLCFIndex.load(tmp_path / "nothing")


def test_truncated_maps_file_is_reported(tmp_path):
    photos = _photos(tmp_path / "photos", 6)
    build_index(photos, tmp_path / "idx", _config(), extractor=PatchFeatures())
    maps = tmp_path / "idx" / "maps.npz"
    maps.write_bytes(maps.read_bytes()[:100])
    with pytest.raises(IndexFormatError, match="maps.npz"):
        BLCFIndex.load(tmp_path / "idx")


def test_backbone_mismatch_is_a_clear_error(tmp_path):
    photos = _photos(tmp_path / "photos", 6)
    index = build_index(photos, tmp_path / "idx", _config(), extractor=PatchFeatures())
    index.check_backbone("fake")
    with pytest.raises(BackboneMismatchError, match="built with backbone 'fake'"):
        index.check_backbone("resnet50")


def test_corrupt_photos_are_skipped_and_reported(tmp_path):
    photos = _photos(tmp_path / "photos", 6)
    bad = tmp_path / "photos" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    empty = tmp_path / "photos" / "empty.png"
    empty.write_bytes(b"")
    index = build_index(
        [*photos, bad, empty], tmp_path / "idx", _config(), extractor=PatchFeatures()
    )
    assert len(index) == 6
    assert {s["path"] for s in index.skipped} == {str(bad), str(empty)}
    assert BLCFIndex.load(tmp_path / "idx").skipped == index.skipped


def test_add_reuses_codebook_and_matches_full_build(tmp_path):
    first = _photos(tmp_path / "a", 8, seed=1)
    more = _photos(tmp_path / "b", 5, seed=2)
    fx = PatchFeatures()
    build_index(first, tmp_path / "idx", _config(), extractor=fx)
    before = BLCFIndex.load(tmp_path / "idx")
    _, added, skipped = add_to_index(tmp_path / "idx", [*more, first[0]], extractor=fx)
    assert added == 5 and skipped == []  # the already indexed photo is not added twice
    after = BLCFIndex.load(tmp_path / "idx")
    assert np.array_equal(after.model.codebook.centroids, before.model.codebook.centroids)
    assert len(after) == 13
    view = make_view(after.maps[10], tuple(after.image_sizes[10]))
    assert after.searcher().search([view]).ids[0] == 10


def test_shards_merge_into_the_single_index(tmp_path):
    photos = _photos(tmp_path / "photos", 12)
    fx = PatchFeatures()
    cfg = _config()
    model = fit_model(photos, cfg, fx)
    save_model_only(tmp_path / "model", model)
    whole = build_index(photos, tmp_path / "whole", cfg, model=model, extractor=fx)
    for k in range(3):
        build_index(photos[k::3], tmp_path / f"shard{k}", cfg, model=model, extractor=fx)
    merged = merge_indexes([tmp_path / f"shard{k}" for k in range(3)], tmp_path / "merged")
    assert sorted(merged.paths) == sorted(whole.paths)
    view = make_view(whole.maps[5], tuple(whole.image_sizes[5]))
    a = whole.searcher().search([view])
    b = merged.searcher().search([view])
    assert [whole.paths[i] for i in a.ids[:5]] == [merged.paths[i] for i in b.ids[:5]]
    assert np.allclose(a.scores, b.scores, atol=1e-5)
    # a shard with another codebook cannot be merged
    other = fit_model(photos, _config(seed=7), fx)
    build_index(photos[:3], tmp_path / "alien", cfg, model=other, extractor=fx)
    with pytest.raises(IndexFormatError, match="another codebook"):
        merge_indexes([tmp_path / "shard0", tmp_path / "alien"], tmp_path / "bad")


KILL_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from pathlib import Path
from _fake_features import PatchFeatures
from beyondvis.retrieval.features import FeatureConfig
from beyondvis.retrieval.index import IndexConfig, build_index
photos = sorted(Path({photos!r}).glob("*.png"))
cfg = IndexConfig(features=FeatureConfig(backbone="fake"), codebook_size=32, chunk_size=4)
build_index(photos, Path({out!r}), cfg, extractor=PatchFeatures(delay=0.1))
"""


def test_killed_build_resumes_from_checkpointed_chunks(tmp_path):
    photos = _photos(tmp_path / "photos", 20)
    out = tmp_path / "idx"
    script = KILL_SCRIPT.format(here=str(HERE), photos=str(tmp_path / "photos"), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script])
    chunk = out / "work" / "chunks" / "chunk_000001.json"
    deadline = time.time() + 60
    while not chunk.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert chunk.exists(), "the build never checkpointed a chunk"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    with pytest.raises(IndexFormatError, match="interrupted build"):
        BLCFIndex.load(out)
    done = len(list((out / "work" / "chunks").glob("chunk_*.json")))
    assert 2 <= done < 5
    fx = PatchFeatures()
    index = build_index(photos, out, _config(), extractor=fx)
    # the codebook and the finished chunks were reused: only the rest was encoded again
    assert fx.calls == len(photos) - 4 * done
    assert len(index) == 20 and index.paths == [str(p) for p in photos]
    fresh = build_index(photos, tmp_path / "fresh", _config(), extractor=PatchFeatures())
    for a, b in zip(index.maps, fresh.maps):
        assert np.array_equal(a, b)


def test_saved_postings_are_used_and_rebuilt_when_missing(tmp_path):
    photos = _photos(tmp_path / "photos", 8)
    index = build_index(photos, tmp_path / "idx", _config(), extractor=PatchFeatures())
    loaded = BLCFIndex.load(tmp_path / "idx")
    assert loaded._inverted is not None  # read from postings.npz, not rebuilt
    view = make_view(index.maps[2], tuple(index.image_sizes[2]))
    expected = index.searcher().search([view]).scores
    assert np.allclose(loaded.searcher().search([view]).scores, expected, atol=1e-6)
    (tmp_path / "idx" / "postings.npz").write_bytes(b"junk")
    rebuilt = BLCFIndex.load(tmp_path / "idx")
    assert rebuilt._inverted is None
    assert np.allclose(rebuilt.searcher().search([view]).scores, expected, atol=1e-6)
