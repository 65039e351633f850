"""Every bar of the project obeys -q (TQDM_DISABLE), the terminal test and its own flag."""

from __future__ import annotations

import io

import pytest

from beyondvis.utils.progress import show_progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "requested", "main", "tty", "expected"),
    [
        (None, True, True, True, True),
        ("1", True, True, True, False),  # beyondvis -q
        ("0", True, True, True, True),
        (None, False, True, True, False),
        (None, True, False, True, False),  # not rank 0
        (None, True, True, False, False),  # piped to a file
    ],
)
def test_show_progress(monkeypatch, env, requested, main, tty, expected):
    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    monkeypatch.setattr("sys.stderr", _Tty() if tty else io.StringIO())
    assert show_progress(requested, main) is expected
