"""Feature caching: run a frozen backbone (any ``batch -> tensor`` callable) over a dataset once.

Layout of a cache folder::

    features.npy   (N, *feature_shape) memory-mapped array, row i = dataset item i
    done.npy       (N,) uint8: 0 = not computed yet, 1 = computed, 2 = bad item (skipped)
    skipped.rank<R>.json   bad items found so far by process R (reason per item)
    meta.json      written last, atomically, when every item is done: format version, source
                   name, fingerprint, shape, dtype, item ids, skipped items

Rows are flushed before they are marked done, and ``meta.json`` appears only at the end, so a
killed job loses at most the batch in flight: rerunning the same call continues with the items
still marked 0. A finished cache whose fingerprint (source name + weights + transform + item
list + dtype) matches is reused without running the model. Under torchrun the pending items are
split across processes, which write disjoint rows of the same files.
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

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
CACHE_KIND = "beyondvis.engine.feature_cache"
DTYPES = {"float32": np.float32, "float16": np.float16}
NOT_DONE, DONE, BAD = 0, 1, 2
PAYLOAD_FILES = ("features.npy", "done.npy")
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
    progress: bool = True,
    channels_last: bool = False,
) -> FeatureCache:
    """Compute ``source(batch)`` for every item of ``dataset`` into ``out_dir``; return the cache.

    ``source`` is a frozen module (e.g. a backbone: its pooled ``forward``), a bound method of
    one (``backbone.feature_map``), or any callable from a batch tensor to a ``(B, ...)`` tensor.
    Items may be tensors, ``(input, ...)`` tuples, or ``ImageListDataset`` dicts (bad images
    are skipped and listed in the meta). Items whose loading raises are skipped the same way.
    ``input_fn(item) -> input`` overrides how the input is taken from an item.
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
    fingerprint = _fingerprint(source_name, module, dataset, ids, dtype, fingerprint_extra)

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
        _on_main(ctx, lambda: _prepare_folder(out, fingerprint, overwrite))
        if (out / "meta.json").is_file():  # finished and matching: reuse
            finished = True
            return FeatureCache(out)
        if module is not None:
            module.eval().to(ctx.device)
            if channels_last:
                module.to(memory_format=torch.channels_last)
        safe = _SafeItems(dataset, input_fn)
        shape = _feature_shape(out, source, safe, ctx, dtype, fingerprint, source_name, n_items)
        _fill(out, source, safe, ctx, batch_size, num_workers, progress, channels_last, ids)
        ctx.barrier()
        _on_main(ctx, lambda: _finalize(out, fingerprint, source_name, shape, dtype, ids))
        finished = True
    finally:
        lock.close()
        if owns:
            ctx.close(sync=finished)  # after an error a peer may never reach the barrier
    return FeatureCache(out)


class FeatureCache:
    """A finished feature cache opened read-only; ``cache[i]`` is the i-th good item's features.

    Bad (skipped) items have no row here: ``rows[i]`` is the dataset index of good item ``i``,
    ``item_ids`` their ids, ``skipped`` the bad items with reasons. ``features`` is the whole
    memory-mapped array (rows of bad items are zeros).
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
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise FeatureCacheError(f"cannot read {meta_path}: {exc}") from None
        if meta.get("kind") != CACHE_KIND:
            raise FeatureCacheError(f"{meta_path} does not describe a beyondvis feature cache")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > CACHE_FORMAT_VERSION:
            raise FeatureCacheError(
                f"{self.path} has feature-cache format version {version}, but this beyondvis "
                f"reads versions up to {CACHE_FORMAT_VERSION}; upgrade beyondvis"
            )
        self.meta: dict[str, Any] = meta
        self._verify(meta.get("sha256"))
        self.features = np.load(self.path / "features.npy", mmap_mode="r")
        if list(self.features.shape) != meta["shape"]:
            raise FeatureCacheError(
                f"{self.path}: features.npy has shape {self.features.shape}, meta says "
                f"{meta['shape']}"
            )
        done = np.load(self.path / "done.npy")
        self.rows = np.flatnonzero(done == DONE)
        self.all_item_ids: list[str] = meta["item_ids"]
        self.item_ids = [self.all_item_ids[i] for i in self.rows]
        self.skipped: list[dict[str, Any]] = meta["skipped"]
        self._row_of_id = {item_id: int(i) for i, item_id in zip(self.rows, self.item_ids)}

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
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["shape"][1:])

    @property
    def dtype(self) -> np.dtype:
        return self.features.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        # np.array copies the row out of the read-only map (torch cannot wrap read-only memory).
        return torch.from_numpy(np.array(self.features[self.rows[i]]))

    def by_id(self, item_id: str) -> torch.Tensor:
        if item_id not in self._row_of_id:
            raise KeyError(f"item {item_id!r} is not in the cache (unknown or skipped)")
        return torch.from_numpy(np.array(self.features[self._row_of_id[item_id]]))


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
    """Dataset items as ``(index, input)`` or ``(index, None, reason)`` - loading never raises."""

    def __init__(self, dataset: Dataset, input_fn: Callable[[Any], Any] | None) -> None:
        self.dataset = dataset
        self.input_fn = input_fn

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any, str | None]:
        try:
            item = self.dataset[index]
        except Exception as exc:  # a batch job skips and reports bad items
            return index, None, f"{type(exc).__name__}: {exc}"
        if self.input_fn is not None:
            return index, self.input_fn(item), None
        if isinstance(item, Mapping):
            if "error" in item:
                return index, None, str(item["error"])
            for key in ("image", "input", "x"):
                if key in item:
                    return index, item[key], None
            raise KeyError(f"dataset item has none of the keys image/input/x: {sorted(item)}")
        if isinstance(item, list | tuple):
            return index, item[0], None
        return index, item, None


def _collate(items: list[tuple[int, Any, str | None]]) -> tuple[list[int], Any, list[tuple]]:
    good = [(i, x) for i, x, reason in items if reason is None]
    bad = [(i, reason) for i, _, reason in items if reason is not None]
    indices = [i for i, _ in good]
    inputs: Any = None
    if good:
        first = good[0][1]
        if isinstance(first, torch.Tensor) and all(x.shape == first.shape for _, x in good):
            inputs = torch.stack([x for _, x in good])
        else:
            inputs = [x for _, x in good]
    return indices, inputs, bad


def _run(source: Callable, inputs: Any, device: torch.device, channels_last: bool) -> np.ndarray:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.to(device, non_blocking=True)
        if channels_last and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = source(inputs)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the feature source must return a tensor, got {type(out).__name__}")
    return out.float().cpu().numpy()


def _feature_shape(
    out: Path,
    source: Callable,
    safe: _SafeItems,
    ctx: DistContext,
    dtype: str,
    fingerprint: str,
    source_name: str,
    n_items: int,
) -> tuple[int, ...]:
    """Create the arrays on first use (the shape comes from running one good item)."""
    state_path = out / "state.json"

    def create() -> tuple[int, ...]:
        if state_path.is_file():
            shape = tuple(json.loads(state_path.read_text(encoding="utf-8"))["shape"])
        else:
            for index in range(n_items):
                _, x, reason = safe[index]
                if reason is None:
                    break
            else:
                raise ValueError("every item of the dataset failed to load; nothing to cache")
            batch = _collate([(index, x, None)])[1]
            row = _run(source, batch, ctx.device, False)
            shape = (n_items, *row.shape[1:])
            np.lib.format.open_memmap(
                out / "features.npy", mode="w+", dtype=DTYPES[dtype], shape=shape
            ).flush()
            np.lib.format.open_memmap(
                out / "done.npy", mode="w+", dtype=np.uint8, shape=(n_items,)
            ).flush()
            # state.json marks the arrays as complete files; written after them, atomically.
            atomic_write_json(
                state_path,
                {"fingerprint": fingerprint, "source": source_name, "shape": list(shape)},
            )
        return shape

    return tuple(_on_main(ctx, create))


def _fill(
    out: Path,
    source: Callable,
    safe: _SafeItems,
    ctx: DistContext,
    batch_size: int,
    num_workers: int,
    progress: bool,
    channels_last: bool,
    ids: list[str],
) -> None:
    features = np.load(out / "features.npy", mmap_mode="r+")
    done = np.load(out / "done.npy", mmap_mode="r+")
    pending = np.flatnonzero(done == NOT_DONE)[ctx.rank :: ctx.world_size].tolist()
    skipped_path = out / f"skipped.rank{ctx.rank}.json"
    skipped = _read_skipped([skipped_path])
    # Every rank must read the pending list before any rank marks items done: a rank that
    # reads it later sees a shorter list, strides it differently, and items fall between ranks.
    ctx.barrier()
    if not pending:
        return
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
    for indices, inputs, bad in loader:
        if indices:
            features[indices] = _run(source, inputs, ctx.device, channels_last)
            features.flush()
        if bad:
            skipped.update({i: {"index": i, "id": ids[i], "reason": r} for i, r in bad})
            atomic_write_json(skipped_path, sorted(skipped.values(), key=lambda s: s["index"]))
            done[[i for i, _ in bad]] = BAD
        # Mark done only after the rows (and the skip reasons) are on disk.
        done[indices] = DONE
        done.flush()
        bar.update(len(indices) + len(bad))
    bar.close()
    del features, done


def _finalize(
    out: Path, fingerprint: str, source_name: str, shape: tuple[int, ...], dtype: str, ids: list
) -> None:
    done = np.load(out / "done.npy")
    missing = int((done == NOT_DONE).sum())
    if missing:
        raise FeatureCacheError(f"{missing} item(s) of {out} were not computed")
    skipped = _read_skipped(sorted(out.glob(SKIPPED_GLOB)))
    skipped_list = [skipped[i] for i in sorted(skipped) if done[i] == BAD]
    for entry in skipped_list:
        log.warning("skipped item %s: %s", entry["id"], entry["reason"])
    atomic_write_json(
        out / "meta.json",
        {
            "format_version": CACHE_FORMAT_VERSION,
            "kind": CACHE_KIND,
            "source": source_name,
            "fingerprint": fingerprint,
            "shape": list(shape),
            "dtype": dtype,
            "num_items": int(shape[0]),
            "num_features": int(np.prod(shape[1:])) if len(shape) > 1 else 1,
            "num_skipped": len(skipped_list),
            "item_ids": ids,
            "skipped": skipped_list,
            "torch_version": str(torch.__version__),
            # verified on open: a flipped byte in the features or a flipped done flag (an
            # item silently dropped or a zero row served) is an error naming the file
            "sha256": {name: file_sha256(out / name) for name in PAYLOAD_FILES},
        },
        indent=None,
    )


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


def _prepare_folder(out: Path, fingerprint: str, overwrite: bool) -> None:
    stored = _stored_fingerprint(out)
    existing = None if stored is None else stored[1]
    if existing is not None and existing != fingerprint:
        if not overwrite:
            raise FeatureCacheError(
                f"{out} holds features of a different source/data (fingerprint {existing[:12]} "
                f"!= {fingerprint[:12]}); pass overwrite=True or choose another folder"
            )
        _remove_cache_files(out)
    elif overwrite and existing is not None:
        _remove_cache_files(out)
    out.mkdir(parents=True, exist_ok=True)


def _remove_cache_files(out: Path) -> None:
    """Delete what a feature cache consists of, and nothing else: ``--overwrite`` on a folder
    that also holds a user's files must not take them with it."""
    for name in ("meta.json", "state.json", *PAYLOAD_FILES):
        (out / name).unlink(missing_ok=True)
    for path in out.glob(SKIPPED_GLOB):
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
) -> str:
    payload = {
        "source": source_name,
        "weights": _weights_digest(module),
        "transform": _stable_repr(getattr(dataset, "transform", None)),
        "items": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "dtype": dtype,
        "extra": _stable_repr(extra),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
