"""The image loader on every bad-input case and every colour mode, on files the tests write."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beyondvis.io import ImageLoadError, load_image, load_image_array


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def _gradient(w: int = 40, h: int = 30) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    return Image.fromarray(np.stack([x, x[::-1, ::-1], np.full_like(x, 90)], -1), "RGB")


def _png_with_header_size(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose header claims a huge size (no pixel data needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


# --- bad inputs -------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found") as info:
        load_image(tmp_path / "nope.jpg")
    assert info.value.path.endswith("nope.jpg")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(path)


def test_empty_bytes():
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


def test_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def test_non_image_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated(tmp_path, fmt):
    buf = io.BytesIO()
    _gradient(200, 150).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert "truncated" in info.value.reason.lower() or "incomplete" in info.value.reason.lower()
    assert str(path) in str(info.value)


def test_corrupt_body(tmp_path):
    buf = io.BytesIO()
    _gradient(64, 64).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[60:200] = b"\xff" * 140  # smash the compressed pixel data, keep the signature
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError):
        load_image(path)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header_size(100_000, 100_000))  # 10 gigapixels
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path)
    path.write_bytes(_png_with_header_size(9_000, 9_000))  # 81 MP: over our cap, under Pillow's
    with pytest.raises(ImageLoadError, match="exceeds the limit of 64,000,000"):
        load_image(path)


def test_pixel_cap_is_configurable(tmp_path):
    path = _save(_gradient(100, 100), tmp_path / "img.png")
    with pytest.raises(ImageLoadError, match="exceeds"):
        load_image(path, max_pixels=5_000)
    assert load_image(path, max_pixels=None).size == (100, 100)


# --- colour modes -----------------------------------------------------------------------------


def test_rgb_roundtrip(tmp_path):
    image = _gradient()
    out = load_image(_save(image, tmp_path / "a.png"))
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(image))


def test_bytes_and_file_object(tmp_path):
    path = _save(_gradient(), tmp_path / "a.png")
    data = path.read_bytes()
    assert load_image(data).size == (40, 30)
    with open(path, "rb") as handle:
        assert load_image(handle).size == (40, 30)


def test_greyscale_and_palette(tmp_path):
    grey = Image.fromarray(np.full((10, 12), 77, np.uint8), "L")
    out = load_image_array(_save(grey, tmp_path / "g.png"))
    assert out.shape == (10, 12, 3) and (out == 77).all()
    palette = _gradient().convert("P")
    assert load_image(_save(palette, tmp_path / "p.png")).mode == "RGB"


def test_alpha_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = load_image_array(_save(rgba, tmp_path / "t.png"))
    assert tuple(out[0, 0]) == (0, 0, 255)
    assert tuple(out[4, 4]) == (255, 255, 255)
    la = Image.new("LA", (4, 4), (10, 0))
    assert tuple(load_image_array(_save(la, tmp_path / "la.png"))[0, 0]) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.info["transparency"] = 0
    path = tmp_path / "pt.png"
    image.save(path, transparency=0)
    out = load_image_array(path)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (200, 10, 10)


def test_cmyk_jpeg(tmp_path):
    cmyk = _gradient().convert("CMYK")
    out = load_image(_save(cmyk, tmp_path / "c.jpg", quality=95))
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out).astype(int) - np.asarray(_gradient()).astype(int)).mean() < 12


def test_16bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    out = load_image_array(_save(image, tmp_path / "d.png"))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_exif_orientation_applied(tmp_path):
    image = _gradient(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    image.save(path, exif=exif.tobytes())
    assert Image.open(path).size == (40, 30)
    assert load_image(path).size == (30, 40)
