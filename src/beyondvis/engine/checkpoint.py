"""Checkpoint files: written atomically, versioned, and loadable with ``weights_only=True``.

A checkpoint is a plain dict of tensors and Python scalars/lists/dicts. ``weights_only`` loading
means opening a checkpoint can never execute code, so checkpoints from elsewhere are safe to load.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from beyondvis.errors import FormatError
from beyondvis.utils import atomic_write_bytes
from beyondvis.utils.versioned import check_format_version

FORMAT_VERSION = 1
CHECKPOINT_KIND = "beyondvis.engine.checkpoint"
DIGEST_KEY = "sha256"


class CheckpointError(FormatError, RuntimeError):
    """A checkpoint is missing, unreadable, foreign, or from a newer beyondvis."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format version) atomically: readers never see half a file."""
    path = Path(path)
    check_plain(state, "checkpoint")
    payload = {"format_version": FORMAT_VERSION, "kind": CHECKPOINT_KIND, **state}
    payload.pop(DIGEST_KEY, None)
    payload[DIGEST_KEY] = state_digest(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and check its format version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign pickles
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a beyondvis checkpoint (no format_version)")
    check_format_version(
        state["format_version"], FORMAT_VERSION, path, CheckpointError, what="checkpoint",
        fix="upgrade beyondvis to load it",
    )  # fmt: skip
    expected = state.pop(DIGEST_KEY, None)  # absent in checkpoints written before digests
    if expected is not None and state_digest(state) != expected:
        raise CheckpointError(
            f"{path}: checksum mismatch, the file is corrupt (a flipped byte in its weights or "
            "metadata); use another checkpoint (best.pt / last.pt) or retrain"
        )
    return state


def state_digest(value: Any) -> str:
    """SHA-256 of a checkpoint's content (keys in order, tensors by dtype, shape and bytes).

    Stored in the file and recomputed on load: zip-level damage already fails ``torch.load``,
    but a flipped byte inside a tensor's storage loads silently (a test O-F1 of 0.890 became
    0.775) unless the content itself is checked."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        digest.update(f"T{data.dtype}{tuple(data.shape)}".encode())
        if data.numel():
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(b"D%d" % len(value))
        for key, item in value.items():
            digest.update(f"K{type(key).__name__}:{key!r}".encode())
            _feed(digest, item)
    elif isinstance(value, list | tuple):
        digest.update(b"L%d" % len(value))
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{type(value).__name__}:{value!r}".encode())


def restore_model(
    model: nn.Module, checkpoint: str | os.PathLike | dict[str, Any], strict: bool = True
) -> dict[str, Any]:
    """Load the weights of a checkpoint (path or loaded dict) into ``model``; return the dict."""
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    unwrap_model(model).load_state_dict(state["model"], strict=strict)
    return state


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside a DistributedDataParallel / DataParallel / compiled wrapper."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` is tensors / plain types (what weights_only can load)."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"{where}: keys must be str or int, got {key!r}")
            check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} holds a {type(value).__name__}; checkpoints may contain only tensors, str, "
        "numbers, bools, None, lists and dicts (convert dataclasses with config_to_dict)"
    )
