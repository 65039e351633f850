"""One writer per folder: a second process is refused at once, a killed one leaves no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from beyondvis.utils.locks import LOCK_NAME, FolderLockedError, folder_lock

HOLD = """
import sys, time
from beyondvis.utils.locks import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(folder):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_with_the_owner_named(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(FolderLockedError, match=f"process {proc.pid}"):
            with folder_lock(tmp_path / "run"):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_a_sigkilled_writer_leaves_no_lock_behind(tmp_path):
    proc = _holder(tmp_path / "run")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run" / LOCK_NAME).exists()  # the file stays, its lock does not
    with folder_lock(tmp_path / "run"):
        pass
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_sequential_writers_and_other_folders_do_not_block(tmp_path):
    with folder_lock(tmp_path / "a"):
        with folder_lock(tmp_path / "b"):
            pass
    with folder_lock(tmp_path / "a") as lock:  # released: the next writer takes it
        assert lock.read_text(encoding="utf-8").startswith(f'{{"pid": {os.getpid()}')


def test_the_cli_prints_a_library_error_as_one_line(tmp_path, capsys):
    from beyondvis.cli.main import main

    bad = tmp_path / "layer1.json"
    bad.write_text("{}", encoding="utf-8")  # not a JSON array
    code = main(["recipes", "prepare", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "expected a JSON array" in err
