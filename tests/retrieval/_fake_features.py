"""A cheap, deterministic stand-in for the CNN: colour + gradient statistics per 8x8 cell.

Index plumbing tests (persistence, resume, merge, corrupt files) use it so they do not pay for a
backbone pass per image; the end-to-end test uses the real backbone.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image


class PatchFeatures:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay

    def __call__(self, image: Image.Image) -> np.ndarray:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        w, h = max(2, image.width // 8), max(2, image.height // 8)
        x = np.asarray(image.resize((w, h), Image.BILINEAR), np.float32) / 255.0
        gy, gx = np.gradient(x.mean(axis=2))
        return np.concatenate([x, gx[..., None], gy[..., None], (x**2)], axis=2)
