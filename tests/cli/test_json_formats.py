"""Every JSON document a command prints names its format, and docs/formats.md lists it."""

from __future__ import annotations

import ast
from pathlib import Path

import beyondvis

CLI = Path(beyondvis.__file__).parent / "cli"
DOC = Path(__file__).resolve().parents[2] / "docs" / "formats.md"


def _print_json_calls():
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print_json":
                yield path.name, node


def test_every_print_json_names_a_documented_format():
    doc = DOC.read_text(encoding="utf-8")
    calls = list(_print_json_calls())
    assert len(calls) > 20  # the scan finds the CLI's outputs
    for name, call in calls:
        fmt = [k.value for k in call.keywords if k.arg == "fmt"]
        if not fmt:  # an object literal that carries its own "format" key
            obj = call.args[0]
            keys = [k.value for k in getattr(obj, "keys", []) if isinstance(k, ast.Constant)]
            assert "format" in keys, f"{name}:{call.lineno}: print_json without fmt="
            continue
        assert isinstance(fmt[0], ast.Constant), f"{name}:{call.lineno}: fmt must be a literal"
        assert f"`{fmt[0].value}`" in doc, f"{name}:{call.lineno}: {fmt[0].value} not in formats.md"


def test_print_json_puts_the_format_first_and_wraps_lists(capsys):
    import json

    from beyondvis.cli.common import print_json

    print_json({"a": 1}, fmt="beyondvis.x/1")
    print_json([1, 2], fmt="beyondvis.y/1")
    print_json({"format": "own", "b": 2}, fmt="beyondvis.z/1")
    out = capsys.readouterr().out
    docs = [json.loads(part) for part in out.replace("}\n{", "}\n\x00{").split("\x00")]
    assert list(docs[0]) == ["format", "a"] and docs[0]["format"] == "beyondvis.x/1"
    assert docs[1] == {"format": "beyondvis.y/1", "rows": [1, 2]}
    assert docs[2]["format"] == "own"
