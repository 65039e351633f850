"""One image loader for the whole project.

It applies the EXIF orientation, converts every Pillow mode (L, LA, P, RGBA, CMYK, 16-bit and
float greyscale) to 8-bit RGB, refuses images above a pixel budget before decoding them
(decompression bombs), and turns every failure into :class:`ImageLoadError` naming the file and
the reason, so batch jobs can report and skip instead of crashing on a traceback.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 64 megapixels: above any camera photo we expect, far below a bomb's gigapixels.
DEFAULT_MAX_PIXELS = 64_000_000

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

ImageSource = str | os.PathLike | bytes | BinaryIO


class ImageLoadError(Exception):
    """An image could not be loaded; ``path`` says which file and ``reason`` why."""

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        self.path = str(path) if path is not None else "<bytes>"
        self.reason = reason
        super().__init__(f"cannot load image {self.path}: {reason}")


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Load an image as an 8-bit RGB :class:`PIL.Image.Image`, upright per its EXIF tag.

    ``source`` is a path, the encoded bytes, or a binary file object. Transparent pixels are
    composited on ``background`` (white, as an image viewer shows them) rather than dropped to
    black. Raises :class:`ImageLoadError` for missing, empty, truncated, corrupt, non-image or
    over-budget inputs.
    """
    name, stream = _open_source(source)
    try:
        with warnings.catch_warnings():
            # Pillow warns (instead of raising) between 1x and 2x its own limit; we apply ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageLoadError(name, f"invalid size {width}x{height}")
            if max_pixels is not None and width * height > max_pixels:
                raise ImageLoadError(
                    name,
                    f"{width}x{height} = {width * height:,} pixels exceeds the limit of "
                    f"{max_pixels:,} (possible decompression bomb; raise max_pixels to allow it)",
                )
            image.load()  # decode now so truncation surfaces here, not later in a transform
            image = ImageOps.exif_transpose(image)
            return to_rgb(image, background=background)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(name, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        # Pillow's own hard limit (2 x Image.MAX_IMAGE_PIXELS) fires before ours can.
        raise ImageLoadError(
            name, f"too many pixels, possible decompression bomb ({exc})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            text = f"truncated or incomplete image data ({text})"
        raise ImageLoadError(name, text) from None
    finally:
        if not isinstance(source, io.IOBase | bytes):
            stream.close()


def load_image_array(source: ImageSource, **kwargs) -> np.ndarray:
    """Like :func:`load_image` but returns an ``(H, W, 3)`` uint8 array."""
    return np.asarray(load_image(source, **kwargs))


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping 16-bit data or blackening alpha."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    # L, 1, CMYK, YCbCr, LAB, HSV: Pillow's own conversions are correct for these.
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    array = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        scaled = array / 65535.0  # 16-bit data uses the full 0..65535 range
    else:
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        if image.mode == "F" and 0.0 <= lo and hi <= 1.0:
            scaled = array  # float images already in [0, 1]
        elif hi <= 255 and lo >= 0:
            scaled = array / 255.0
        elif hi <= 65535 and lo >= 0:
            scaled = array / 65535.0
        else:
            scaled = (array - lo) / max(hi - lo, 1e-12)
    gray = np.clip(np.nan_to_num(scaled) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")


def _open_source(source: ImageSource) -> tuple[str | None, BinaryIO]:
    if isinstance(source, bytes):
        if not source:
            raise ImageLoadError(None, "empty input (0 bytes)")
        return None, io.BytesIO(source)
    if isinstance(source, io.IOBase):
        return getattr(source, "name", None), source  # type: ignore[return-value]
    path = Path(source)
    if not path.exists():
        raise ImageLoadError(path, "file not found")
    if path.is_dir():
        raise ImageLoadError(path, "is a directory, not an image file")
    try:
        size = path.stat().st_size
        if size == 0:
            raise ImageLoadError(path, "file is empty (0 bytes)")
        return str(path), open(path, "rb")  # noqa: SIM115 - closed by load_image
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
