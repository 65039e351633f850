"""Which runtime cooks a bundle: ONNX Runtime + NumPy when it ships a usable export (a fresh
``beyondvis cook`` then never imports torch), else PyTorch. Importing this module imports
neither.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from beyondvis.errors import BeyondvisError


class CookModelError(BeyondvisError, ValueError):
    """The bundle cannot be loaded on the runtime/device asked for."""


RUNTIMES = ("auto", "onnxruntime", "torch")


def load_model(
    folder: str | os.PathLike,
    runtime: str = "auto",
    device: str = "auto",
    threads: int | None = None,
) -> tuple[Any, str]:
    """``(model, runtime name)``: the card's model as ``beyondvis cook`` runs it. ``auto`` takes
    ONNX Runtime when the bundle ships a usable ONNX export and ``device`` is auto/cpu, else
    PyTorch's :class:`CookModel` (with a warning on stderr when the export is unusable)."""
    from beyondvis.recipes.generation.onnx_cook import OnnxBundleError, has_onnx

    if runtime not in RUNTIMES:
        raise CookModelError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    if runtime == "onnxruntime" and device not in ("auto", "cpu"):
        raise CookModelError(f"runtime onnxruntime runs on the CPU, not on {device}")
    if runtime == "onnxruntime" or (
        runtime == "auto" and device in ("auto", "cpu") and has_onnx(folder)
    ):
        from beyondvis.recipes.generation.onnx_cook import OrtCookModel

        try:
            return OrtCookModel(folder, threads=threads), "onnxruntime"
        except OnnxBundleError as exc:
            if runtime == "onnxruntime":
                raise CookModelError(str(exc)) from exc
            print(f"warning: {exc}; cooking with PyTorch", file=sys.stderr)
    import torch

    from beyondvis.device import resolve_device
    from beyondvis.recipes.generation.bundle import BundleError, CookModel

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return CookModel(folder, device=str(resolve_device(device))), "torch"
    except (BundleError, ValueError) as exc:
        raise CookModelError(str(exc)) from exc
