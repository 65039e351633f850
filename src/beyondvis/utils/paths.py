"""Where the real datasets live: ``$BEYONDVIS_DATA`` (e.g. ``../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "BEYONDVIS_DATA"


def shared_data_root(subdir: str | None = None) -> Path | None:
    """Return ``$BEYONDVIS_DATA[/subdir]`` if it is set and exists, else ``None``.

    Tests and benchmarks use this to skip with a reason when the real data is not there.
    """
    value = os.environ.get(DATA_ENV)
    if not value:
        return None
    root = Path(value).expanduser()
    if subdir:
        root = root / subdir
    return root if root.exists() else None


def is_plain_file_name(name: str) -> bool:
    """A file name a dataset's listing may give: no path separator, no drive colon or NUL, and
    not starting with a dot (so not ``.``/``..`` either). ``../../x`` and ``/etc/passwd`` from
    a listing must not reach outside the dataset's image folder."""
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\:\0")
