"""The BLCFIndex object: train/add/search/save/load/merge round trip, errors, resume, locks."""

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

from beyondvis.retrieval.codebook import MIN_POINTS_PER_WORD, Codebook
from beyondvis.retrieval.features import BackboneMismatchError, FeatureConfig
from beyondvis.retrieval.index import (
    BLCFIndex,
    IndexConfig,
    IndexFormatError,
    folder_lock,
    load_model_only,
    save_model_only,
)
from beyondvis.retrieval.search import SearchConfig, make_view

HERE = Path(__file__).parent


def _photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        # smooth colour fields around a colour of their own: distinct photos holding distinct
        # visual words (a word in every photo has idf 0), compressible, quick to make
        base = rng.integers(40, 215, 3)
        small = np.clip(base + rng.integers(-40, 40, (6, 8, 3)), 0, 255).astype(np.uint8)
        img = Image.fromarray(small).resize((96, 72), Image.BICUBIC)
        p = folder / f"img_{seed}_{i:03d}.png"
        img.save(p)
        paths.append(p)
    return paths


def _config(**kw) -> IndexConfig:
    return IndexConfig(
        features=FeatureConfig(backbone="fake"), codebook_size=16, chunk_size=4, **kw
    )


def build_index(photos, out, config=None, model=None, extractor=None, workers=2):
    """What `index build` does: train if needed, add with checkpoints, save."""
    index = BLCFIndex(None if model is not None else config, model=model, extractor=extractor)
    out = Path(out)
    if (out / "manifest.json").exists():
        raise IndexFormatError(f"{out} already holds an index")
    with folder_lock(out):
        if not index.is_trained:
            index.train(photos, work_dir=out / "work")
        index.add(photos, work_dir=out / "work", workers=workers)
        index.save(out)
    return index


def test_train_add_search_save_load_merge_roundtrip(tmp_path):
    photos = _photos(tmp_path / "photos", 12)
    fx = PatchFeatures()
    index = BLCFIndex(_config(), extractor=fx)
    assert not index.is_trained and len(index) == 0
    index.train(photos[:8])
    assert index.model.codebook.size == 16
    assert index.add(photos[:8]) == []
    assert len(index) == 8
    index.add(photos[:2])  # already indexed photos are not added twice
    assert len(index) == 8
    hits = index.search(photos[3], k=3)
    assert hits[0].image == str(photos[3]) and len(hits) <= 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    index.save(tmp_path / "a")
    loaded = BLCFIndex.load(tmp_path / "a", extractor=fx)
    assert loaded.paths == index.paths and len(loaded) == 8
    assert all(m.dtype == np.uint16 for m in loaded.maps)
    for a, b in zip(index.maps, loaded.maps):
        assert np.array_equal(a, b)
    again = loaded.search(photos[3], k=3)
    assert [h.image for h in again] == [h.image for h in hits]
    assert np.allclose([h.score for h in again], [h.score for h in hits], atol=1e-6)
    # a second index on the same model merges into the one index of all photos
    other = BLCFIndex(model=loaded.model, extractor=fx)
    other.add(photos[8:])
    whole = BLCFIndex(model=loaded.model, extractor=fx)
    whole.add(photos)
    merged = loaded.merge(other)
    assert len(merged) == 12 and merged.paths == whole.paths
    a = merged.search(photos[10], k=0)
    b = whole.search(photos[10], k=0)
    assert [h.image for h in a] == [h.image for h in b] and a[0].image == str(photos[10])
    assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    # features as an array train the same kind of model
    feats = np.concatenate([fx(Image.open(p).convert("RGB")).reshape(-1, 8) for p in photos])
    assert BLCFIndex(_config()).train(feats).model.codebook.dim == 8


def test_search_drops_unmatched_photos_and_top_zero_returns_all(tmp_path):
    photos = _photos(tmp_path / "photos", 10)
    index = BLCFIndex(_config(), extractor=PatchFeatures())
    index.train(photos)
    index.add(photos)
    # a query made only of word 0 matches exactly the photos holding word 0
    q = make_view(np.zeros((4, 4), np.uint16), (32, 32))
    holders = {i for i, m in enumerate(index.maps) if (m == 0).any()}
    assert 0 < len(holders) < len(index)
    hits = index.search_views([q], k=0, config=SearchConfig(mode="gs", rerank=True))
    assert {h.id for h in hits} == holders and all(h.score > 0 for h in hits)
    assert len(index.search_views([q], k=0, unmatched=True)) == len(index)
    assert len(index.search_views([q], k=1)) == 1


def test_codebook_size_is_capped_by_the_number_of_features(caplog):
    x = np.random.default_rng(0).standard_normal((MIN_POINTS_PER_WORD * 10 + 5, 8))
    with caplog.at_level("WARNING"):
        cb = Codebook.fit(x.astype(np.float32), 1000, iterations=2)
    assert cb.size == 10
    assert "capped at 10 words (asked 1000)" in caplog.text


def test_untrained_index_and_mismatched_merge_are_clear_errors(tmp_path):
    photos = _photos(tmp_path / "photos", 6)
    with pytest.raises(IndexFormatError, match="not trained"):
        BLCFIndex(_config(), extractor=PatchFeatures()).add(photos)
    a = BLCFIndex(_config(), extractor=PatchFeatures()).train(photos)
    b = BLCFIndex(_config(seed=7), extractor=PatchFeatures()).train(photos)
    with pytest.raises(IndexFormatError, match="another codebook"):
        a.merge(b)


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path):
    with folder_lock(tmp_path / "idx"):
        with pytest.raises(IndexFormatError, match="being written by process"):
            with folder_lock(tmp_path / "idx"):
                pass
    (tmp_path / "idx" / "work").mkdir(parents=True)
    (tmp_path / "idx" / "work" / "lock").write_text("999999999")  # no such process
    with folder_lock(tmp_path / "idx"):
        pass
    assert not (tmp_path / "idx" / "work").exists()


def test_half_model_round_trip(tmp_path):
    photos = _photos(tmp_path / "photos", 6)
    model = BLCFIndex(_config(), extractor=PatchFeatures()).train(photos).model.to_half()
    save_model_only(tmp_path / "m", model)
    assert np.load(tmp_path / "m" / "model.npz")["centroids"].dtype == np.float16
    loaded = load_model_only(tmp_path / "m")
    assert loaded.half and loaded.fingerprint() == model.fingerprint()
    assert loaded.codebook.centroids.dtype == np.float32


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
    before = BLCFIndex.load(tmp_path / "idx", extractor=fx)
    skipped = before.add([*more, first[0]], work_dir=tmp_path / "idx" / "work")
    assert len(before) == 13 and skipped == []  # the already indexed photo is not added twice
    before.save(tmp_path / "idx")
    after = BLCFIndex.load(tmp_path / "idx")
    assert np.array_equal(after.model.codebook.centroids, before.model.codebook.centroids)
    assert len(after) == 13
    view = make_view(after.maps[10], tuple(after.image_sizes[10]))
    assert after.searcher().search([view]).ids[0] == 10


def test_shards_merge_into_the_single_index(tmp_path):
    photos = _photos(tmp_path / "photos", 12)
    fx = PatchFeatures()
    cfg = _config()
    model = BLCFIndex(cfg, extractor=fx).train(photos).model
    save_model_only(tmp_path / "model", model)
    model = load_model_only(tmp_path / "model")
    whole = build_index(photos, tmp_path / "whole", cfg, model=model, extractor=fx)
    for k in range(3):
        build_index(photos[k::3], tmp_path / f"shard{k}", cfg, model=model, extractor=fx)
    merged = BLCFIndex.load(tmp_path / "shard0")
    for k in (1, 2):
        merged.merge(BLCFIndex.load(tmp_path / f"shard{k}"))
    merged.save(tmp_path / "merged")
    merged = BLCFIndex.load(tmp_path / "merged")
    assert sorted(merged.paths) == sorted(whole.paths)
    view = make_view(whole.maps[5], tuple(whole.image_sizes[5]))
    a = whole.searcher().search([view])
    b = merged.searcher().search([view])
    assert [whole.paths[i] for i in a.ids[:5]] == [merged.paths[i] for i in b.ids[:5]]
    assert np.allclose(a.scores, b.scores, atol=1e-5)
    # a shard with another codebook cannot be merged
    other = BLCFIndex(_config(seed=7), extractor=fx).train(photos).model
    build_index(photos[:3], tmp_path / "alien", cfg, model=other, extractor=fx)
    with pytest.raises(IndexFormatError, match="another codebook"):
        BLCFIndex.load(tmp_path / "shard0").merge(BLCFIndex.load(tmp_path / "alien"))


KILL_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from pathlib import Path
from _fake_features import PatchFeatures
from beyondvis.retrieval.features import FeatureConfig
from beyondvis.retrieval.index import BLCFIndex, IndexConfig
photos = sorted(Path({photos!r}).glob("*.png"))
cfg = IndexConfig(features=FeatureConfig(backbone="fake"), codebook_size=16, chunk_size=4)
index = BLCFIndex(cfg, extractor=PatchFeatures(delay=0.1))
index.train(photos, work_dir=Path({out!r}) / "work")
index.add(photos, work_dir=Path({out!r}) / "work", workers=0)
index.save(Path({out!r}))
"""


def test_killed_build_resumes_from_checkpointed_chunks(tmp_path):
    photos = _photos(tmp_path / "photos", 20)
    out = tmp_path / "idx"
    script = KILL_SCRIPT.format(here=str(HERE), photos=str(tmp_path / "photos"), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script])
    chunk = out / "work" / "chunks" / "chunk_000001.json"
    deadline = time.time() + 300  # the subprocess imports torch: slow on a loaded machine
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
    index = build_index(photos, out, _config(), extractor=fx)  # the dead writer's lock is stale
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
