"""Feature caching: run a frozen backbone (any ``batch -> tensor`` callable) over a dataset once.

Layout of a cache folder (fixed layout: every item has the same feature shape)::

    features.npy   (N, *feature_shape) memory-mapped array, row i = dataset item i
    done.npy       (N,) uint8: 0 = not computed yet, 1 = computed, 2 = bad item (skipped)
    info.npy       (N, K) float64 per-item side values (``info_fn``; only when asked for)
    skipped.rank<R>.json   bad items found so far by process R (reason per item)
    meta.json      written last, atomically, when every item is done: format version, layout,
                   source name, fingerprint, shape, dtype, item ids, skipped items, SHA-256 of
                   every payload file

Ragged layout (``ragged=True``: items of different shapes, e.g. conv maps of photos that keep
their aspect ratio)::

    features.npy   (T,) flat, item i = features[offsets[i]:offsets[i + 1]].reshape(shapes[i])
    offsets.npy    (N + 1,) int64 (a bad item has an empty range)
    shapes.npy     (N, ndim) int64 (zeros for a bad item)
    done.npy, info.npy, skipped.rank<R>.json, meta.json   as above
    part.rank<R>.bin, locs.npy   while writing only: process R appends its items to its own
                   part file and records (part, offset) in locs.npy; the parts are joined into
                   features.npy in item order when every item is done, then removed

Rows (or part bytes, fsynced) are flushed before they are marked done, and ``meta.json``
appears only at the end, so a killed job loses at most the batch in flight: rerunning the same
call continues with the items still marked 0 (a ragged part is first cut back to the end of its
last item marked done). A finished cache whose fingerprint (source name + weights + transform +
item list + dtype [+ layout]) matches is reused without running the model. Under torchrun the
pending items are split across processes, which write disjoint rows of the same files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from beyondvis.device import resolve_device
from beyondvis.engine.distributed import DistContext, init_distributed
from beyondvis.errors import FormatError
from beyondvis.utils import atomic_write_json
from beyondvis.utils.atomic import file_sha256
from beyondvis.utils.locks import FolderLockedError, folder_lock
from beyondvis.utils.progress import show_progress
from beyondvis.utils.versioned import read_versioned_json

log = logging.getLogger(__name__)

# Version 2 added the ragged layout and info.npy. A fixed-layout cache without info is still
# written as version 1, so an older beyondvis opens it; this one reads both.
CACHE_FORMAT_VERSION = 2
FIXED_FORMAT_VERSION = 1
CACHE_KIND = "beyondvis.engine.feature_cache"
DTYPES = {"float32": np.float32, "float16": np.float16}
NOT_DONE, DONE, BAD = 0, 1, 2
PAYLOAD_FILES = ("features.npy", "done.npy")
RAGGED_FILES = ("offsets.npy", "shapes.npy")
INFO_FILE = "info.npy"
WORK_FILES = ("locs.npy",)  # ragged, while writing
PART_GLOB = "part.rank*.bin"
LOCK_NAME = ".features.lock"
SKIPPED_GLOB = "skipped.rank*.json"
VERIFY_MAX_BYTES = 1 << 30  # larger payloads are checked by size and shape only


class FeatureCacheError(FormatError, RuntimeError):
    """A feature cache is missing, incomplete, foreign, from a newer version, or mismatched."""


def cache_features(
    source: Callable[[Any], torch.Tensor],
    dataset: Dataset,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    dtype: str = "float32",
    device: str | torch.device | None = "auto",
    item_ids: Sequence[str] | None = None,
    input_fn: Callable[[Any], Any] | None = None,
    fingerprint_extra: Any = None,
    overwrite: bool = False,
    replace_stale: bool = False,
    progress: bool = True,
    channels_last: bool = False,
    ragged: bool = False,
    info_fn: Callable[[Any], Sequence[float]] | None = None,
) -> FeatureCache:
    """Compute ``source(batch)`` for every item of ``dataset`` into ``out_dir``; return the cache.

    ``source`` is a frozen module (e.g. a backbone: its pooled ``forward``), a bound method of
    one (``backbone.feature_map``), or any callable from a batch tensor to a ``(B, ...)`` tensor.
    Items may be tensors, ``(input, ...)`` tuples, or ``ImageListDataset`` dicts (bad images
    are skipped and listed in the meta). Items whose loading raises are skipped the same way.
    ``input_fn(item) -> input`` overrides how the input is taken from an item.

    ``ragged=True`` stores items whose feature shapes differ (same number of dimensions): the
    source then gets a list of inputs when they cannot be stacked and may return a list of
    ``(...)`` tensors or arrays, one per input. ``info_fn(item) -> numbers`` stores K side
    values per item (e.g. the photo's size) in ``info.npy``, read back as ``cache.info``.

    A folder holding a cache of another source or item list is an error, unless
    ``replace_stale=True`` (its cache files are removed and rebuilt: for a folder that always
    holds the features of "the current data", such as a prepared dataset's photos) or
    ``overwrite=True`` (rebuild even a matching cache).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    n_items = len(dataset)  # type: ignore[arg-type]
    if n_items == 0:
        raise ValueError("cannot cache features of an empty dataset")
    out = Path(out_dir)
    module = _module_of(source)
    source_name = name or _source_name(source, module)
    ids = _item_ids(dataset, item_ids, n_items)
    fingerprint = _fingerprint(
        source_name, module, dataset, ids, dtype, fingerprint_extra, ragged, info_fn
    )

    if not overwrite and _finished(out, fingerprint):
        # a finished, matching cache is only read: no lock, so parallel jobs (seeds) share it
        return FeatureCache(out)
    ctx, owns = _dist_context(device)
    lock, finished = contextlib.ExitStack(), False
    try:
        if ctx.is_main:  # one job per folder; the ranks of this job share rank 0's lock
            try:
                lock.enter_context(folder_lock(out, LOCK_NAME))
            except FolderLockedError as exc:
                raise FeatureCacheError(str(exc)) from None
        _on_main(ctx, lambda: _prepare_folder(out, fingerprint, overwrite, replace_stale))
        if (out / "meta.json").is_file():  # finished and matching: reuse
            finished = True
            return FeatureCache(out)
        if module is not None:
            module.eval().to(ctx.device)
            if channels_last:
                module.to(memory_format=torch.channels_last)
        safe = _SafeItems(dataset, input_fn, info_fn)
        layout = _Layout(ragged, dtype, n_items)
        _create(out, source, safe, ctx, layout, fingerprint, source_name)
        _fill(out, source, safe, ctx, layout, batch_size, num_workers, progress, channels_last, ids)
        ctx.barrier()
        _on_main(ctx, lambda: _finalize(out, fingerprint, source_name, layout, ids))
        finished = True
    finally:
        lock.close()
        if owns:
            ctx.close(sync=finished)  # after an error a peer may never reach the barrier
    return FeatureCache(out)


def cache_image_features(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    backbone: str | nn.Module = "efficientnet_lite0",
    *,
    output: str = "pooled",
    size: int | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    dtype: str = "float32",
    runtime: str = "auto",
    device: str | torch.device | None = "auto",
    item_ids: Sequence[str] | None = None,
    overwrite: bool = False,
    replace_stale: bool = False,
    progress: bool = True,
) -> FeatureCache:
    """Frozen backbone features of image files, through :func:`cache_features`.

    ``backbone`` is a registered name (``beyondvis.backbones``) or a backbone; ``output`` is
    ``"pooled"`` (B, D) or ``"map"`` (B, D, h, w) at ``size`` px (centre crop; default: the
    backbone's input size). Runs on the fast :class:`~beyondvis.backbones.FeatureExtractor`
    (ONNX Runtime on CPU), so unlike a module source its weights are fingerprinted here.
    Unreadable photos are skipped (``cache.skipped``); a killed job resumes.
    """
    from beyondvis.backbones import FeatureExtractor, create_backbone
    from beyondvis.backbones.extractor import weights_fingerprint
    from beyondvis.io import ImageListDataset

    model = create_backbone(backbone) if isinstance(backbone, str) else backbone
    extractor = FeatureExtractor(model, output=output, runtime=runtime, device=device)
    dataset = ImageListDataset(paths, transform=model.transform(train=False, size=size))
    return cache_features(
        extractor,
        dataset,
        out_dir,
        name=f"{getattr(model, 'name', type(model).__name__)}.{output}",
        batch_size=batch_size,
        num_workers=num_workers,
        dtype=dtype,
        device=extractor.device,
        item_ids=item_ids,
        fingerprint_extra={"weights": weights_fingerprint(model), "output": output, "size": size},
        overwrite=overwrite,
        replace_stale=replace_stale,
        progress=progress,
    )


class FeatureCache:
    """A finished feature cache opened read-only; ``cache[i]`` is the i-th good item's features.

    Bad (skipped) items have no row here: ``rows[i]`` is the dataset index of good item ``i``,
    ``item_ids`` their ids, ``skipped`` the bad items with reasons. ``features`` is the whole
    memory-mapped array (rows of bad items are zeros; flat for a ragged cache, where
    ``offsets``/``shapes`` locate item ``rows[i]``). ``info`` holds the side values of the good
    items when the cache was written with ``info_fn``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            state = self.path / "state.json"
            if state.is_file():
                done = _count_done(self.path)
                raise FeatureCacheError(
                    f"feature cache {self.path} is incomplete ({done} item(s) done); rerun "
                    "cache_features with the same arguments to finish it"
                )
            raise FeatureCacheError(f"no feature cache at {self.path} (meta.json missing)")
        meta = read_versioned_json(
            meta_path, CACHE_KIND, CACHE_FORMAT_VERSION, FeatureCacheError, what="feature cache"
        )
        self.meta: dict[str, Any] = meta
        self.ragged = meta.get("layout", "fixed") == "ragged"
        self._verify(meta.get("sha256"))
        self.features = np.load(self.path / "features.npy", mmap_mode="r")
        done = np.load(self.path / "done.npy")
        n_items = len(meta["item_ids"])
        if len(done) != n_items:
            raise FeatureCacheError(
                f"{self.path}: done.npy has {len(done)} flags for {n_items} items"
            )
        self.rows = np.flatnonzero(done == DONE)
        if self.ragged:
            self.offsets = np.load(self.path / "offsets.npy")
            self.shapes = np.load(self.path / "shapes.npy")
            self._check_ragged(done)
        elif list(self.features.shape) != meta["shape"]:
            raise FeatureCacheError(
                f"{self.path}: features.npy has shape {self.features.shape}, meta says "
                f"{meta['shape']}"
            )
        self.all_item_ids: list[str] = meta["item_ids"]
        self.item_ids = [self.all_item_ids[i] for i in self.rows]
        self.skipped: list[dict[str, Any]] = meta["skipped"]
        self._row_of_id = {item_id: int(i) for i, item_id in zip(self.rows, self.item_ids)}
        self.info: np.ndarray | None = None
        if (self.path / INFO_FILE).is_file():
            self.info = np.load(self.path / INFO_FILE)[self.rows]

    def _check_ragged(self, done: np.ndarray) -> None:
        """The index must cover the flat array exactly: checked even where the payload is too
        large to hash, so an index that lost or misplaced an item is an error, not a wrong map."""
        n, offsets, shapes = len(done), self.offsets, self.shapes
        sizes = np.diff(offsets) if len(offsets) == n + 1 else None
        if (
            sizes is None
            or len(shapes) != n
            or offsets[0] != 0
            or offsets[-1] != self.features.shape[0]
            or self.features.ndim != 1
            or not np.array_equal(sizes, np.where(done == DONE, shapes.prod(axis=1), 0))
        ):
            raise FeatureCacheError(
                f"{self.path}: offsets.npy/shapes.npy do not match features.npy and done.npy; "
                "rebuild the cache (features cache ... --overwrite)"
            )

    def _verify(self, sums: Mapping[str, str] | None) -> None:
        """Check the payload files against the checksums in meta.json (caches written
        before checksums existed have none and are read as before)."""
        if not sums:
            return
        for name, expected in sums.items():
            path = self.path / name
            if not path.is_file():
                raise FeatureCacheError(f"{path}: missing (listed in {self.path}/meta.json)")
            size = path.stat().st_size
            if size > VERIFY_MAX_BYTES:  # hashing would cost more than reading a few rows
                continue
            if file_sha256(path) != expected:
                raise FeatureCacheError(
                    f"{path}: checksum mismatch (the file changed or is corrupt since the "
                    "cache was written); rebuild the cache (features cache ... --overwrite)"
                )

    @property
    def name(self) -> str:
        return self.meta["source"]

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def feature_shape(self) -> tuple[int | None, ...]:
        """Per-item shape; in a ragged cache a dimension that varies between items is None."""
        return tuple(self.meta["shape"][1:])

    @property
    def dtype(self) -> np.dtype:
        return self.features.dtype

    def summary(self) -> dict[str, Any]:
        """What ``beyondvis features cache|info --json`` prints about the cache."""
        return {
            "path": str(self.path),
            "source": self.name,
            "items": len(self.all_item_ids),
            "cached": len(self),
            "skipped": self.skipped,
            "feature_shape": list(self.feature_shape),
            "dtype": str(self.dtype),
            "fingerprint": self.fingerprint,
        }

    def __len__(self) -> int:
        return len(self.rows)

    def array(self, i: int) -> np.ndarray:
        """The i-th good item's features as a read-only view of the memory map (no copy)."""
        return self._row(int(self.rows[i]))

    def item_shape(self, i: int) -> tuple[int, ...]:
        if self.ragged:
            return tuple(int(v) for v in self.shapes[self.rows[i]])
        return tuple(self.features.shape[1:])

    def _row(self, row: int) -> np.ndarray:
        if not self.ragged:
            return self.features[row]
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        return self.features[start:stop].reshape(tuple(int(v) for v in self.shapes[row]))

    def __getitem__(self, i: int) -> torch.Tensor:
        # np.array copies the row out of the read-only map (torch cannot wrap read-only memory).
        return torch.from_numpy(np.array(self.array(i)))

    def by_id(self, item_id: str) -> torch.Tensor:
        if item_id not in self._row_of_id:
            raise KeyError(f"item {item_id!r} is not in the cache (unknown or skipped)")
        return torch.from_numpy(np.array(self._row(self._row_of_id[item_id])))


class CachedFeatureDataset(Dataset):
    """Pairs cached features with targets, so a head trains without running the backbone.

    ``targets`` is indexed by the ORIGINAL dataset index (a sequence), keyed by item id (a
    mapping), or a callable ``(dataset_index) -> target``; None yields features alone.
    Features come out as float32 tensors whatever the stored dtype.
    """

    def __init__(
        self,
        cache: FeatureCache | str | os.PathLike,
        targets: Sequence[Any] | Mapping[str, Any] | Callable[[int], Any] | None = None,
    ) -> None:
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        self.targets = targets
        if isinstance(targets, Mapping):
            missing = [i for i in self.cache.item_ids if i not in targets]
            if missing:
                raise KeyError(f"{len(missing)} cached item(s) have no target, e.g. {missing[0]!r}")
        elif targets is not None and not callable(targets):
            if len(targets) != len(self.cache.all_item_ids):
                raise ValueError(
                    f"targets has {len(targets)} entries but the cached dataset had "
                    f"{len(self.cache.all_item_ids)} items (index targets by dataset index)"
                )

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> Any:
        features = self.cache[i].float()
        if self.targets is None:
            return features
        index = int(self.cache.rows[i])
        if isinstance(self.targets, Mapping):
            target = self.targets[self.cache.all_item_ids[index]]
        elif callable(self.targets):
            target = self.targets(index)
        else:
            target = self.targets[index]
        return features, target


# --------------------------------------------------------------------------- internals
class _SafeItems(Dataset):
    """Dataset items as ``(index, input, None, info)`` or ``(index, None, reason, None)`` -
    loading never raises."""

    def __init__(
        self,
        dataset: Dataset,
        input_fn: Callable[[Any], Any] | None,
        info_fn: Callable[[Any], Sequence[float]] | None = None,
    ) -> None:
        self.dataset = dataset
        self.input_fn = input_fn
        self.info_fn = info_fn

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any, str | None, np.ndarray | None]:
        try:
            item = self.dataset[index]
        except Exception as exc:  # a batch job skips and reports bad items
            return index, None, f"{type(exc).__name__}: {exc}", None
        x, reason = self._input(item)
        if reason is not None:
            return index, None, reason, None
        info = None
        if self.info_fn is not None:
            info = np.asarray(self.info_fn(item), dtype=np.float64).reshape(-1)
        return index, x, None, info

    def _input(self, item: Any) -> tuple[Any, str | None]:
        if self.input_fn is not None:
            return self.input_fn(item), None
        if isinstance(item, Mapping):
            if "error" in item:
                return None, str(item["error"])
            for key in ("image", "input", "x"):
                if key in item:
                    return item[key], None
            raise KeyError(f"dataset item has none of the keys image/input/x: {sorted(item)}")
        if isinstance(item, list | tuple):
            return item[0], None
        return item, None


def _collate(
    items: list[tuple[int, Any, str | None, np.ndarray | None]],
) -> tuple[list[int], Any, list[tuple], list[np.ndarray | None]]:
    good = [(i, x, info) for i, x, reason, info in items if reason is None]
    bad = [(i, reason) for i, _, reason, _ in items if reason is not None]
    indices = [i for i, _, _ in good]
    inputs: Any = None
    if good:
        first = good[0][1]
        if isinstance(first, torch.Tensor) and all(x.shape == first.shape for _, x, _ in good):
            inputs = torch.stack([x for _, x, _ in good])
        else:
            inputs = [x for _, x, _ in good]
    return indices, inputs, bad, [info for _, _, info in good]


def _run(
    source: Callable,
    inputs: Any,
    device: torch.device,
    channels_last: bool,
    ragged: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """``source(inputs)`` as float32 numpy: one (B, ...) array, or (ragged) B arrays."""
    n_inputs = len(inputs)
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.to(device, non_blocking=True)
        if channels_last and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
    elif isinstance(inputs, list):
        inputs = [x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs]
    with torch.inference_mode():
        out = source(inputs)
    if ragged and isinstance(out, list | tuple):
        rows = [
            x.float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)
            for x in out
        ]
    elif isinstance(out, torch.Tensor):
        rows = out.float().cpu().numpy()
    else:
        kind = "a tensor or a list of tensors" if ragged else "a tensor"
        raise TypeError(f"the feature source must return {kind}, got {type(out).__name__}")
    if len(rows) != n_inputs:  # a short batch would shift every later item onto a wrong row
        raise ValueError(f"the feature source returned {len(rows)} items for {n_inputs} inputs")
    return list(rows) if ragged else rows


class _Layout:
    """What the arrays of one cache look like; ``shape`` (fixed) or ``ndim`` (ragged) and
    ``info_dim`` come from the first good item, or from ``state.json`` on a resume."""

    def __init__(self, ragged: bool, dtype: str, n_items: int) -> None:
        self.ragged, self.dtype, self.n_items = ragged, dtype, n_items
        self.np_dtype = np.dtype(DTYPES[dtype])
        self.shape: tuple[int, ...] | None = None
        self.ndim: int | None = None
        self.info_dim: int | None = None

    def update(self, state: Mapping[str, Any]) -> None:
        self.shape = tuple(state["shape"]) if state.get("shape") is not None else None
        self.ndim = state.get("ndim")
        self.info_dim = state.get("info_dim")

    @property
    def payload(self) -> tuple[str, ...]:
        files = PAYLOAD_FILES + (RAGGED_FILES if self.ragged else ())
        return files + ((INFO_FILE,) if self.info_dim is not None else ())


def _create(
    out: Path,
    source: Callable,
    safe: _SafeItems,
    ctx: DistContext,
    layout: _Layout,
    fingerprint: str,
    source_name: str,
) -> None:
    """Create the arrays on first use (their shapes come from running one good item)."""
    state_path = out / "state.json"
    n_items = layout.n_items

    def create() -> dict[str, Any]:
        if state_path.is_file():
            state = json.loads(state_path.read_text(encoding="utf-8"))
            if state.get("layout", "fixed") != ("ragged" if layout.ragged else "fixed"):
                raise FeatureCacheError(f"{out}: state.json is of another layout")
            return state
        for index in range(n_items):
            _, x, reason, info = safe[index]
            if reason is None:
                break
        else:
            raise ValueError("every item of the dataset failed to load; nothing to cache")
        batch = _collate([(index, x, None, info)])[1]
        row = _run(source, batch, ctx.device, False, layout.ragged)[0]
        state: dict[str, Any] = {
            "fingerprint": fingerprint,
            "source": source_name,
            "layout": "ragged" if layout.ragged else "fixed",
        }

        def array(name: str, dtype: Any, shape: tuple[int, ...]) -> None:
            np.lib.format.open_memmap(out / name, mode="w+", dtype=dtype, shape=shape).flush()

        if layout.ragged:
            state.update(shape=None, ndim=int(row.ndim))
            array("locs.npy", np.int64, (n_items, 2))
            array("shapes.npy", np.int64, (n_items, row.ndim))
        else:
            state["shape"] = [n_items, *row.shape]
            array("features.npy", DTYPES[layout.dtype], (n_items, *row.shape))
        array("done.npy", np.uint8, (n_items,))
        if info is not None:
            state["info_dim"] = int(info.size)
            array(INFO_FILE, np.float64, (n_items, info.size))
        # state.json marks the arrays as complete files; written after them, atomically.
        atomic_write_json(state_path, state)
        return state

    layout.update(_on_main(ctx, create))


class _PartWriter:
    """Appends this process's ragged items to ``part.rank<R>.bin`` and records where."""

    def __init__(self, out: Path, rank: int, done: np.ndarray, layout: _Layout) -> None:
        self.rank, self.layout = rank, layout
        self.path = out / f"part.rank{rank}.bin"
        self.locs = np.load(out / "locs.npy", mmap_mode="r+")
        self.shapes = np.load(out / "shapes.npy", mmap_mode="r+")
        # Cut the part back to the end of its last item marked done: bytes of a batch that
        # was in flight when the job died are not referenced and would only waste space.
        mine = (done == DONE) & (self.locs[:, 0] == rank)
        ends = self.locs[mine, 1] + self.shapes[mine].prod(axis=1)
        self.position = int(ends.max()) if ends.size else 0  # in elements
        size = self.path.stat().st_size if self.path.exists() else 0
        if size < self.position * layout.np_dtype.itemsize:
            raise FeatureCacheError(
                f"{self.path} is shorter than the items marked done in it; rerun with "
                "overwrite=True (features cache ... --overwrite)"
            )
        self.file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self.file.truncate(self.position * layout.np_dtype.itemsize)

    def write(self, indices: list[int], rows: list[np.ndarray], ids: list[str]) -> None:
        locs, shapes = [], []
        for index, row in zip(indices, rows):
            if row.ndim != self.layout.ndim:
                raise FeatureCacheError(
                    f"item {ids[index]}: features of shape {row.shape}, but the cache holds "
                    f"{self.layout.ndim}-d items"
                )
            data = np.ascontiguousarray(row, dtype=self.layout.np_dtype)
            self.file.write(data.tobytes())
            locs.append((self.rank, self.position))
            shapes.append(data.shape)
            self.position += data.size
        self.file.flush()
        os.fsync(self.file.fileno())  # on disk before locs/done point at it
        self.locs[indices] = locs
        self.shapes[indices] = shapes
        self.locs.flush()
        self.shapes.flush()

    def close(self) -> None:
        self.file.close()
        del self.locs, self.shapes


def _fill(
    out: Path,
    source: Callable,
    safe: _SafeItems,
    ctx: DistContext,
    layout: _Layout,
    batch_size: int,
    num_workers: int,
    progress: bool,
    channels_last: bool,
    ids: list[str],
) -> None:
    done = np.load(out / "done.npy", mmap_mode="r+")
    info = np.load(out / INFO_FILE, mmap_mode="r+") if layout.info_dim is not None else None
    pending = np.flatnonzero(done == NOT_DONE)[ctx.rank :: ctx.world_size].tolist()
    skipped_path = out / f"skipped.rank{ctx.rank}.json"
    skipped = _read_skipped([skipped_path])
    # Every rank must read the pending list before any rank marks items done: a rank that
    # reads it later sees a shorter list, strides it differently, and items fall between ranks.
    ctx.barrier()
    if not pending:
        return
    if layout.ragged:
        writer: _PartWriter | None = _PartWriter(out, ctx.rank, done, layout)
    else:
        writer, features = None, np.load(out / "features.npy", mmap_mode="r+")
    loader = DataLoader(
        torch.utils.data.Subset(safe, pending),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=ctx.device.type == "cuda",
    )
    bar = tqdm(
        total=len(pending),
        desc="caching features",
        disable=not show_progress(progress, ctx.is_main),
    )
    try:
        for indices, inputs, bad, infos in loader:
            if indices:
                rows = _run(source, inputs, ctx.device, channels_last, layout.ragged)
                if writer is not None:
                    writer.write(indices, rows, ids)
                else:
                    features[indices] = rows
                    features.flush()
                if info is not None:
                    info[indices] = np.stack(infos)
                    info.flush()
            if bad:
                skipped.update({i: {"index": i, "id": ids[i], "reason": r} for i, r in bad})
                atomic_write_json(skipped_path, sorted(skipped.values(), key=lambda s: s["index"]))
                done[[i for i, _ in bad]] = BAD
            # Mark done only after the rows (and the skip reasons) are on disk.
            done[indices] = DONE
            done.flush()
            bar.update(len(indices) + len(bad))
    finally:
        bar.close()
        if writer is not None:
            writer.close()


def _join_parts(out: Path, done: np.ndarray, layout: _Layout) -> list[int | None]:
    """Write the ragged parts into one flat ``features.npy`` in item order, with
    ``offsets.npy``; returns the meta shape (a dimension that varies is None)."""
    locs = np.load(out / "locs.npy")
    shapes = np.load(out / "shapes.npy")
    good = done == DONE
    sizes = np.where(good, shapes.prod(axis=1), 0).astype(np.int64)
    offsets = np.zeros(len(done) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:  # an empty file cannot be memory-mapped
        np.save(out / "features.npy", np.zeros(0, layout.np_dtype))
    else:
        flat = np.lib.format.open_memmap(
            out / "features.npy", mode="w+", dtype=layout.np_dtype, shape=(total,)
        )
        parts: dict[int, np.ndarray] = {}
        for i in np.flatnonzero(good):
            rank, start = (int(v) for v in locs[i])
            if rank not in parts:
                parts[rank] = np.memmap(
                    out / f"part.rank{rank}.bin", dtype=layout.np_dtype, mode="r"
                )
            if start + sizes[i] > parts[rank].size:
                raise FeatureCacheError(f"{out}/part.rank{rank}.bin lacks item {i}'s features")
            flat[offsets[i] : offsets[i + 1]] = parts[rank][start : start + sizes[i]]
        flat.flush()
        del flat, parts
    np.save(out / "offsets.npy", offsets)
    kept = shapes[good]
    return [len(done)] + [
        int(kept[0, d]) if (kept[:, d] == kept[0, d]).all() else None
        for d in range(shapes.shape[1])
    ]


def _finalize(
    out: Path, fingerprint: str, source_name: str, layout: _Layout, ids: list[str]
) -> None:
    done = np.load(out / "done.npy")
    missing = int((done == NOT_DONE).sum())
    if missing:
        raise FeatureCacheError(f"{missing} item(s) of {out} were not computed")
    skipped = _read_skipped(sorted(out.glob(SKIPPED_GLOB)))
    skipped_list = [skipped[i] for i in sorted(skipped) if done[i] == BAD]
    for entry in skipped_list:
        log.warning("skipped item %s: %s", entry["id"], entry["reason"])
    layout_meta: dict[str, Any]
    if layout.ragged:
        shape: list[int | None] = _join_parts(out, done, layout)
        flat = np.load(out / "features.npy", mmap_mode="r")
        layout_meta = {"layout": "ragged", "num_values": int(flat.shape[0])}
        del flat
    else:
        shape = list(layout.shape or ())
        layout_meta = {
            "layout": "fixed",
            "num_features": int(np.prod(shape[1:])) if len(shape) > 1 else 1,
        }
    extended = layout.ragged or layout.info_dim is not None
    atomic_write_json(
        out / "meta.json",
        {
            # a plain fixed cache stays version 1, so an older beyondvis still opens it
            "format_version": CACHE_FORMAT_VERSION if extended else FIXED_FORMAT_VERSION,
            "kind": CACHE_KIND,
            "source": source_name,
            "fingerprint": fingerprint,
            "shape": shape,
            "dtype": layout.dtype,
            "num_items": len(done),
            **layout_meta,
            "num_skipped": len(skipped_list),
            "info_dim": layout.info_dim,
            "item_ids": ids,
            "skipped": skipped_list,
            "torch_version": str(torch.__version__),
            # verified on open: a flipped byte in the features or a flipped done flag (an
            # item silently dropped or a zero row served) is an error naming the file
            "sha256": {name: file_sha256(out / name) for name in layout.payload},
        },
        indent=None,
    )
    for path in [*out.glob(PART_GLOB), *(out / name for name in WORK_FILES)]:
        path.unlink(missing_ok=True)  # the parts live on in features.npy


def _on_main(ctx: DistContext, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 and share its result; an error there is raised on every rank.

    Without this, the other ranks would wait forever at the next collective call.
    """
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as exc:
            if not ctx.enabled:
                raise
            error = (type(exc).__name__, str(exc))
    result, error = ctx.broadcast((result, error))
    if error is not None:
        if ctx.is_main:
            raise FeatureCacheError(f"{error[0]}: {error[1]}")
        raise FeatureCacheError(f"rank 0 failed: {error[0]}: {error[1]}")
    return result


def _read_skipped(paths: Sequence[Path]) -> dict[int, dict[str, Any]]:
    entries: dict[int, dict[str, Any]] = {}
    for path in paths:
        if path.is_file():
            for entry in json.loads(path.read_text(encoding="utf-8")):
                entries[int(entry["index"])] = entry
    return entries


def _count_done(path: Path) -> int:
    try:
        return int((np.load(path / "done.npy", mmap_mode="r") != NOT_DONE).sum())
    except (OSError, ValueError):
        return 0


def _stored_fingerprint(out: Path) -> tuple[str, str] | None:
    """``(file, fingerprint)`` of the cache in ``out``: from ``meta.json`` when finished, else
    from ``state.json`` of an interrupted job; ``None`` for a folder without a cache."""
    for name in ("meta.json", "state.json"):
        if (out / name).is_file():
            try:
                data = json.loads((out / name).read_text(encoding="utf-8"))
                return name, data.get("fingerprint") if isinstance(data, dict) else "unreadable"
            except (OSError, json.JSONDecodeError):
                return name, "unreadable"
    return None


def _finished(out: Path, fingerprint: str) -> bool:
    return _stored_fingerprint(out) == ("meta.json", fingerprint)


def _prepare_folder(out: Path, fingerprint: str, overwrite: bool, replace_stale: bool) -> None:
    stored = _stored_fingerprint(out)
    existing = None if stored is None else stored[1]
    if existing is not None and existing != fingerprint:
        if not (overwrite or replace_stale):
            raise FeatureCacheError(
                f"{out} holds features of a different source/data (fingerprint {existing[:12]} "
                f"!= {fingerprint[:12]}); pass overwrite=True or choose another folder"
            )
        log.info("replacing the feature cache in %s (other source or data)", out)
        _remove_cache_files(out)
    elif overwrite and existing is not None:
        _remove_cache_files(out)
    out.mkdir(parents=True, exist_ok=True)


def _remove_cache_files(out: Path) -> None:
    """Delete what a feature cache consists of, and nothing else: ``--overwrite`` on a folder
    that also holds a user's files must not take them with it."""
    for name in ("meta.json", "state.json", *PAYLOAD_FILES, *RAGGED_FILES, INFO_FILE, *WORK_FILES):
        (out / name).unlink(missing_ok=True)
    for path in [*out.glob(SKIPPED_GLOB), *out.glob(PART_GLOB)]:
        path.unlink()


def _dist_context(device: str | torch.device | None) -> tuple[DistContext, bool]:
    if dist.is_available() and (
        dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) > 1
    ):
        ctx = init_distributed(device if isinstance(device, str) else str(device))
        return ctx, ctx.owns_group
    return DistContext(device=resolve_device(device)), False


def _module_of(source: Callable) -> nn.Module | None:
    if isinstance(source, nn.Module):
        return source
    owner = getattr(source, "__self__", None)  # a bound method such as backbone.feature_map
    return owner if isinstance(owner, nn.Module) else None


def _source_name(source: Callable, module: nn.Module | None) -> str:
    base = getattr(module, "name", None) if module is not None else None
    if module is not None:
        base = base if isinstance(base, str) else type(module).__name__
        method = getattr(source, "__name__", None)
        return base if source is module or method is None else f"{base}.{method}"
    return getattr(source, "__qualname__", type(source).__name__)


def _item_ids(dataset: Dataset, item_ids: Sequence[str] | None, n_items: int) -> list[str]:
    if item_ids is None:
        paths = getattr(dataset, "paths", None)
        item_ids = list(paths) if paths is not None else [str(i) for i in range(n_items)]
    ids = [str(i) for i in item_ids]
    if len(ids) != n_items:
        raise ValueError(f"{len(ids)} item ids for a dataset of {n_items} items")
    return ids


def _stable_repr(obj: Any) -> str:
    # Memory addresses change every run; they must not change the fingerprint.
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def _weights_digest(module: nn.Module | None) -> str | None:
    if module is None:
        return None
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str(data.dtype).encode() + str(tuple(data.shape)).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def _fingerprint(
    source_name: str,
    module: nn.Module | None,
    dataset: Dataset,
    ids: list[str],
    dtype: str,
    extra: Any,
    ragged: bool = False,
    info_fn: Callable | None = None,
) -> str:
    payload: dict[str, Any] = {
        "source": source_name,
        "weights": _weights_digest(module),
        "transform": _stable_repr(getattr(dataset, "transform", None)),
        "items": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "dtype": dtype,
        "extra": _stable_repr(extra),
    }
    # only when used, so the fingerprints of the caches written before these existed still match
    if ragged:
        payload["layout"] = "ragged"
    if info_fn is not None:
        payload["info"] = getattr(info_fn, "__qualname__", _stable_repr(info_fn))
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
