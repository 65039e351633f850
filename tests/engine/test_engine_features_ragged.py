"""Ragged feature caches (items of different shapes) and per-item side values: every row kept,
a resume computes only what is pending, a corrupt payload or index is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from beyondvis.engine import FeatureCache, FeatureCacheError, cache_features
from beyondvis.engine import features as engine_features

TASK = Path(__file__).with_name("ragged_cache_task.py")


class Photos(Dataset):
    """13 "photos" (3, h, w) of different aspect ratios; ``broken`` items raise on load."""

    def __init__(self, broken=()):
        g = torch.Generator().manual_seed(0)
        self.images = [torch.rand(3, 4 + (i % 4), 5 + (i * 3) % 7, generator=g) for i in range(13)]
        self.broken = set(broken)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i in self.broken:
            raise OSError(f"photo {i} is unreadable")
        x = self.images[i]
        return {"image": x, "size": (x.shape[2] * 10, x.shape[1] * 10)}


def local_map(x):
    """(h, w, 2) "local features" of one (3, h, w) photo: channel mean and max per cell."""
    return torch.stack([x.mean(0), x.amax(0)], dim=-1)


class Maps:
    """A ragged source: a list of photos in, one (h, w, 2) map per photo out."""

    def __init__(self, fail_after_batches=None):
        self.seen = 0
        self.batches = 0
        self.fail_after_batches = fail_after_batches

    def __call__(self, images):
        if self.fail_after_batches is not None and self.batches == self.fail_after_batches:
            raise KeyboardInterrupt("killed")
        self.batches += 1
        self.seen += len(images)
        return [local_map(x) for x in images]


def _cache(out, source, data, **kwargs):
    return cache_features(
        source, data, out, name="maps", ragged=True, batch_size=3, device="cpu",
        progress=False, **kwargs,
    )  # fmt: skip


def test_every_item_comes_back_with_its_own_shape(tmp_path):
    data = Photos(broken={2, 9})
    cache = _cache(tmp_path / "c", Maps(), data, info_fn=lambda item: item["size"])
    good = [i for i in range(13) if i not in data.broken]
    assert len(cache) == 11 and cache.rows.tolist() == good
    assert [s["index"] for s in cache.skipped] == [2, 9]
    for k, i in enumerate(good):  # a lost or shifted row would put another photo's map here
        expected = local_map(data.images[i])
        torch.testing.assert_close(cache[k], expected)
        torch.testing.assert_close(cache.by_id(str(i)), expected)
        assert cache.item_shape(k) == tuple(expected.shape)
    assert cache.feature_shape == (None, None, 2)  # h, w vary; 2 channels everywhere
    sizes = [(data.images[i].shape[2] * 10, data.images[i].shape[1] * 10) for i in good]
    np.testing.assert_array_equal(cache.info, np.array(sizes, np.float64))
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["format_version"] == 2 and meta["layout"] == "ragged"
    assert meta["num_values"] == sum(local_map(data.images[i]).numel() for i in good)
    assert sorted(meta["sha256"]) == ["done.npy", "features.npy", "info.npy", "offsets.npy",
                                      "shapes.npy"]  # fmt: skip
    # the write-time parts are joined into features.npy and removed
    assert not list((tmp_path / "c").glob("part.rank*.bin"))
    assert not (tmp_path / "c" / "locs.npy").exists()


def test_float16_ragged_and_a_stackable_batch(tmp_path):
    same = Photos()
    same.images = [torch.rand(3, 4, 6) for _ in range(5)]  # one size: the batch is stacked
    cache = _cache(tmp_path / "c", Maps(), same, dtype="float16")
    assert cache.dtype == np.float16 and cache.feature_shape == (4, 6, 2)
    for k in range(5):
        torch.testing.assert_close(
            cache[k].float(), local_map(same.images[k]).half().float(), rtol=0, atol=0
        )


def test_a_killed_job_resumes_without_recomputing_done_items(tmp_path):
    data = Photos(broken={4})
    out = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):  # shape probe + 2 batches of 3, then "killed"
        _cache(out, Maps(fail_after_batches=3), data)
    flags = np.load(out / "done.npy")
    assert int((flags == 1).sum()) == 5 and int((flags == 2).sum()) == 1
    with pytest.raises(FeatureCacheError, match="incomplete"):
        FeatureCache(out)
    # bytes of a batch in flight that never got marked done: cut away on resume
    with open(out / "part.rank0.bin", "ab") as f:
        f.write(b"\x7f" * 20)
    source = Maps()
    cache = _cache(out, source, data)
    assert source.seen == 13 - 6  # only the items still pending, none of the 5 done ones
    good = [i for i in range(13) if i != 4]
    for k, i in enumerate(good):
        torch.testing.assert_close(cache[k], local_map(data.images[i]))
    again = Maps()
    _cache(out, again, data)
    assert again.seen == 0  # finished and matching: reused


def test_a_corrupt_payload_or_index_is_refused(tmp_path, monkeypatch):
    data = Photos()
    _cache(tmp_path / "c", Maps(), data)
    path = tmp_path / "c" / "features.npy"
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(FeatureCacheError, match="features.npy: checksum mismatch"):
        FeatureCache(tmp_path / "c")

    # An index that lost an item is caught even where the payload is too big to hash.
    _cache(tmp_path / "d", Maps(), data)
    monkeypatch.setattr(engine_features, "VERIFY_MAX_BYTES", 0)
    assert len(FeatureCache(tmp_path / "d")) == 13
    offsets = np.load(tmp_path / "d" / "offsets.npy")
    offsets[5] = offsets[6]  # item 4 would read as empty, item 5 would take its values
    np.save(tmp_path / "d" / "offsets.npy", offsets)
    with pytest.raises(FeatureCacheError, match="do not match"):
        FeatureCache(tmp_path / "d")


def test_a_ragged_source_must_give_one_item_per_input(tmp_path):
    with pytest.raises(ValueError, match="returned 2 items for 3 inputs"):
        _cache(tmp_path / "c", lambda images: [local_map(x) for x in images[:2]], Photos())
    with pytest.raises(FeatureCacheError, match="1-d items"):
        _cache(tmp_path / "d", lambda images: [local_map(x).flatten(0, -1 - i % 3 // 2)
                                               for i, x in enumerate(images)], Photos())  # fmt: skip


def test_fixed_caches_stay_version_1_and_newer_versions_are_refused(tmp_path):
    data = Photos()
    pooled = cache_features(
        lambda xs: torch.stack([x.mean((1, 2)) for x in xs]), data, tmp_path / "c",
        name="pooled", device="cpu", progress=False,
    )  # fmt: skip
    meta_path = tmp_path / "c" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["format_version"] == 1 and pooled.feature_shape == (3,)
    del meta["layout"]  # as written before the ragged layout existed
    meta_path.write_text(json.dumps(meta))
    torch.testing.assert_close(FeatureCache(tmp_path / "c")[1], data.images[1].mean((1, 2)))
    meta["format_version"] = 3
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FeatureCacheError, match="version 3.*upgrade beyondvis"):
        FeatureCache(tmp_path / "c")


def _torchrun(out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(TASK), str(out), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.skipif(not dist.is_available(), reason="torch built without distributed support")
def test_two_ranks_write_their_own_parts_and_rank_0_joins_them(tmp_path):
    data = Photos(broken={5})
    out = tmp_path / "c"
    # killed: each rank did 1 batch of 2 of its share; then a 2-rank rerun finishes the rest
    killed = _torchrun(out, "--kill-after", "1")
    assert killed.returncode != 0, killed.stdout
    parts = sorted(p.name for p in out.glob("part.rank*.bin"))
    assert parts == ["part.rank0.bin", "part.rank1.bin"], killed.stdout
    done_before = int((np.load(out / "done.npy") == 1).sum())
    assert done_before >= 2, killed.stdout
    run = _torchrun(out)
    assert run.returncode == 0, run.stdout
    computed = sum(int(w.split("=")[1]) for w in run.stdout.split() if w.startswith("computed="))
    assert computed == 12 - done_before  # none of the items done before the kill again
    assert "rank0 computed" in run.stdout and "rank1 computed" in run.stdout
    cache = FeatureCache(out)
    good = [i for i in range(13) if i != 5]
    assert cache.rows.tolist() == good and [s["index"] for s in cache.skipped] == [5]
    for k, i in enumerate(good):  # interleaved ranks' items back in dataset order
        torch.testing.assert_close(cache[k], local_map(data.images[i]))
        assert tuple(cache.info[k]) == (data.images[i].shape[2] * 10, data.images[i].shape[1] * 10)
    assert not list(out.glob("part.rank*.bin"))
