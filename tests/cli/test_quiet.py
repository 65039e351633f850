"""``--quiet`` and a non-terminal stderr turn progress bars off, for the job and its children."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys

import pytest

from beyondvis.cli import main as cli_main

CHILD_BAR = "from tqdm import tqdm; print(tqdm(range(2)).disable)"


class _Stderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def _leaf_without_required_args(parser: argparse.ArgumentParser, words=()):
    """A real command that runs with no arguments (its handler is replaced below)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs and words and not any(a.required for a in parser._actions):
        return words, parser
    for action in subs:
        for name, child in action.choices.items():
            found = _leaf_without_required_args(child, (*words, name))
            if found:
                return found
    return None


@pytest.fixture()
def probe(monkeypatch):
    """(command words, seen): the command's handler records TQDM_DISABLE and a child's bar."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    seen: dict = {}

    def handler(args):
        seen["env"] = os.environ.get("TQDM_DISABLE")
        child = subprocess.run(
            [sys.executable, "-c", CHILD_BAR], capture_output=True, text=True, check=True
        )
        seen["child_bar_disabled"] = child.stdout.strip()
        return 0

    real = cli_main.build_parser
    words, _ = _leaf_without_required_args(real())

    def build_parser(only=None):
        parser = real(only)
        p = parser
        for word in words:
            sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
            p = sub.choices[word]
        p.set_defaults(func=handler)
        return parser

    monkeypatch.setattr(cli_main, "build_parser", build_parser)
    return list(words), seen


@pytest.mark.parametrize(
    ("before", "after", "tty", "disabled"),
    [
        ([], [], True, False),  # a terminal, no flag: bars on
        ([], ["--quiet"], True, True),  # flag after the command
        (["-q"], [], True, True),  # global flag before it
        ([], [], False, True),  # stderr is a file or a pipe
    ],
)
def test_progress_switch(probe, monkeypatch, before, after, tty, disabled):
    words, seen = probe
    monkeypatch.setattr(cli_main.sys, "stderr", _Stderr(tty))
    assert cli_main.main([*before, *words, *after]) == 0
    assert seen["env"] == ("1" if disabled else None)
    assert seen["child_bar_disabled"] == str(disabled)
    assert "TQDM_DISABLE" not in os.environ  # main() in-process leaves the environment as found


def test_users_own_setting_is_kept(probe, monkeypatch):
    words, seen = probe
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setattr(cli_main.sys, "stderr", _Stderr(True))
    assert cli_main.main(words) == 0
    assert seen["env"] == "1" and os.environ["TQDM_DISABLE"] == "1"
