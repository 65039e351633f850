"""Entry point of the ``beyondvis`` command.

Sub-commands are discovered: every module in :mod:`beyondvis.cli` that defines
``register(subparsers)`` adds its own parser(s) and sets ``func`` on them. A new system adds a
module here and nothing else has to change.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence

import beyondvis
from beyondvis.cli import help as cli_help
from beyondvis.cli.common import CLIError
from beyondvis.errors import BeyondvisError

SKIP_MODULES = {"main", "common", "help"}
QUIET_HELP = "no progress bars (they are also off when stderr is not a terminal)"


def _command_module(argv: Sequence[str]) -> str | None:
    """The CLI module of the sub-command named in ``argv`` (its first non-option word), if any.

    ``beyondvis cook photo.jpg`` then registers only ``cook``: importing every command module
    would pull in what the others need at import time (``classify`` imports torch), and
    ``cook`` must start in well under 2 s.
    """
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            if word in SKIP_MODULES or word.startswith("_") or not word.isidentifier():
                return None
            return word if importlib.util.find_spec(f"beyondvis.cli.{word}") else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beyondvis",
        formatter_class=cli_help.HelpFormatter,
        description="Image understanding through language: instance search, image-to-set "
        "prediction, instance segmentation and recipes from food photos.",
    )
    parser.add_argument("--version", action="version", version=f"beyondvis {beyondvis.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = importlib.import_module("beyondvis.cli")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name in SKIP_MODULES or info.name.startswith("_"):
            continue
        if only is not None and info.name != only:
            continue
        module = importlib.import_module(f"beyondvis.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    # one formatter for every parser (defaults shown, docstring markup plain), set here so
    # that a command module needs nothing but help= text
    for sub in cli_help.apply(parser)[1:]:
        _add_quiet(sub)
    return parser


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` after the command too (``beyondvis sets train ... --quiet``).

    SUPPRESS: a sub-command's own default must not overwrite ``beyondvis -q CMD``'s True.
    """
    taken = parser._option_string_actions
    if "--quiet" in taken:
        return
    flags = ["--quiet"] if "-q" in taken else ["-q", "--quiet"]
    parser.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)


def _progress_off(quiet: bool) -> bool:
    """Turn tqdm's bars off for this job (and the processes it starts) when asked or when
    stderr is not a terminal (a log file would fill with carriage-return frames); returns
    whether it set the switch, so that :func:`main` can take it back. ``TQDM_DISABLE`` is
    tqdm's own switch for every bar that does not pass ``disable=`` itself; a user's own
    setting is left alone."""
    if "TQDM_DISABLE" in os.environ or not (quiet or not sys.stderr.isatty()):
        return False
    os.environ["TQDM_DISABLE"] = "1"
    return True


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_module(words))
    args = parser.parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    set_switch = _progress_off(args.quiet)
    try:
        result = args.func(args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BeyondvisError as exc:  # a library error a user can fix: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if set_switch:  # main() called in-process (tests, notebooks) leaves the env as it was
            os.environ.pop("TQDM_DISABLE", None)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
