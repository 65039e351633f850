"""Small shared utilities (atomic file writes, data paths, lazy package exports)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from beyondvis.utils.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from beyondvis.utils.paths import shared_data_root
from beyondvis.utils.tables import markdown_table


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for a package whose public names load on use.

    ``exports`` maps a public name to ``"module"`` or ``"module:attribute"`` (a relative
    module such as ``".index"`` is resolved against ``package``). Packages use it so that
    ``import beyondvis`` and ``beyondvis --help`` do not import torch until a name that needs
    it is touched; the value is cached in ``namespace`` (the package's ``globals()``).
    """

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(module, package), attribute or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__


__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "lazy_exports",
    "markdown_table",
    "shared_data_root",
]
