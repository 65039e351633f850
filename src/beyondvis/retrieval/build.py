"""Index folders on disk: build (resumable, bound to its settings), add to, and merge BLCF indexes.

:class:`~beyondvis.retrieval.BLCFIndex` encodes, searches, saves and loads; these functions are
what a *folder* needs around it, so that ``beyondvis index build|add|merge`` and a library
caller behave alike:

* :func:`build_index_folder` holds the folder's lock, trains when the index is not trained yet,
  adds with chunk checkpoints in ``out/work`` and saves. An interrupted build resumes only with
  the settings it started with (:func:`check_build_settings`).
* :func:`add_to_index_folder` loads the index *under* the lock, so two concurrent adds cannot
  each save an index without the other's photos.
* :func:`merge_index_folders` merges shards built with one model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from beyondvis.errors import BeyondvisError

BUILD_SETTINGS = "build_settings.json"
BUILD_SETTINGS_FORMAT = "beyondvis.index.build_settings/1"


class BuildSettingsError(BeyondvisError, ValueError):
    """An interrupted build would resume with other settings, or its settings file is unreadable."""


class IndexExistsError(BeyondvisError, FileExistsError):
    """The output folder already holds a finished index."""


def build_settings(
    config: Any,
    codebook: str,
    photos: str | os.PathLike,
    shard: str | None = None,
) -> dict:
    """What binds a build's checkpointed chunks: the index config, the codebook it encodes with
    (``"shipped"``, ``"fitted"`` or ``"model <path>"``), the shard and the photo folder."""
    return {
        "format": BUILD_SETTINGS_FORMAT,
        "config": asdict(config),
        "codebook": codebook,
        "shard": shard,
        "photos": str(Path(photos).resolve()),
    }


def check_build_settings(work: str | os.PathLike, settings: dict, out: str | os.PathLike) -> None:
    """An interrupted build resumes only with the settings it started with.

    Its chunks in ``work/`` were computed with those settings; resuming with another
    ``--max-side`` or codebook gave a mixed index (maps of two sizes, a manifest naming the
    wrong vocabulary) and exit 0. The settings are written when a build starts; a build whose
    ``work/`` holds computed chunks and other settings raises :class:`BuildSettingsError`
    naming the keys that differ.
    """
    from beyondvis.engine import config_diff, format_diff
    from beyondvis.utils import atomic_write_json

    work = Path(work)
    path = work / BUILD_SETTINGS
    # only a build that computed something is bound to its settings
    started = work.is_dir() and any(p.name not in (BUILD_SETTINGS, "lock") for p in work.iterdir())
    if path.is_file() and started:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BuildSettingsError(
                f"{path} is unreadable ({exc}); remove {work} to start afresh"
            ) from None
        diff = config_diff(stored, settings)
        if diff:
            raise BuildSettingsError(
                f"{out} holds an interrupted build with other settings: "
                f"{format_diff(diff)}; re-run with the same settings to resume it, or remove "
                f"{work} to start afresh"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, settings)


def check_no_index(out: str | os.PathLike, hint: str = "choose another folder") -> None:
    """Refuse to write a new index over the finished one in ``out`` (:class:`IndexExistsError`)."""
    from beyondvis.retrieval.index import MANIFEST

    if (Path(out) / MANIFEST).exists():
        raise IndexExistsError(f"{out} already holds an index; {hint}")


def build_index_folder(
    index: Any,
    photos: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    settings: dict | None = None,
    workers: int = 2,
    progress: bool = False,
) -> Any:
    """Train (if needed) and fill ``index`` with ``photos``, checkpointing in ``out/work``, and
    save it to ``out``; returns ``index``. A rerun after a kill resumes from the checkpoints;
    ``settings`` (:func:`build_settings`) binds them to this build's settings."""
    from beyondvis.retrieval.index import folder_lock

    out = Path(out)
    check_no_index(out, "use `index add` or another --out")
    work = out / "work"
    with folder_lock(out):  # a refusal is a BeyondvisError
        if settings is not None:
            check_build_settings(work, settings, out)
        if not index.is_trained:
            index.train(photos, work_dir=work, progress=progress, workers=workers)
        index.add(photos, work_dir=work, progress=progress, workers=workers)
        index.save(out)
    return index


@dataclass
class AddReport:
    """What :func:`add_to_index_folder` did."""

    index: Any
    added: int
    already_indexed: int
    skipped: list[dict]


def add_to_index_folder(
    folder: str | os.PathLike,
    photos: Sequence[str | os.PathLike],
    device: str = "cpu",
    workers: int = 2,
    progress: bool = False,
) -> AddReport:
    """Add ``photos`` to the BLCF index in ``folder`` without refitting its codebook."""
    from beyondvis.retrieval.index import MANIFEST, BLCFIndex, folder_lock

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():  # its error, before the lock makes a folder
        BLCFIndex.load(folder, device=device)
    with folder_lock(folder):
        # loaded under the lock: two concurrent adds each loaded the index first, and the
        # later save dropped the other's photos (450 of 600 kept)
        index = BLCFIndex.load(folder, device=device)
        before = len(index)
        skipped = index.add(
            photos, work_dir=folder / "work" / "add", progress=progress, workers=workers
        )
        index.save(folder)
    return AddReport(index, len(index) - before, index.already_indexed, skipped)


def merge_index_folders(shards: Sequence[str | os.PathLike], out: str | os.PathLike) -> Any:
    """Merge the BLCF index shards (built with one model) into one index saved to ``out``."""
    from beyondvis.retrieval.index import BLCFIndex

    out = Path(out)
    check_no_index(out, "merge into another --out")
    index = BLCFIndex.load(shards[0])
    for shard in shards[1:]:
        try:
            index.merge(BLCFIndex.load(shard))
        except ValueError as exc:
            raise type(exc)(f"shard {shard}: {exc}") from None
    index.save(out)
    return index


def build_detector_folder(
    index: Any,
    photos: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    queries: Sequence[Any] | None = None,
    finetune: Any = None,
    progress: bool = False,
) -> Any:
    """Train a :class:`~beyondvis.retrieval.DetectorIndex` (fine-tuned on ``queries`` with the
    ``finetune`` FinetuneConfig, if given), fill it with ``photos`` and save it to ``out``,
    under the folder's lock; returns ``index``."""
    from beyondvis.retrieval.index import folder_lock

    out = Path(out)
    check_no_index(out, "use `index add` or another --out")
    with folder_lock(out):
        index.train(photos, queries, finetune, work_dir=out / "work", progress=progress)
        index.add(photos, progress=progress)
        index.save(out)
    return index


def add_to_detector_folder(
    folder: str | os.PathLike,
    photos: Sequence[str | os.PathLike],
    device: str = "cpu",
    progress: bool = False,
) -> AddReport:
    """Add ``photos`` to the detector index in ``folder`` (loaded under the lock, as
    :func:`add_to_index_folder` does)."""
    from beyondvis.retrieval.detector import DetectorIndex
    from beyondvis.retrieval.index import folder_lock

    DetectorIndex.load(folder, device=device)  # a bad index: its error, and no lock folder
    with folder_lock(folder):
        # reloaded under the lock, or a concurrent add's photos are lost on save
        index = DetectorIndex.load(folder, device=device)
        before = len(index)
        skipped = index.add(photos, progress=progress)
        index.save(folder)
    return AddReport(index, len(index) - before, getattr(index, "already_indexed", 0), skipped)
