"""The layers of docs/architecture.md, checked on the source: which package may import which.

Every ``import``/``from ... import`` in ``src/beyondvis`` (module level and inside functions,
relative ones resolved) is mapped to the package it names; a package importing one that its
layer may not use fails here with the file and line, so the table in the docs stays true.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "beyondvis"

FOUNDATION = {"errors", "utils", "validation", "device", "registry"}
CORE = {"io", "backbones", "engine"}
# package -> the packages it may import (itself always). Same table as docs/architecture.md.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "utils": {"errors"},
    "validation": {"errors"},
    "device": {"errors", "utils"},
    "registry": {"errors", "utils"},
    "io": FOUNDATION,
    "backbones": FOUNDATION | {"io"},
    "engine": FOUNDATION | {"io", "backbones"},
    "data": FOUNDATION | {"io"},
    "retrieval": FOUNDATION | CORE | {"data"},
    "sets": FOUNDATION | CORE | {"data"},
    "segmentation": FOUNDATION | CORE | {"data"},
    "recipes.pipeline": FOUNDATION | CORE | {"data"},
    "recipes.retrieval": FOUNDATION | CORE | {"data", "recipes.pipeline"},
    # ch. 9 predicts the ingredients with a ch. 5 set predictor
    "recipes.generation": FOUNDATION
    | CORE
    | {"data", "sets", "recipes.pipeline", "recipes.retrieval"},
    "recipes": {"utils", "recipes.pipeline", "recipes.retrieval", "recipes.generation"},
    "web": FOUNDATION | CORE | {"data", "retrieval", "recipes", "recipes.generation", "beyondvis"},
    "cli": None,  # type: ignore[dict-item]  # the front end may use every layer
    "beyondvis": None,  # type: ignore[dict-item]  # the top-level re-exports
}
CHAPTERS = ("pipeline", "retrieval", "generation")


def package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "beyondvis":
        return None
    if len(parts) == 1:
        return "beyondvis"
    if parts[1] == "recipes" and len(parts) > 2 and parts[2] in CHAPTERS:
        return f"recipes.{parts[2]}"
    return parts[1]


def module_name(path: Path) -> tuple[str, bool]:
    """``(dotted name, is a package)`` of a source file."""
    module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
    is_package = module.endswith(".__init__")
    return module.removesuffix(".__init__"), is_package


def imports_of(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import in ``path``, relative ones resolved."""
    module, is_package = module_name(path)
    found = []
    source = path.read_text(encoding="utf-8") if text is None else text
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def violations(path: Path, text: str | None = None) -> list[str]:
    me = package_of(module_name(path)[0])
    allowed = ALLOWED.get(me, set()) if me else set()
    if allowed is None:
        return []
    out = []
    for line, target in imports_of(path, text):
        other = package_of(target)
        if other and other != me and other not in allowed:
            out.append(f"{path.relative_to(ROOT)}:{line}: {me} imports {other} ({target})")
    return out


def test_every_package_has_a_layer():
    packages = {package_of(module_name(p)[0]) for p in SRC.rglob("*.py")}
    assert packages - set(ALLOWED) == set(), "add the new package to ALLOWED and the docs"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layers(path):
    assert violations(path) == []


def test_the_checker_sees_a_violation():
    # a library module importing the CLI inside a function, and a relative import it may use
    text = "def f():\n    from beyondvis.cli.common import CLIError\n    from ..utils import x\n"
    found = violations(SRC / "sets" / "probe.py", text)
    assert len(found) == 1 and re.search(r"probe.py:2: sets imports cli", found[0])
    assert imports_of(SRC / "sets" / "probe.py", text)[1] == (3, "beyondvis.utils")


def test_docs_list_every_package():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for package in ALLOWED:
        if package != "beyondvis":
            assert f"`{package}`" in doc, f"docs/architecture.md does not place {package}"
