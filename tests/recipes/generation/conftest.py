"""The generation tests use tiny models: one thread is faster than fighting for shared cores."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test of this folder runs with tests/conftest.py's one-thread fixture."""
    yield
