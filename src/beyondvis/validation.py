"""One validation layer for command-line values and config values, run before any work starts.

Two halves, both torch-free so ``--help`` and config loading stay instant:

* **argparse types** (:func:`positive_int`, :func:`non_negative_int`, :func:`positive_float`,
  :func:`device_choice`, :func:`existing_dir`, ...): a bad ``--threads 0`` or ``--device banana``
  is an argparse usage error (one line, exit 2) before a model or an image is loaded.
* **config rules** (:func:`check_config`): range checks applied by field *name* to every typed
  config dataclass that :func:`beyondvis.engine.load_config` builds, so ``dropout: 2`` or
  ``lr: nan`` is refused by the same rule in every system (sets, segmentation, recipes,
  retrieval) instead of each dataclass re-implementing it or none doing so.

Plus the machine-derived memory cap (:func:`check_image_memory`) for jobs whose image side and
batch size the user picks: a ``--size 100000`` is refused up front with the estimate, instead of
running out of memory at 22 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from beyondvis.errors import BeyondvisError


class ValidationError(BeyondvisError, ValueError):
    """A value outside its allowed range or choices (the message names the value and the rule)."""


# ------------------------------------------------------------------------- argparse types
def _number(value: str, kind: type) -> Any:
    try:
        number = kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}") from None
    if kind is float and not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value!r}")
    return number


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    number = _number(value, int)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def non_negative_int(value: str) -> int:
    """argparse type: an integer >= 0 (for options where 0 means "all" or "none")."""
    number = _number(value, int)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {number}")
    return number


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0 (``nan``, ``inf``, 0 and negatives refused)."""
    number = _number(value, float)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def fraction(value: str) -> float:
    """argparse type: a finite number in [0, 1]."""
    number = _number(value, float)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def device_choice(value: str) -> str:
    """argparse type: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Only the spelling is checked here (no torch import); whether CUDA is present is checked by
    :func:`beyondvis.device.resolve_device` when the command starts.
    """
    text = value.strip().lower()
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"must be one of {DEVICE_CHOICES}, got {value!r}")
    return text


def existing_dir(value: str) -> Path:
    """argparse type: a folder that exists."""
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{value} {what}")
    return path


def existing_file(value: str) -> Path:
    """argparse type: a file that exists."""
    path = Path(value).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise argparse.ArgumentTypeError(f"{value} {what}")
    return path


# ------------------------------------------------------------------------ output paths
def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Refuse an output path that cannot be written, before any work is done.

    ``path`` is a folder or a file to be created; the nearest existing ancestor must be a
    writable folder (an existing file in the way, or a read-only folder, is an error).
    """
    target = Path(path).expanduser()
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir() and probe != target:
        raise ValidationError(f"cannot write {what} {target}: {probe} is a file, not a folder")
    folder = probe if probe.is_dir() else probe.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValidationError(f"cannot write {what} {target}: {folder} is not writable")
    return target


# ------------------------------------------------------------------------- memory caps
# Peak memory of a no-grad EfficientNet-Lite0 forward is ~37-41x its float32 input (measured
# with ru_maxrss at 448 and 896 px, batch 1); 48x leaves room for the other backbones' wider
# early stages and the DataLoader's copy of the batch.
ACTIVATION_FACTOR = 48


def available_memory() -> int | None:
    """Bytes of memory available to a new job (``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def image_batch_bytes(side: int, batch_size: int, channels: int = 3) -> int:
    """Estimated peak bytes of a frozen-backbone forward on ``batch_size`` images of ``side``²."""
    return int(batch_size) * channels * int(side) ** 2 * 4 * ACTIVATION_FACTOR


def check_image_memory(
    side: int,
    batch_size: int,
    *,
    side_flag: str = "--size",
    batch_flag: str | None = "--batch-size",
    available: int | None = None,
    budget: float = 0.8,
) -> None:
    """Refuse an image side x batch whose forward pass would not fit in this machine's memory.

    ``batch_flag=None``: the job runs one image at a time (the message offers a side only).
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    need = image_batch_bytes(side, batch_size)
    if need <= budget * available:
        return
    per_image = image_batch_bytes(side, 1)
    fit_batch = int(budget * available // per_image)
    fit_side = int(math.sqrt(budget * available / image_batch_bytes(1, batch_size)))
    if batch_flag is None:
        what, hint = f"{side_flag} {side}", f"{side_flag} {fit_side} or less fits"
    else:
        what = f"{side_flag} {side} with {batch_flag} {batch_size}"
        hint = (
            f"{batch_flag} {fit_batch} fits at this size"
            if fit_batch >= 1
            else f"{side_flag} {fit_side} or less fits with {batch_flag} {batch_size}"
        )
    raise ValidationError(
        f"{what} needs about {_gib(need)} of memory and this machine has {_gib(available)} "
        f"available; {hint}"
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


# ------------------------------------------------------------------------- config rules
def _finite(v: float) -> str | None:
    return None if math.isfinite(v) else "must be a finite number"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _at_least_one(v: float) -> str | None:
    return None if v >= 1 else "must be >= 1"


def _dropout(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1) (a probability of dropping a unit)"


def _fraction(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1) (a share of the data)"


# (field-name pattern, rule): the first matching pattern wins; every float is also finite.
RULES: tuple[tuple[re.Pattern[str], Callable[[float], str | None]], ...] = tuple(
    (re.compile(pattern), rule)
    for pattern, rule in (
        (r"^(.*_)?dropout$", _dropout),
        (r"^(val|test)_fraction$", _fraction),
        (r"^(.*_)?lr$", _positive),
        (r"^(image|codebook|batch|eval_batch|cache_batch)_size$", _at_least_one),
        (r"^max_side$", _at_least_one),
        (r"^pca_dim$", _at_least_one),
        (r"^scale$", _positive),
    )
)


def config_problems(config: Any, prefix: str = "") -> list[str]:
    """Every rule the numeric fields of dataclass ``config`` (and nested ones) break."""
    problems: list[str] = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name, None)
        key = f"{prefix}.{field.name}" if prefix else field.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            problems.extend(config_problems(value, key))
            continue
        if field.name == "device" and isinstance(value, str) and not _DEVICE.match(value):
            problems.append(f"{key} must be one of {DEVICE_CHOICES}, got {value!r}")
            continue
        for item_key, item in _numbers(key, value):
            message = _finite(item) if isinstance(item, float) else None
            if message is None:
                for pattern, rule in RULES:
                    if pattern.match(field.name):
                        message = rule(item)
                        break
            if message:
                problems.append(f"{item_key} {message}, got {item!r}")
    return problems


def _numbers(key: str, value: Any) -> Iterable[tuple[str, float]]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield key, value


def check_config(config: Any, where: str = "") -> Any:
    """Raise :class:`ValidationError` listing every rule ``config`` breaks; else return it."""
    problems = config_problems(config)
    if problems:
        head = f"{where}: " if where else ""
        raise ValidationError(f"{head}invalid config: " + "; ".join(problems))
    return config


def check_choice(key: str, value: str, allowed: Iterable[str]) -> None:
    """Refuse ``value`` for ``key`` unless it is one of ``allowed`` (names the choices)."""
    allowed = sorted(set(allowed))
    if value not in allowed:
        raise ValidationError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")


__all__ = [
    "ACTIVATION_FACTOR",
    "DEVICE_CHOICES",
    "RULES",
    "ValidationError",
    "available_memory",
    "check_choice",
    "check_config",
    "check_image_memory",
    "check_writable",
    "config_problems",
    "device_choice",
    "existing_dir",
    "existing_file",
    "fraction",
    "image_batch_bytes",
    "non_negative_int",
    "positive_float",
    "positive_int",
]
