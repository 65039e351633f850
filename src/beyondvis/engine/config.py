"""Training configuration: a dataclass, loadable from YAML or dicts with dotted overrides.

``load_config`` builds any (nested) dataclass, so a system can define
``ExperimentConfig(model: ModelConfig, train: TrainConfig)`` and load it from one YAML file,
then tweak it from the command line with ``train.lr=0.01``. Unknown keys are errors (a typo
silently ignored would train the wrong model for hours).

Every system loads its configs here, so they all share:

* **Names.** ``sets/miml`` is ``beyondvis/configs/sets/miml.yaml`` inside the installed package
  (:func:`resolve_config`, :func:`list_configs`); a path works too, and the repository-style
  ``configs/sets/miml.yaml`` finds the packaged copy from any working directory.
* **Inheritance.** A YAML file whose top level has ``base: OTHER`` starts from OTHER (a path
  relative to the file that names it, else a packaged name) and overrides its keys.
* **References.** A folder setting (a key ending in ``_dir``) may name other values,
  ``out_dir: runs/{model.name}/seed{train.seed}`` (``{seed}`` also finds a sibling field), so
  run folders follow the experiment.
* **Comparison.** :func:`config_diff` lists the dotted keys two configs disagree on (the
  Trainer refuses to resume a run whose settings changed).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from beyondvis.errors import BeyondvisError

T = TypeVar("T")

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")


class ConfigError(BeyondvisError, ValueError):
    """A configuration file, dict or override is invalid; the message names the key."""


class ResumeConfigError(ConfigError):
    """A run folder holds a run trained with other settings; ``diff`` lists them."""

    def __init__(self, message: str, diff: list[tuple[str, Any, Any]]) -> None:
        super().__init__(message)
        self.diff = diff


# The configs shipped inside the package (src/beyondvis/configs/<system>/<name>.yaml).
PACKAGED_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
_REFERENCE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


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
        data = _read_with_base(resolve_config(source), cls, ())
    elif dataclasses.is_dataclass(source) and not isinstance(source, type):
        data = config_to_dict(source)
    elif isinstance(source, Mapping):
        data = _deep_copy(source)
    else:
        raise ConfigError(f"cannot load a config from {type(source).__name__}")
    for override in overrides or ():
        _apply_override(data, override, cls)
    return _validate(_interpolate(_build(cls, data, prefix="")))


def _validate(config: T) -> T:
    # The one range check of every system's config (dropout, fractions, lr, sizes, finite
    # floats), by field name: beyondvis.validation.RULES.
    from beyondvis.validation import ValidationError, check_config

    try:
        return check_config(config)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from None


def resolve_config(
    source: str | os.PathLike,
    system: str | None = None,
    relative_to: str | os.PathLike | None = None,
) -> Path:
    """The YAML file that ``source`` names: a path, or a packaged config name.

    Tried in order: ``relative_to / source`` (a ``base:`` is relative to the file naming it),
    else ``source`` as a path from the working directory; then the packaged
    ``configs/<source>.yaml`` and ``configs/<system>/<source>.yaml`` (so ``sets train --config
    miml/ff_bce_c`` needs no ``sets/``); a leading ``configs/`` (the repository layout the docs
    use) is dropped for the packaged lookup. Raises :class:`ConfigError` listing near names.
    """
    raw = os.fspath(source)
    given = Path(raw).expanduser()
    local = [Path(relative_to) / given] if relative_to is not None else [given]
    for candidate in local:
        for path in (candidate, candidate.with_name(candidate.name + ".yaml")):
            if path.is_file():
                return path
    packaged = _packaged_path(raw, system)
    if packaged is not None:
        return packaged
    names = list_configs()
    stem = raw.removesuffix(".yaml").removeprefix("configs/")
    close = difflib.get_close_matches(stem, names, n=3, cutoff=0.5)
    close += [n for n in names if system and n == f"{system}/{stem}" and n not in close]
    hint = f"; packaged configs near it: {', '.join(close)}" if close else ""
    where = f" (looked in {relative_to} and the packaged configs)" if relative_to else ""
    raise ConfigError(f"config file not found: {raw}{where}{hint} (`beyondvis configs` lists them)")


def _packaged_path(raw: str, system: str | None) -> Path | None:
    if Path(raw).is_absolute():
        return None
    name = raw.replace("\\", "/").removesuffix(".yaml")
    stems = [name]
    if name.startswith("configs/"):
        stems.append(name.removeprefix("configs/"))
    root = PACKAGED_CONFIG_DIR.resolve()
    for stem in stems:
        for candidate in (stem, f"{system}/{stem}" if system else None):
            if candidate is None:
                continue
            path = (PACKAGED_CONFIG_DIR / f"{candidate}.yaml").resolve()
            # a name cannot climb out of the packaged folder (``../../etc/x``)
            if path.is_file() and root in path.parents:
                return path
    return None


def list_configs(system: str | None = None) -> list[str]:
    """Names of the packaged configs (``sets/miml``, ...), only ``system``'s when given."""
    root = PACKAGED_CONFIG_DIR / system if system else PACKAGED_CONFIG_DIR
    if not root.is_dir():
        return []
    return sorted(
        str(p.relative_to(PACKAGED_CONFIG_DIR).with_suffix("")).replace(os.sep, "/")
        for p in root.rglob("*.yaml")
    )


def config_name(path: str | os.PathLike) -> str | None:
    """The packaged name of ``path`` (``sets/miml``), or None for a file outside the package."""
    resolved = Path(path).resolve()
    root = PACKAGED_CONFIG_DIR.resolve()
    if root not in resolved.parents or resolved.suffix != ".yaml":
        return None
    return str(resolved.relative_to(root).with_suffix("")).replace(os.sep, "/")


def config_diff(
    stored: Mapping[str, Any],
    current: Mapping[str, Any],
    ignore: Sequence[str] = (),
    skip_missing: bool = False,
) -> list[tuple[str, Any, Any]]:
    """``(dotted key, stored value, current value)`` for every key the two configs disagree on.

    Keys whose last part is in ``ignore`` are skipped (settings that may change between a run
    and its resume, such as ``epochs`` or ``device``); a key present on one side only counts as
    a difference with ``<absent>`` on the other, unless ``skip_missing`` (a config written by
    an older version lacks the fields added since).
    """
    a, b = _flatten(stored), _flatten(current)
    skip = set(ignore)
    out = []
    for key in sorted(set(a) | set(b)):
        if key.rsplit(".", 1)[-1] in skip:
            continue
        left, right = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if skip_missing and (left is _ABSENT or right is _ABSENT):
            continue
        if not _same(left, right):
            out.append((key, left, right))
    return out


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)  # 1 and 1.0 (YAML) are the same setting
    return a == b


def _short(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = config_to_dict(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out  # an empty section adds no key (its keys count as absent)
    return {prefix: _plain(value)}


def format_diff(diff: Sequence[tuple[str, Any, Any]], limit: int = 6) -> str:
    """``train.lr 0.001 -> 0.0003, model.name 'ff_bce' -> 'lstm'`` (one line)."""
    parts = [f"{key} {_short(left)} -> {_short(right)}" for key, left, right in diff[:limit]]
    if len(diff) > limit:
        parts.append(f"and {len(diff) - limit} more")
    return ", ".join(parts)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (safe for YAML, JSON and ``torch.load(weights_only=True)``)."""
    return _plain(dataclasses.asdict(config))


def save_config(config: Any, path: str | os.PathLike) -> None:
    from beyondvis.utils import atomic_write

    with atomic_write(path, "w") as handle:
        yaml.safe_dump(config_to_dict(config), handle, sort_keys=False)


def _read_with_base(path: Path, cls: type, seen: tuple[Path, ...]) -> dict[str, Any]:
    """``path``'s mapping over the one its ``base:`` names (when ``cls`` has no ``base`` field)."""
    data = _read_yaml(path)
    if "base" not in data or "base" in {f.name for f in dataclasses.fields(cls)}:
        return data
    ref = data.pop("base")
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"{path}: base must name a config file, got {ref!r}")
    system = _system_of(path)
    base_path = resolve_config(ref, system=system, relative_to=path.parent)
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: base {ref!r} refers back to itself")
    merged = _read_with_base(base_path, cls, (*seen, path.resolve()))
    return _merge(merged, data)


def _system_of(path: Path) -> str | None:
    name = config_name(path)
    return name.split("/", 1)[0] if name and "/" in name else None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _interpolate(config: T) -> T:
    """Replace ``{dotted.key}`` references in string fields by the values they name."""
    flat = _flatten(config)
    if not any(isinstance(v, str) and "{" in v for v in flat.values()):
        return config
    replacements: dict[str, str] = {}
    for key, value in flat.items():
        # Only folder settings (``out_dir``, ``cache_dir``, ...): other strings may hold braces
        # of their own (templates, prompts).
        if not key.endswith("_dir") or not isinstance(value, str) or not _REFERENCE.search(value):
            continue
        parent = key.rsplit(".", 1)[0] if "." in key else ""

        def lookup(match: re.Match[str], key: str = key, parent: str = parent) -> str:
            ref = match.group(1)
            for candidate in (ref, f"{parent}.{ref}" if parent else ref):
                if candidate in flat and candidate != key:
                    found = flat[candidate]
                    if isinstance(found, str) and _REFERENCE.search(found):
                        raise ConfigError(f"{key}: {{{ref}}} names another reference ({found!r})")
                    return str(found)
            raise ConfigError(f"{key}: {{{ref}}} names no config key (value {flat[key]!r})")

        replacements[key] = _REFERENCE.sub(lookup, value)
    for key, value in replacements.items():
        _set_dotted(config, key, value)
    return config


def _set_dotted(config: Any, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    if isinstance(node, dict):
        node[last] = value
    else:
        object.__setattr__(node, last, value)


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
