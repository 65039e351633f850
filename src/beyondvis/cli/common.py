"""Helpers shared by the CLI modules."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beyondvis.validation import device_choice
from beyondvis.validation import positive_int as positive_int


class CLIError(Exception):
    """A user-facing error: printed as ``error: ...`` without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=device_choice,
        default="auto",
        help="where to run: auto (CUDA when present, else CPU), cpu, cuda, cuda:N "
        "(default: %(default)s)",
    )


def device_name(args: argparse.Namespace) -> str:
    """The device ``--device`` names, resolved (``auto`` -> ``cuda`` when present, else ``cpu``)."""
    from beyondvis import resolve_device

    return str(resolve_device(args.device))


def print_json(obj: Any, fmt: str | None = None) -> None:
    """Print ``obj`` as JSON. ``fmt`` (``"beyondvis.<command>/<version>"``, docs/formats.md)
    becomes the output's first key ``"format"``; a list is wrapped as ``{"format", "rows"}``;
    an object that names its own ``format`` (an index manifest) keeps it."""
    if fmt is not None:
        if not isinstance(obj, dict):
            obj = {"format": fmt, "rows": obj}
        elif "format" not in obj:
            obj = {"format": fmt, **obj}
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


# ------------------------------------------------------------------- configs (every system)
SET_HELP = (
    "override one config field, dotted key = YAML value, e.g. --set train.lr=3e-4 "
    "(repeatable; applied after --config)"
)


def add_config_arguments(
    parser: argparse.ArgumentParser,
    system: str,
    *,
    required: bool = False,
    default: str | None = None,
    trailing: bool = False,
    what: str = "",
) -> None:
    """``--config NAME|PATH`` and ``--set KEY=VALUE``: the one way every command takes a config.

    ``system`` is the packaged folder names are looked up in (``sets`` finds ``miml`` as
    ``sets/miml``). ``trailing=True`` also accepts overrides as bare trailing words
    (``sets train --config sets/miml model.name=lstm``), the same KEY=VALUE syntax.
    """
    example = {"sets": "sets/miml", "segmentation": "segmentation/cvppp"}.get(system)
    help_text = (
        f"config: a YAML path or a packaged name such as {example or system + '/NAME'} "
        f"(`beyondvis configs {system}` lists them){what}"
    )
    parser.add_argument("--config", required=required, default=default, help=help_text)
    parser.add_argument(
        "--set",
        dest="set_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=SET_HELP,
    )
    if trailing:
        parser.add_argument(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="more overrides, as with --set (e.g. model.name=lstm train.lr=1e-3)",
        )


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The command line's overrides in order: trailing words, then every ``--set``."""
    return [
        *(getattr(args, "overrides", None) or []),
        *(getattr(args, "set_overrides", None) or []),
    ]


def load_cli_config(
    args: argparse.Namespace,
    cls: type | None = None,
    system: str | None = None,
    *,
    loader: Callable[[Any, list[str]], Any] | None = None,
    extra: list[str] | None = None,
) -> Any:
    """Build the typed config of ``args.config`` + overrides; a bad one is a one-line error.

    ``loader(source, overrides)`` is the system's own loader (which may check more, such as a
    model name against its registry); else ``engine.load_config(source, cls)``. ``extra``
    overrides (from convenience flags) come before the user's ``--set``, so ``--set`` wins.
    """
    from beyondvis.engine import ConfigError, load_config, resolve_config

    overrides = [*(extra or []), *config_overrides(args)]
    source = given = getattr(args, "config", None)
    try:
        if source is not None:
            source = resolve_config(source, system=system)
        if loader is not None:
            return loader(source, overrides)
        return load_config(source, cls, overrides)
    except (ConfigError, ValueError, TypeError) as exc:
        raise CLIError(_config_message(given, exc)) from None


def _config_message(source: Any, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if source is None or str(source) in text:
        return text
    return f"config {source}: {text}"


# ------------------------------------------------------------------------------- resume
def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-resume`` / ``--force`` / ``--new-run``: what to do with an earlier run's folder."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--no-resume",
        action="store_true",
        help="start afresh in the run folder, replacing its earlier checkpoints and metrics",
    )
    group.add_argument(
        "--force",
        action="store_true",
        help="resume even though the settings differ from the stored run's (the new values "
        "apply from the resumed step on)",
    )
    group.add_argument(
        "--new-run",
        action="store_true",
        help="leave an earlier run alone and train into the next free folder "
        "(OUT_DIR-2, OUT_DIR-3, ...)",
    )


def resume_mode(args: argparse.Namespace) -> bool | str:
    """The ``resume`` argument of ``Trainer.fit`` the flags ask for."""
    if getattr(args, "no_resume", False) or getattr(args, "new_run", False):
        return False
    return "force" if getattr(args, "force", False) else "auto"


def new_run_dir(out_dir: str | Path) -> Path:
    """``out_dir`` when it holds no run yet, else the first free ``out_dir-N`` (N >= 2)."""
    base = Path(out_dir)
    if not _holds_run(base):
        return base
    n = 2
    while _holds_run(base.with_name(f"{base.name}-{n}")):
        n += 1
    return base.with_name(f"{base.name}-{n}")


def _holds_run(folder: Path) -> bool:
    return folder.exists() and any(folder.iterdir())


# ------------------------------------------------------------------------------ threads
def add_threads_argument(
    parser: argparse.ArgumentParser, default: int | None = None, what: str = ""
) -> None:
    """``--threads N``: CPU threads of PyTorch (and FAISS / ONNX Runtime where used)."""
    default_text = "the libraries' own choice, one per core" if default is None else str(default)
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=default,
        help=f"CPU threads for PyTorch{what} (default: {default_text}; use 1-2 on a shared "
        "machine, where oversubscribed thread pools slow everything down)",
    )


def apply_threads(args: argparse.Namespace | int | None, faiss: bool = False) -> int | None:
    """Set the thread count ``--threads`` asked for (torch; FAISS too when ``faiss``)."""
    threads = getattr(args, "threads", None) if isinstance(args, argparse.Namespace) else args
    if not threads:
        return None
    import torch

    torch.set_num_threads(int(threads))
    if faiss:
        import faiss as faiss_lib

        faiss_lib.omp_set_num_threads(int(threads))
    return int(threads)


RESUME_CHOICES = (
    "--force resumes with the new values, --new-run trains into a new folder, "
    "--no-resume replaces the run"
)


def resume_refusal(exc: Exception) -> CLIError:
    """A :class:`~beyondvis.engine.ResumeConfigError` as a one-line error with the way out."""
    return CLIError(f"{exc}; {RESUME_CHOICES}")


def prepare_run(args: argparse.Namespace, config: Any, train_key: str = "train") -> Any:
    """Apply ``--new-run`` and refuse a changed resume *before* any data work starts.

    ``config.<train_key>`` is the run's TrainConfig. With ``--new-run`` its ``out_dir`` moves
    to the next free folder; with a plain resume, a ``last.pt`` there whose stored settings
    differ from ``config`` is refused now (the Trainer checks again, with the data-derived
    extras such as the label vocabulary, but only after features are cached).
    """
    train = getattr(config, train_key)
    from beyondvis.validation import check_writable

    check_writable(train.out_dir, "run folder")  # not after the features are cached
    if getattr(args, "new_run", False):
        train.out_dir = str(new_run_dir(train.out_dir))
        return config
    if resume_mode(args) != "auto":
        return config
    last = Path(train.out_dir) / "last.pt"
    if not last.is_file():
        return config
    from beyondvis.engine import (
        CheckpointError,
        ResumeConfigError,
        config_to_dict,
        format_diff,
        load_checkpoint,
        resume_diff,
    )

    try:
        ckpt = load_checkpoint(last, map_location="cpu")
    except CheckpointError as exc:
        raise CLIError(f"cannot resume from {last}: {exc}; --no-resume starts afresh") from None
    diff = resume_diff(ckpt, train, {"config": config_to_dict(config)})
    if diff:
        raise resume_refusal(
            ResumeConfigError(
                f"{train.out_dir} holds a run with other settings: {format_diff(diff)}", diff
            )
        )
    return config


def train_with_resume(
    args: argparse.Namespace,
    config: Any,
    prepare: Callable[[Any], Any],
    train: Callable[..., Any],
) -> tuple[Any, Any, Any]:
    """``train`` a system the way every ``... train`` command does: ``--new-run`` and a changed
    resume settled first (:func:`prepare_run`), then the system's ``prepare(config)`` (its data
    errors are one-line BeyondvisErrors) and ``train(config, prepared, resume=...)`` with the
    resume the flags ask for. Returns ``(config, prepared, result)``."""
    from beyondvis.engine import ResumeConfigError

    config = prepare_run(args, config)  # before any caching
    prepared = prepare(config)
    try:
        result = train(config, prepared, resume=resume_mode(args))
    except ResumeConfigError as exc:
        raise resume_refusal(exc) from None
    return config, prepared, result


def run_outcome(result: Any) -> dict[str, Any]:
    """The checkpoints and progress of a ``TrainResult``, as every train command prints them."""
    return {
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        "epochs": result.epochs,
        "steps": result.steps,
    }
