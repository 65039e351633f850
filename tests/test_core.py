"""Registry, device choice, atomic writes and the CLI entry point."""

from __future__ import annotations

import json
import os

import pytest
import torch

from beyondvis.cli.main import build_parser, main
from beyondvis.device import resolve_device
from beyondvis.registry import Registry
from beyondvis.utils import atomic_write, atomic_write_json


def test_registry_register_create_and_errors():
    reg: Registry = Registry("widget")

    @reg.register("double")
    def make(x):
        return 2 * x

    assert reg.create("double", 4) == 8 and reg.names() == ["double"] and "double" in reg
    with pytest.raises(KeyError, match="unknown widget 'triple'; known: double"):
        reg.get("triple")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("double")(make)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else resolve_device().type
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("toaster")


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path):
    target = tmp_path / "deep" / "index.json"
    atomic_write_json(target, {"v": 1})
    assert json.loads(target.read_text()) == {"v": 1}

    with pytest.raises(RuntimeError), atomic_write(target, "w") as handle:
        handle.write('{"v": 2, "half')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}  # old content intact
    assert [p.name for p in target.parent.iterdir()] == ["index.json"]  # no temp file left


def test_cli_help_lists_commands(capsys):
    parser = build_parser()
    help_text = parser.format_help()
    assert "COMMAND" in help_text
    assert main([]) == 2  # no command: prints help and exits non-zero
    assert "usage: beyondvis" in capsys.readouterr().out


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "beyondvis" in capsys.readouterr().out


def test_shared_data_root(monkeypatch, tmp_path):
    from beyondvis.utils import shared_data_root

    monkeypatch.delenv("BEYONDVIS_DATA", raising=False)
    assert shared_data_root() is None
    monkeypatch.setenv("BEYONDVIS_DATA", os.fspath(tmp_path))
    assert shared_data_root() == tmp_path
    assert shared_data_root("missing") is None
