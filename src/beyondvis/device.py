"""Device selection: CUDA when present, else CPU, overridable by ``--device``."""

from __future__ import annotations

import torch


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """Return the device to run on.

    ``None`` or ``"auto"`` picks ``cuda`` when available, else ``mps`` when available, else
    ``cpu``. An explicit spec (``"cpu"``, ``"cuda:1"``) is checked so a typo or a missing GPU
    fails here with a clear message rather than deep inside a forward pass.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec is None or spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"invalid device {spec!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return device
