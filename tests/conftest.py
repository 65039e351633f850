"""Shared fixtures. Real-data tests find ``../shared/data`` through ``$BEYONDVIS_DATA``."""

from __future__ import annotations

from pathlib import Path

import pytest

from beyondvis.utils import shared_data_root


@pytest.fixture
def shared_data():
    """Return a function ``(subdir) -> Path`` that skips the test when the real data is absent."""

    def get(subdir: str) -> Path:
        root = shared_data_root(subdir)
        if root is None:
            pytest.skip(f"real data {subdir!r} not found: set BEYONDVIS_DATA to ../shared/data")
        return root

    return get
