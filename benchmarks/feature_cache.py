"""Writing and reading variable-size conv maps: the engine's ragged feature cache against the
one-npz file the instance benchmark wrote before (all maps held in memory, saved at the end).

The maps are random (h, w, D) float16 arrays of the shapes EfficientNet-Lite0's stride-16 level
gives for photos rescaled to a 384 px long side (D = 112), so the numbers measure the storage,
not a backbone. Peak memory is Python/NumPy allocations (tracemalloc) during the write.

    python benchmarks/feature_cache.py                 # 300 maps
    python benchmarks/feature_cache.py --items 2000
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from beyondvis.engine import FeatureCache, cache_features
from beyondvis.utils import atomic_write


def shapes(n: int, channels: int, seed: int = 0) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    long_side = 384 // 16
    return [(long_side, int(rng.integers(12, long_side + 1)), channels) for _ in range(n)]


def make_map(shape: tuple[int, int, int], i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal(shape, dtype=np.float32)


def npz_write(path: Path, all_shapes: list) -> None:
    """The old benchmark's _save_features: every map in a list, one npz written at the end."""
    feats = [make_map(s, i) for i, s in enumerate(all_shapes)]
    buf = io.BytesIO()
    np.savez(
        buf,
        names=np.array([str(i) for i in range(len(feats))]),
        shapes=np.array([f.shape for f in feats], np.int32),
        data=np.concatenate([f.reshape(-1) for f in feats]).astype(np.float16),
    )
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def npz_read(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as d:
        shapes_, data = d["shapes"], d["data"]
    offsets = np.concatenate([[0], np.cumsum(shapes_.prod(axis=1))])
    return [
        data[offsets[i] : offsets[i + 1]].astype(np.float32).reshape(shapes_[i])
        for i in range(len(shapes_))
    ]


class Maps(torch.utils.data.Dataset):
    def __init__(self, all_shapes: list) -> None:
        self.shapes = all_shapes

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> int:
        return i


def cache_write(path: Path, all_shapes: list, batch: int) -> None:
    def source(indices):  # one map per item index, computed when its batch runs
        return [make_map(all_shapes[int(i)], int(i)) for i in indices]

    cache_features(
        source, Maps(all_shapes), path, name="maps", ragged=True, dtype="float16",
        batch_size=batch, device="cpu", progress=False,
    )  # fmt: skip


def cache_read(path: Path) -> list[np.ndarray]:
    cache = FeatureCache(path)
    return [cache.array(i).astype(np.float32) for i in range(len(cache))]


def measure(fn) -> tuple[float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--channels", type=int, default=112)
    parser.add_argument("--batch", type=int, default=16, help="cache batch size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    all_shapes = shapes(args.items, args.channels)
    with tempfile.TemporaryDirectory() as tmp:
        old, new = Path(tmp) / "maps.npz", Path(tmp) / "cache"
        old_w, old_peak = measure(lambda: npz_write(old, all_shapes))
        new_w, new_peak = measure(lambda: cache_write(new, all_shapes, args.batch))
        old_r, _ = measure(lambda: npz_read(old))
        new_r, _ = measure(lambda: cache_read(new))
        same = all(np.array_equal(a, b) for a, b in zip(npz_read(old), cache_read(new)))
        old_mb, new_mb = size_mb(old), size_mb(new)
    print(
        f"{args.items} maps (24 x 12..24 x {args.channels}), float16; identical maps read back: {same}"
    )
    print()
    print("| | one npz (before) | ragged engine cache | cache / npz |")
    print("|---|---:|---:|---:|")
    print(f"| write (s) | {old_w:.2f} | {new_w:.2f} | {new_w / old_w:.2f} |")
    print(f"| read all (s) | {old_r:.2f} | {new_r:.2f} | {new_r / old_r:.2f} |")
    print(
        f"| peak memory while writing (MiB) | {old_peak:.0f} | {new_peak:.0f} | {new_peak / old_peak:.2f} |"
    )
    print(f"| on disk (MiB) | {old_mb:.1f} | {new_mb:.1f} | {new_mb / old_mb:.2f} |")


if __name__ == "__main__":
    main()
