"""What the web app accepts: upload size, image content (sniffed, never the file name), pixels,
and how long a client may take to send its body.

The body cap is enforced by an ASGI middleware *while the body streams in*, so an oversize
upload is refused after at most ``max_bytes`` have been read (``Content-Length`` is checked
first, and a chunked body without one is counted), instead of being spooled to disk whole.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

# magic bytes -> format name; anything else is refused before Pillow sees it
_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
]


def sniff_image(data: bytes) -> str | None:
    """The image format that ``data`` starts with (jpeg, png, gif, webp, bmp, tiff), or None.

    Decided by the leading bytes only: a file named ``.jpg`` holding HTML is not an image.
    """
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, offset, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


class BodyTooLarge(Exception):
    """The request body passed the upload cap (answered 413)."""


class BodyTimeout(Exception):
    """The client stopped sending its body (answered 408)."""


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Any]


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` (413) and bodies that stall for more than
    ``read_timeout`` seconds between chunks (408), with a JSON ``{"error": ...}`` message."""

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.read_timeout = float(read_timeout)

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_error(send, 400, "bad Content-Length header")
                return
            if declared > self.max_bytes:
                await _send_error(send, 413, self.too_large_message(declared))
                return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except asyncio.TimeoutError:
                raise BodyTimeout(
                    f"the upload stalled for more than {self.read_timeout:g} s"
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.too_large_message(None))
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        # the routes turn these into responses themselves; this catches the rest
        except BodyTooLarge as exc:
            if not started:
                await _send_error(send, 413, str(exc))
        except BodyTimeout as exc:
            if not started:
                await _send_error(send, 408, str(exc))

    def too_large_message(self, size: int | None) -> str:
        cap = f"{self.max_bytes / 1e6:.1f} MB"
        got = f" ({size / 1e6:.1f} MB sent)" if size is not None else ""
        return f"the upload is too large{got}: the limit is {cap}"


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
