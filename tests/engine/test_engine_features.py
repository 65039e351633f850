"""Feature caching: create, skip bad items, resume after an interruption, reuse, memmap reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from beyondvis.engine import (
    CachedFeatureDataset,
    FeatureCache,
    FeatureCacheError,
    TrainConfig,
    Trainer,
    cache_features,
)
from beyondvis.io import ImageListDataset


class Vectors(Dataset):
    """20 input vectors; items listed in ``broken`` raise like an unreadable file would."""

    def __init__(self, broken=()):
        self.x = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
        self.y = (self.x[:, 0] > 0).long()
        self.broken = set(broken)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i in self.broken:
            raise OSError(f"item {i} is unreadable")
        return self.x[i], self.y[i]


class CountingEncoder(nn.Module):
    def __init__(self, fail_after_batches=None):
        super().__init__()
        torch.manual_seed(1)
        self.proj = nn.Linear(6, 4)
        self.seen = 0
        self.batches = 0
        self.fail_after_batches = fail_after_batches

    def forward(self, x):
        if self.fail_after_batches is not None and self.batches == self.fail_after_batches:
            raise KeyboardInterrupt("killed")
        self.batches += 1
        self.seen += len(x)
        return self.proj(x)


def test_create_skip_bad_and_read_back(tmp_path):
    data = Vectors(broken={3, 11})
    encoder = CountingEncoder()
    cache = cache_features(encoder, data, tmp_path / "c", batch_size=4, device="cpu")
    assert len(cache) == 18 and cache.feature_shape == (4,)
    assert [s["index"] for s in cache.skipped] == [3, 11]
    assert "item 3 is unreadable" in cache.skipped[0]["reason"]
    assert cache.item_ids[:4] == ["0", "1", "2", "4"]
    with torch.no_grad():
        expected = encoder.proj(data.x)
    torch.testing.assert_close(cache[3], expected[4])  # 4th good item is dataset item 4
    torch.testing.assert_close(cache.by_id("19"), expected[19])
    with pytest.raises(KeyError, match="skipped"):
        cache.by_id("3")
    # Read-only memory map, and a meta file that describes it.
    reopened = FeatureCache(tmp_path / "c")
    assert isinstance(reopened.features, np.memmap) and not reopened.features.flags.writeable
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["source"] == "CountingEncoder"
    assert meta["shape"] == [20, 4] and meta["dtype"] == "float32" and meta["num_skipped"] == 2


def test_interrupted_job_resumes_and_finished_cache_is_reused(tmp_path):
    data = Vectors()
    out = tmp_path / "c"
    flaky = CountingEncoder(fail_after_batches=3)  # shape probe + 2 batches, then "killed"
    with pytest.raises(KeyboardInterrupt):
        cache_features(flaky, data, out, batch_size=4, device="cpu")
    with pytest.raises(FeatureCacheError, match="incomplete"):
        FeatureCache(out)
    assert int((np.load(out / "done.npy") == 1).sum()) == 8

    encoder = CountingEncoder()  # same weights (seeded), so the same fingerprint
    cache = cache_features(encoder, data, out, batch_size=4, device="cpu")
    assert encoder.seen == 12  # only the 12 items not done before the interruption
    with torch.no_grad():
        torch.testing.assert_close(torch.stack([cache[i] for i in range(20)]), encoder.proj(data.x))

    again = CountingEncoder()
    cache_features(again, data, out, batch_size=4, device="cpu")
    assert again.seen == 0  # finished cache reused, model never run


def test_changed_weights_are_detected(tmp_path):
    data = Vectors()
    cache_features(CountingEncoder(), data, tmp_path / "c", device="cpu")
    other = CountingEncoder()
    with torch.no_grad():
        other.proj.weight.add_(1.0)
    with pytest.raises(FeatureCacheError, match="different source"):
        cache_features(other, data, tmp_path / "c", device="cpu")
    cache = cache_features(other, data, tmp_path / "c", device="cpu", overwrite=True)
    with torch.no_grad():
        torch.testing.assert_close(cache[0], other.proj(data.x[:1])[0])
    # replace_stale: a cache of other weights is rebuilt, a matching one still reused
    first = CountingEncoder()
    cache = cache_features(first, data, tmp_path / "c", device="cpu", replace_stale=True)
    assert first.seen == 21  # shape probe + all 20 items: rebuilt for the original weights
    with torch.no_grad():
        torch.testing.assert_close(cache[0], first.proj(data.x[:1])[0])
    again = CountingEncoder()
    cache_features(again, data, tmp_path / "c", device="cpu", replace_stale=True)
    assert again.seen == 0


def test_float16_and_a_head_trained_on_cached_features(tmp_path):
    data = Vectors()
    cache = cache_features(CountingEncoder(), data, tmp_path / "c", dtype="float16", device="cpu")
    assert cache.dtype == np.float16
    pairs = CachedFeatureDataset(cache, targets=data.y.tolist())
    features, target = pairs[5]
    assert features.dtype == torch.float32 and target == int(data.y[5])
    head = nn.Linear(4, 2)
    cfg = TrainConfig(
        out_dir=str(tmp_path / "head"), epochs=15, batch_size=5, lr=0.05, device="cpu",
        progress=False,
    )  # fmt: skip
    result = Trainer(
        head, cfg, pairs, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])
    ).fit()
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    with pytest.raises(ValueError, match="targets has 3 entries"):
        CachedFeatureDataset(cache, targets=[0, 1, 0])


def test_image_folder_with_a_corrupt_file(tmp_path):
    paths = []
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (12, 10), color).save(path)
        paths.append(path)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    paths.insert(1, bad)

    def to_tensor(image):
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)

    def mean_color(batch):  # any callable works as the "backbone"
        return batch.mean(dim=(2, 3))

    dataset = ImageListDataset(paths, transform=to_tensor)
    cache = cache_features(mean_color, dataset, tmp_path / "c", batch_size=2, device="cpu")
    assert cache.skipped[0]["id"] == str(bad) and cache.skipped[0]["index"] == 1
    assert cache.item_ids == [str(p) for p in paths if p != bad]
    torch.testing.assert_close(cache.by_id(str(paths[2])), torch.tensor([0.0, 1.0, 0.0]))


def test_dataset_where_every_item_fails(tmp_path):
    with pytest.raises(ValueError, match="every item of the dataset failed"):
        cache_features(CountingEncoder(), Vectors(broken=range(20)), tmp_path / "c", device="cpu")
    with pytest.raises(ValueError, match="empty dataset"):
        cache_features(CountingEncoder(), [], tmp_path / "d", device="cpu")
