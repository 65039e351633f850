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


@pytest.fixture
def one_torch_thread():
    """One PyTorch thread for the test, restored after: tiny models gain nothing from more, and
    on a shared 2-core machine extra threads only add contention. Files opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
