"""Training configuration: a dataclass, loadable from YAML or dicts with dotted overrides.

``load_config`` builds any (nested) dataclass, so a system can define
``ExperimentConfig(model: ModelConfig, train: TrainConfig)`` and load it from one YAML file,
then tweak it from the command line with ``train.lr=0.01``. Unknown keys are errors (a typo
silently ignored would train the wrong model for hours).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")


class ConfigError(ValueError):
    """A configuration file, dict or override is invalid; the message names the key."""


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run (every field has a small, CPU-friendly default)."""

    out_dir: str = "runs/default"
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (None: run all epochs)
    batch_size: int = 32  # per process; the global batch under DDP is batch_size * world size
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw | sgd
    momentum: float = 0.9  # sgd only
    scheduler: str = "none"  # none | cosine | step (stepped once per optimizer step)
    scheduler_step_size: int = 1000  # step: decay every N optimizer steps
    scheduler_gamma: float = 0.1  # step: multiply lr by this
    warmup_steps: int = 0  # linear warm-up before the scheduler
    grad_clip: float | None = None  # max global gradient norm (None: no clipping)
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    drop_last: bool = False
    log_every: int = 10  # steps between training-loss rows in metrics.csv
    eval_every_epochs: int = 1
    checkpoint_every_steps: int = 0  # also write last.pt every N steps (0: at epoch ends only)
    early_stopping_patience: int | None = None  # evaluations without improvement (None: off)
    monitor: str = "train_loss"  # metric deciding best.pt and early stopping
    monitor_mode: str = "min"  # min | max
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.monitor_mode not in ("min", "max"):
            problems.append(f"monitor_mode must be 'min' or 'max', got {self.monitor_mode!r}")
        for name in ("epochs", "batch_size", "log_every", "eval_every_epochs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("checkpoint_every_steps", "num_workers", "warmup_steps"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            problems.append(
                f"early_stopping_patience must be >= 1 or null, got {self.early_stopping_patience}"
            )
        if problems:
            raise ConfigError("invalid TrainConfig: " + "; ".join(problems))


def load_config(
    source: str | os.PathLike | Mapping[str, Any] | Any | None,
    cls: type[T] = TrainConfig,  # type: ignore[assignment]
    overrides: Sequence[str] | None = None,
) -> T:
    """Build dataclass ``cls`` from a YAML file, a dict, or an instance, then apply overrides.

    ``overrides`` are ``"dotted.key=value"`` strings; values are parsed as YAML scalars
    (``0.01`` -> float, ``true`` -> bool, ``null`` -> None, ``[1, 2]`` -> list).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, str | os.PathLike):
        data = _read_yaml(Path(source))
    elif dataclasses.is_dataclass(source) and not isinstance(source, type):
        data = config_to_dict(source)
    elif isinstance(source, Mapping):
        data = _deep_copy(source)
    else:
        raise ConfigError(f"cannot load a config from {type(source).__name__}")
    for override in overrides or ():
        _apply_override(data, override, cls)
    return _build(cls, data, prefix="")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (safe for YAML, JSON and ``torch.load(weights_only=True)``)."""
    return _plain(dataclasses.asdict(config))


def save_config(config: Any, path: str | os.PathLike) -> None:
    from beyondvis.utils import atomic_write

    with atomic_write(path, "w") as handle:
        yaml.safe_dump(config_to_dict(config), handle, sort_keys=False)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_copy(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _apply_override(data: dict[str, Any], override: str, cls: type) -> None:
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like key=value (e.g. train.lr=0.01)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    # Walk the dataclass types too, so a typo in an override names the bad part.
    target_cls: Any = cls
    node = data
    for depth, part in enumerate(parts):
        hints = _field_types(target_cls, ".".join(parts[:depth]))
        if part not in hints:
            _raise_unknown(".".join(parts[: depth + 1]), part, hints, target_cls)
        if depth == len(parts) - 1:
            node[part] = value
            return
        target_cls = _dataclass_in(hints[part])
        if target_cls is None:
            raise ConfigError(
                f"override {override!r}: {'.'.join(parts[: depth + 1])} is not a nested section"
            )
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else config_to_dict(child)
            node[part] = child
        node = child


def _field_types(cls: type, prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _raise_unknown(full_key: str, part: str, known: Mapping[str, Any], cls: type) -> None:
    close = difflib.get_close_matches(part, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown config key {full_key!r} for {cls.__name__}{hint} "
        f"(known keys: {', '.join(sorted(known))})"
    )


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``Cfg`` or ``Cfg | None``), else None."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    for arg in _union_args(tp):
        if dataclasses.is_dataclass(arg) and isinstance(arg, type):
            return arg
    return None


def _union_args(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return ()


def _build(cls: type[T], data: Any, prefix: str) -> T:
    where = prefix or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = _field_types(cls, prefix)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in hints:
            _raise_unknown(full, key, hints, cls)
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:  # e.g. a required field without a default is missing
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert only lossless cases (int -> float)."""
    if tp is Any or tp is object:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        return _build(tp, value, key)  # raises "<key> must be a mapping" for anything else
    args = _union_args(tp)
    if args:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item_args = typing.get_args(tp)
        if item_args and item_args[-1] is not Ellipsis and origin is not tuple:
            value = [_coerce(v, item_args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(value) if (origin is tuple or tp is tuple) else list(value)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if tp is Path:
        if isinstance(value, str | os.PathLike):
            return Path(value)
        raise ConfigError(f"{key} must be a path, got {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key} must be one of {typing.get_args(tp)}, got {value!r}")
    return value
