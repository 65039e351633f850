"""One reader for the project's versioned JSON files (manifests, metadata, vocabularies).

Every such file names what it is (a ``kind``/``format`` string) and the version of its layout;
the reader refuses a foreign file, a malformed one and one written by a newer beyondvis with
one-line :class:`~beyondvis.errors.FormatError` messages that name the file and say what to do.
Each caller passes its own error class (a ``FormatError`` subclass such as
``FeatureCacheError``), so existing ``except`` clauses keep working; files without one get
:class:`VersionedFileError`, which is also a ``ValueError`` as their loaders raised before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from beyondvis.errors import FormatError


class VersionedFileError(FormatError, ValueError):
    """A versioned project file (vocabulary, categories, bundle info) is foreign or of another
    format version."""


def check_format_version(
    version: Any,
    supported: int,
    where: str | os.PathLike,
    error: type[FormatError] = VersionedFileError,
    *,
    what: str = "file",
    exact: bool = False,
    fix: str = "upgrade beyondvis",
) -> int:
    """``version`` if this beyondvis reads it, else ``error``.

    Versions 1..``supported`` are read (older layouts stay readable); ``exact=True`` reads only
    ``supported`` (a layout whose old versions cannot be read; ``fix`` says what to do then).
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise error(f"{where} has an invalid {what} format version {version!r}")
    if version > supported:
        raise error(
            f"{where} has {what} format version {version}, but this beyondvis reads versions up "
            f"to {supported}; {fix}"
        )
    if exact and version != supported:
        raise error(
            f"{where} has {what} format version {version}, this beyondvis reads version "
            f"{supported}; {fix}"
        )
    return version


def read_versioned_json(
    path: str | os.PathLike,
    kind: str | None,
    supported: int,
    error: type[FormatError] = VersionedFileError,
    *,
    what: str = "file",
    kind_key: str = "kind",
    version_key: str = "format_version",
    exact: bool = False,
    fix: str = "upgrade beyondvis",
) -> dict[str, Any]:
    """Read a JSON object written by the project and check its kind and format version.

    ``kind=None`` skips the kind check (files from before kinds were written).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise  # as open() does: callers with a better hint (run X first) check before
    except json.JSONDecodeError as exc:
        raise error(f"{path}: malformed JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{path} is not a beyondvis {what} (not a JSON object)")
    if kind is not None and data.get(kind_key) != kind:
        raise error(f"{path} does not describe a beyondvis {what} ({kind_key} is not {kind!r})")
    check_format_version(
        data.get(version_key), supported, path, error, what=what, exact=exact, fix=fix
    )
    return data


__all__ = ["VersionedFileError", "check_format_version", "read_versioned_json"]
