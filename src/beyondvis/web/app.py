"""``create_app``: the beyondvis web application (FastAPI), pages and JSON API.

Pages (server-rendered HTML with a little vanilla JavaScript, no build step):

* ``GET /cook``   — drop a food photo, get the recipe card; re-generate with sampling.
* ``GET /search`` — pick (or upload) a query photo, draw a box, page through the ranked hits
  with their localisation boxes.

API (every error is ``{"error": MESSAGE}`` with a 4xx/5xx status):

* ``POST /api/cook``    multipart ``photo`` (+ optional ``decode`` greedy|beam|sample, ``seed``):
  the ``beyondvis cook --json`` card ``{"format": 1, "photo", "runtime", "decode", "title",
  "ingredients": [{"name", "prob", "staple"}], "instructions": [str], "retrieved": [...]}``.
* ``POST /api/search``  multipart: one of ``id`` (an indexed photo), ``photo`` (an upload) or
  ``token`` (an upload answered before); optional ``box`` ``x0,y0,x1,y1`` in query pixels,
  ``page`` (1-based), ``per_page``: ``{"format": "beyondvis-web-search", "format_version": 1,
  "query": {"label", "width", "height", "box", "token"?}, "total", "page", "pages",
  "per_page", "seconds", "results": [{"rank", "id", "name", "width", "height", "url",
  "score", "box"}]}`` (``box`` in the hit's own pixels, null where it was not reranked).
* ``GET /api/collection?page=&per_page=`` the indexed photos; ``GET /api/image/{id}?size=``
  one of them as a JPEG thumbnail — by integer id only, no path ever comes from a request.
* ``GET /api/health`` what is loaded.
"""

from __future__ import annotations

import html
import os
import string
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from beyondvis.web.limits import BodyLimitMiddleware, BodyTimeout, BodyTooLarge
from beyondvis.web.services import (
    DECODES,
    ComputePool,
    CookService,
    SearchService,
    ServiceError,
)

HEALTH_FORMAT = "beyondvis-web-health"
STATIC = {  # the only files the static route serves, by exact name
    "style.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "cook.js": "text/javascript; charset=utf-8",
    "search.js": "text/javascript; charset=utf-8",
}
MAX_PER_PAGE = 60


@dataclass
class WebConfig:
    max_upload_bytes: int = 10_000_000
    max_pixels: int = 40_000_000
    request_timeout: float = 120.0  # seconds a cook/search may wait + run
    body_timeout: float = 30.0  # seconds an upload may stall between chunks
    workers: int = 1  # model threads
    max_queue: int = 64  # requests waiting for a model thread before 503
    thumbnail_max: int = 1024


def _asset(name: str) -> str:
    return resources.files("beyondvis.web").joinpath("static", name).read_text(encoding="utf-8")


def _page(name: str, **values: Any) -> str:
    """A page from ``static/NAME`` with ``$key`` placeholders filled in (HTML-escaped)."""
    text = string.Template(_asset(name))
    return text.safe_substitute({k: html.escape(str(v)) for k, v in values.items()})


def create_app(
    cook: CookService | None = None,
    search: SearchService | None = None,
    config: WebConfig | None = None,
) -> Any:
    """The ASGI app around an already loaded ``cook`` model and ``search`` index (either may be
    None: its page then says how to enable it). Wrapped in the body-size/stall limiter."""
    config = config or WebConfig()
    pool = ComputePool(config.workers, config.max_queue, config.request_timeout)
    app = FastAPI(
        title="beyondvis",
        description="Recipe cards from food photos and visual search over a photo collection.",
        version=_version(),
    )
    app.state.cook, app.state.search, app.state.pool, app.state.config = cook, search, pool, config

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error(str(exc), exc.status)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error(str(exc), 413)

    @app.exception_handler(BodyTimeout)
    async def _stalled(request: Request, exc: BodyTimeout) -> JSONResponse:
        return error(str(exc), 408)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(v) for v in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return error("bad request: " + "; ".join(parts), 400)

    @app.exception_handler(404)
    async def _not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return error(f"no such API route: {request.url.path}", 404)
        body = _page("missing.html", path=request.url.path)
        return HTMLResponse(body, status_code=404)

    async def read_form(request: Request) -> Any:
        ctype = request.headers.get("content-type", "")
        if not ctype and request.headers.get("content-length", "0") == "0":
            return {}  # an empty request: the route says what it misses
        if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise ServiceError("send the photo as multipart/form-data (field 'photo')", 415)
        try:
            return await request.form(max_files=1, max_fields=16)
        except (BodyTooLarge, BodyTimeout):
            raise
        except Exception as exc:  # the multipart parser's many exception types
            raise ServiceError(f"the form could not be read: {exc}", 400) from None

    async def read_photo(form: Any, required: bool = True) -> tuple[bytes, str] | None:
        upload = form.get("photo")
        if upload is None or isinstance(upload, str):
            if required:
                raise ServiceError("no photo in the request: send it as the form field 'photo'")
            return None
        data = await upload.read()
        name = os.path.basename(upload.filename or "upload")[:200] or "upload"
        return data, name

    # -- pages
    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/cook")

    @app.get("/cook", response_class=HTMLResponse, include_in_schema=False)
    async def cook_page() -> HTMLResponse:
        ready = app.state.cook is not None
        return HTMLResponse(
            _page(
                "cook.html",
                max_mb=f"{config.max_upload_bytes / 1e6:.0f}",
                status="" if ready else "The cook model is not loaded in this server.",
                decode=app.state.cook.default_decode if ready else "",
            )
        )

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    async def search_page() -> HTMLResponse:
        s = app.state.search
        return HTMLResponse(
            _page(
                "search.html",
                max_mb=f"{config.max_upload_bytes / 1e6:.0f}",
                count=len(s) if s is not None else 0,
                index=s.folder.name if s is not None else "",
                enabled="1" if s is not None else "0",
            )
        )

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:  # a fixed list: no path, no '..', no other file
            return error(f"no such file: {name}", 404)
        return Response(_asset(name), media_type=STATIC[name])

    # -- API
    @app.get("/api/health")
    async def health() -> dict:
        c, s = app.state.cook, app.state.search
        return {
            "format": HEALTH_FORMAT,
            "format_version": 1,
            "cook": None
            if c is None
            else {
                "load_seconds": round(c.load_seconds, 2),
                "cards": c.cards,
                "decode": c.default_decode,
            },
            "index": None if s is None else {"images": len(s), "folder": s.folder.name},
            "pending": pool.pending,
            "pid": os.getpid(),
        }

    @app.post("/api/cook")
    async def api_cook(request: Request) -> Response:
        """The recipe card of the photo in multipart field ``photo``."""
        c = app.state.cook
        if c is None:
            raise ServiceError("this server was started without the cook model", 503)
        form = await read_form(request)
        data, name = await read_photo(form)
        decode = _field(form, "decode") or None
        if decode is not None and decode not in DECODES:
            raise ServiceError(f"unknown decoding {decode!r}; choose from {', '.join(DECODES)}")
        seed = _int(_field(form, "seed") or "0", "seed", 0, 2**31 - 1)
        t0 = time.perf_counter()
        # one pool task for decode + card: two would queue the request twice behind the others
        card = await pool.run(lambda: c.cook(_decode(data, config.max_pixels), name, decode, seed))
        ms = (time.perf_counter() - t0) * 1000
        return JSONResponse(card, headers={"Server-Timing": f"cook;dur={ms:.0f}"})

    @app.get("/api/collection")
    async def collection(page: int = 1, per_page: int = 24) -> dict:
        s = _need_index()
        return s.listing(page, min(max(1, per_page), MAX_PER_PAGE))

    @app.get("/api/image/{image_id}")
    async def image(image_id: str, size: int = 512) -> Response:
        s = _need_index()
        i = _int(image_id, "image id", 0, max(0, len(s) - 1))
        side = min(max(16, size), config.thumbnail_max)
        data = await pool.run(lambda: s.thumbnail(i, side))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/search")
    async def api_search(request: Request) -> Response:
        """One page of the ranking for a query photo (``id``, ``photo`` or ``token``)."""
        s = _need_index()
        form = await read_form(request)
        page = _int(_field(form, "page") or "1", "page", 1, 10**6)
        per_page = _int(_field(form, "per_page") or "12", "per_page", 1, MAX_PER_PAGE)
        box = _box(_field(form, "box"))
        photo = await read_photo(form, required=False)
        token = _field(form, "token")
        qid = _field(form, "id")
        extra: dict[str, Any] = {}
        if photo is not None:
            data, _ = photo
            image = await pool.run(lambda: _decode(data, config.max_pixels))
            token = s.remember_upload(image, data)
            extra = {"token": token}
        if token:
            token = token.strip()
            if not (token.isalnum() and len(token) <= 64):
                raise ServiceError("bad query token")
            key: tuple = ("upload", token)
            s.upload(token)  # 410 now rather than on the pool
            extra = {"token": token}

            def query() -> Any:
                return s.upload(token)

        elif qid:
            i = _int(qid, "id", 0, max(0, len(s) - 1))
            s.check_id(i)
            key = ("id", i)
            extra = {"id": i}

            def query() -> Any:
                return s.indexed_query(i)

        else:
            raise ServiceError("pick a query photo: send 'id' (an indexed photo) or 'photo'")
        out = await pool.run(lambda: s.search(key, query, box, page, per_page))
        out["query"].update(extra)
        return JSONResponse(out)

    def _need_index() -> SearchService:
        if app.state.search is None:
            raise ServiceError(
                "this server has no index: start it with `beyondvis serve --index INDEX` "
                "(build one with `beyondvis index build PHOTOS --out INDEX`)",
                503,
            )
        return app.state.search

    return BodyLimitMiddleware(app, config.max_upload_bytes, config.body_timeout)


def _decode(data: bytes, max_pixels: int) -> Any:
    from beyondvis.web.services import decode_upload

    return decode_upload(data, max_pixels)


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _int(text: str, what: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ServiceError(
            f"{what} must be a whole number, got {text[:40]!r}", 404 if what == "image id" else 400
        ) from None
    if not lo <= value <= hi:
        raise ServiceError(
            f"{what} must lie in {lo}..{hi}, got {value}", 404 if what == "image id" else 400
        )
    return value


def _box(text: str) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ServiceError(f"box wants x0,y0,x1,y1 numbers, got {text[:60]!r}") from None
    if len(box) != 4 or not all(v == v and abs(v) < 1e6 for v in box):
        raise ServiceError(f"box wants four numbers x0,y0,x1,y1, got {text[:60]!r}")
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ServiceError("box wants x0 < x1 and y0 < y1: draw it again")
    return box  # type: ignore[return-value]


def _version() -> str:
    import beyondvis

    return beyondvis.__version__
