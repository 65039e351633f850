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
