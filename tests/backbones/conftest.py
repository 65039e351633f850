"""Shared fixtures: the real EfficientNet-Lite0 (loaded once) and scikit-image's sample photos."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def skimage_data() -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    return Path(skimage_data.__file__).parent


@pytest.fixture(scope="session")
def lite0():
    from beyondvis.backbones import create_backbone

    return create_backbone("efficientnet_lite0")
