"""Visual output of a search: a PNG grid or a self-contained HTML page, boxes drawn."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence

from PIL import Image, ImageDraw

from beyondvis.io import ImageLoadError, load_image
from beyondvis.utils import atomic_write, atomic_write_bytes

THUMB = 256


def _thumb(path: str, box: Sequence[float] | None, colour: str = "lime") -> Image.Image:
    try:
        image = load_image(path)
    except ImageLoadError:
        return Image.new("RGB", (THUMB, THUMB), (80, 80, 80))
    scale = THUMB / max(image.size)
    thumb = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    if box is not None:
        draw = ImageDraw.Draw(thumb)
        draw.rectangle([v * scale for v in box], outline=colour, width=3)
    return thumb


def render_grid(
    query: str,
    query_box: Sequence[float] | None,
    results: list[dict],
    out: str | os.PathLike,
    columns: int = 6,
) -> None:
    tiles = [_thumb(query, query_box, "red")] + [_thumb(r["image"], r["box"]) for r in results]
    rows = (len(tiles) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * THUMB, rows * (THUMB + 16)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, tile in enumerate(tiles):
        x, y = (k % columns) * THUMB, (k // columns) * (THUMB + 16)
        canvas.paste(tile, (x, y))
        label = "query" if k == 0 else f"{k}: {results[k - 1]['score']:.3f}"
        draw.text((x + 4, y + THUMB + 2), label, fill="black")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())


def _data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def render_html(
    query: str, query_box: Sequence[float] | None, results: list[dict], out: str | os.PathLike
) -> None:
    cards = [
        f'<figure><img src="{_data_uri(_thumb(query, query_box, "red"))}">'
        f"<figcaption>query<br>{html.escape(query)}</figcaption></figure>"
    ]
    for k, r in enumerate(results, 1):
        cards.append(
            f'<figure><img src="{_data_uri(_thumb(r["image"], r["box"]))}">'
            f"<figcaption>{k}. score {r['score']:.3f}<br>{html.escape(r['image'])}</figcaption></figure>"
        )
    page = (
        "<!doctype html><meta charset='utf-8'><title>beyondvis search</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;margin:4px;width:260px;"
        "vertical-align:top}figcaption{font-size:11px;word-break:break-all}</style>"
        + "".join(cards)
    )
    with atomic_write(out, "w") as f:
        f.write(page)
