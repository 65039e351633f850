"""Photos and constants shared by the web tests (a module of its own: two conftest modules
would collide under one name)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

COLLECTION = 10


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_collection(folder: Path) -> list[Path]:
    """Views of the shipped food photo (crops, a mirror, a darker copy) and unrelated colour
    fields: a query cut from the dish has true matches to find and boxes to draw."""

    folder.mkdir(parents=True, exist_ok=True)
    food = food_photo()
    food.thumbnail((256, 256))
    w, h = food.size
    views = [
        food,
        food.crop((0, 0, int(w * 0.7), int(h * 0.7))),
        food.crop((int(w * 0.3), int(h * 0.25), w, h)),
        ImageOps.mirror(food),
        food.point(lambda v: int(v * 0.75)),
    ]
    rng = np.random.default_rng(0)
    while len(views) < COLLECTION:
        base = rng.integers(30, 225, 3)
        small = np.clip(base + rng.integers(-60, 60, (6, 8, 3)), 0, 255).astype(np.uint8)
        views.append(Image.fromarray(small).resize((200, 150), Image.BICUBIC))
    paths = []
    for i, im in enumerate(views):
        p = folder / f"photo_{i:02d}.jpg"
        im.save(p, quality=90)
        paths.append(p)
    return paths


def food_photo() -> Image.Image:
    """The shipped food photo as RGB (its file closed again)."""
    from beyondvis.recipes.generation.bundle import DEMO_PHOTO

    with Image.open(DEMO_PHOTO) as im:
        return im.convert("RGB")
