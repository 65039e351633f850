"""``beyondvis [CMD [SUB]] --help`` through the real console script, for every command.

The commands are discovered from the parser, so a new command or sub-command is checked
without touching this file. Each run must exit 0, import none of the heavy libraries (help is
instant only while the parsers are built from the standard library) and print, for every
option, help text that shows its default. Timings are in benchmarks/cli_help.py, not here: a
timed test flakes on a loaded machine, an import list does not.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from beyondvis.cli.help import HelpFormatter, default_text, plain
from beyondvis.cli.main import build_parser

HEAVY = ("torch", "torchvision", "timm", "faiss", "onnxruntime")
# actions that take no value: a default would say nothing (False for a store_true flag)
NO_VALUE = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._AppendConstAction,
    argparse._CountAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._SubParsersAction,
)


def _walk(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """(words, parser, one-line help in the parent's listing) of the parser and its sub-parsers."""
    yield words, parser, None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listing = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                for sub_words, sub_parser, line in _walk(child, (*words, name)):
                    yield (
                        sub_words,
                        sub_parser,
                        line if sub_words != (*words, name) else listing.get(name),
                    )


PARSERS = {words: (parser, line) for words, parser, line in _walk(build_parser())}


def _console_script() -> Path | None:
    """The ``beyondvis`` entry point installed next to this interpreter."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        path = Path(folder) / "beyondvis"
        if path.is_file():
            return path
    found = shutil.which("beyondvis")
    return Path(found) if found else None


def _squash(text: str) -> str:
    # argparse wraps to the terminal width and breaks after hyphens: compare without whitespace
    return re.sub(r"\s+", "", text)


def test_every_level_is_discovered():
    # the walk itself must see sub-commands, or the tests below would check almost nothing
    assert () in PARSERS and ("cook",) in PARSERS
    assert any(len(words) == 2 for words in PARSERS), sorted(PARSERS)


@pytest.mark.parametrize("words", sorted(PARSERS), ids=lambda w: " ".join(w) or "beyondvis")
def test_help_of_the_console_script(words, tmp_path):
    script = _console_script()
    if script is None:
        pytest.skip("the beyondvis console script is not installed next to this Python")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "COLUMNS": "100"}
    proc = subprocess.run(
        [str(script), *words, "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # from any folder, not only the repository root
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "beyondvis.cli.main" in imported, "no import-time report: cannot tell what was loaded"
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert not heavy, f"`beyondvis {' '.join(words)} --help` imports {heavy[:8]}"

    out = _squash(proc.stdout)
    parser, _ = PARSERS[words]
    assert _squash(f"usage: {parser.prog}") in out
    formatter = HelpFormatter(parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{parser.prog} {name} has no help text"
        text = formatter._expand_help(action)
        assert _squash(text) in out, f"{parser.prog} {name}: help missing from the output"
        if not isinstance(action, NO_VALUE) and default_text(action.default) is not None:
            assert "default" in text.lower(), f"{parser.prog} {name} does not show its default"
    assert "``" not in proc.stdout, "reStructuredText markup in the help"


@pytest.mark.parametrize("words", sorted(w for w in PARSERS if w), ids=" ".join)
def test_every_command_says_what_it_does(words):
    parser, line = PARSERS[words]
    assert line and line.strip(), f"{parser.prog} has no one-line help in its parent's listing"
    assert parser.description and parser.description.strip(), f"{parser.prog}: no description"


def _format(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = HelpFormatter
    return " ".join(parser.format_help().split())


def test_formatter_shows_defaults_once():
    p = argparse.ArgumentParser(prog="x", description="d")
    p.add_argument("--top", type=int, default=5, help="results to show")
    p.add_argument("--size", type=int, default=3, help="size (default: the model's own)")
    p.add_argument("--pct", type=float, default=0.5, help="share in %% of all")
    p.add_argument("--runs", nargs="+", default=["a", "b"], help="runs")
    p.add_argument("--fast", action="store_true", help="go fast")
    p.add_argument("--name", help="a name")
    p.add_argument("--empty", action="append", default=[], help="repeatable")
    p.add_argument("photo", help="a photo")
    out = _format(p)
    assert "results to show (default: 5)" in out
    assert "size (default: the model's own)" in out and "(default: 3)" not in out
    assert "share in % of all (default: 0.5)" in out
    assert "runs (default: a b)" in out
    assert "go fast" in out and "(default: False)" not in out
    assert "(default: None)" not in out and "repeatable (default" not in out
    assert "a photo (default" not in out


def test_formatter_renders_docstrings_plain_and_keeps_paragraphs():
    doc = """``beyondvis demo``: the main job.

    First :func:`cook` runs on the shipped photo,
    then the backbone check.

    - a bullet line
    """
    p = argparse.ArgumentParser(prog="x", description=doc, formatter_class=HelpFormatter)
    out = p.format_help()
    assert "``" not in out and ":func:" not in out
    assert "beyondvis demo: the main job.\n\nFirst cook runs on the shipped photo, then" in out
    assert "\n- a bullet line" in out
    assert plain("run ``a`` and :mod:`~b.c`") == "run a and b.c"
