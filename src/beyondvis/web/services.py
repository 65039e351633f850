"""The warm models behind the web app: one cook model and one search index per process.

Both are loaded once, when the app starts; a request only runs them. Model work runs on a
small thread pool (``workers`` threads, one by default: on a CPU a second concurrent card only
halves the speed of both) behind a bounded queue, so a burst of requests waits in line instead
of oversubscribing the cores, and a request that waits or runs too long is answered with a
message while the server stays up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SEARCH_JSON_FORMAT = "beyondvis-web-search"
SEARCH_JSON_VERSION = 1
DECODES = ("greedy", "beam", "sample")


class ServiceError(Exception):
    """A request that cannot be served; ``status`` is the HTTP status, the text is for people."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ComputePool:
    """Runs model work on ``workers`` threads with at most ``max_queue`` requests waiting."""

    def __init__(self, workers: int = 1, max_queue: int = 64, timeout: float = 120.0) -> None:
        self.workers = max(1, workers)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="beyondvis-web"
        )
        self.max_queue = max_queue
        self.timeout = timeout
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if self._pending >= self.max_queue + self.workers:
                raise ServiceError(
                    f"the server is busy ({self._pending} requests in line); try again shortly",
                    503,
                )
            self._pending += 1
        future = self.executor.submit(fn)
        future.add_done_callback(lambda _: self._done())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except asyncio.TimeoutError:
            future.cancel()  # a request still in line never runs; a running one finishes alone
            raise ServiceError(
                f"the request took longer than {self.timeout:g} s and was given up; the "
                "server may be overloaded",
                504,
            ) from None

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def decode_upload(data: bytes, max_pixels: int) -> Any:
    """The uploaded bytes as an RGB PIL image, or a :class:`ServiceError` a person can read:
    the format is sniffed from the bytes (never the file name), the pixel count capped before
    decoding."""
    from beyondvis.io import ImageLoadError, load_image
    from beyondvis.web.limits import sniff_image

    if not data:
        raise ServiceError("the upload is empty: choose a photo (JPEG, PNG, WebP, GIF, BMP)")
    if sniff_image(data) is None:
        raise ServiceError(
            "this file is not a photo: its content is not JPEG, PNG, WebP, GIF, BMP or TIFF "
            "(whatever its name says)",
            415,
        )
    try:
        return load_image(data, max_pixels=max_pixels)
    except ImageLoadError as exc:
        raise ServiceError(f"the photo cannot be read: {exc.reason}", 422) from None


class CookService:
    """The shipped (or a given) recipe-card model, loaded once."""

    def __init__(
        self,
        folder: str | os.PathLike | None = None,
        device: str = "cpu",
        model: Any = None,
        runtime: str = "torch",
        decode: str | None = None,
    ) -> None:
        if decode is not None and decode not in DECODES:
            raise ValueError(f"unknown decoding {decode!r}; choose from {', '.join(DECODES)}")
        t0 = time.perf_counter()
        if model is None:
            from beyondvis.recipes.generation import PACKAGE_BUNDLE, CookModel

            model = CookModel(Path(folder) if folder else PACKAGE_BUNDLE, device=device)
        self.model = model
        self.runtime = runtime
        # the bundle's own choice (decoding.json) unless the server was told otherwise
        self.default_decode = decode or getattr(model, "decoding", {}).get("method", "beam")
        self.load_seconds = time.perf_counter() - t0
        self.cards = 0

    def cook(self, image: Any, photo: str, decode: str | None, seed: int | None) -> dict:
        """One card as ``beyondvis cook --json`` prints it (runs on a pool thread)."""
        decode = decode or self.default_decode
        if decode not in DECODES:
            raise ServiceError(f"unknown decoding {decode!r}; choose from {', '.join(DECODES)}")
        from beyondvis.recipes.generation import card_json

        options: dict[str, Any] = {"seed": int(seed or 0)} if decode == "sample" else {}
        result = self.model.cook(image, decode, **options)
        self.cards += 1
        return card_json(result, photo, self.runtime, decode)


@dataclass
class _Query:
    image: Any  # PIL RGB
    label: str


class SearchService:
    """A BLCF index (``beyondvis index build``) searched as ``beyondvis index search`` does:
    the query's views encoded with the index's own backbone and codebook, then
    ``BLCFIndex.search_views`` with local reranking (so the hits carry localisation boxes).

    A whole ranking is computed once per (query, box) and kept in a small LRU cache, so paging
    through results costs nothing; uploaded query photos are kept (by content hash) in another
    so the page can ask for page 2 without sending the photo again.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        device: str = "cpu",
        index: Any = None,
        cache_size: int = 32,
        max_pixels: int | None = None,
    ) -> None:
        t0 = time.perf_counter()
        if index is None:
            from beyondvis.retrieval import BLCFIndex

            index = BLCFIndex.load(folder, device=device)
        self.index = index
        self.folder = Path(folder)
        self.max_pixels = max_pixels
        self._rankings: OrderedDict[tuple, list] = OrderedDict()
        self._uploads: OrderedDict[str, _Query] = OrderedDict()
        self._thumbs: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self.load_seconds = time.perf_counter() - t0

    def __len__(self) -> int:
        return len(self.index)

    # -- the collection, by id only (no path ever comes from a request)
    def check_id(self, i: int) -> int:
        if not 0 <= i < len(self.index):
            raise ServiceError(f"no photo {i} in the index (ids run 0..{len(self.index) - 1})", 404)
        return i

    def path(self, i: int) -> Path:
        p = Path(self.index.paths[self.check_id(i)])
        if not p.is_absolute() and not p.exists():
            # an index built with a relative folder: try next to the index folder
            alt = self.folder.parent / p
            p = alt if alt.exists() else p
        return p

    def name(self, i: int) -> str:
        return Path(self.index.paths[i]).name

    def size(self, i: int) -> tuple[int, int]:
        w, h = (int(v) for v in self.index.image_sizes[i])
        return w, h

    def listing(self, page: int, per_page: int) -> dict:
        n = len(self.index)
        pages = max(1, -(-n // per_page))
        page = min(max(1, page), pages)
        ids = range((page - 1) * per_page, min(n, page * per_page))
        return {
            "total": n,
            "page": page,
            "pages": pages,
            "per_page": per_page,
            "photos": [self._photo(i) for i in ids],
        }

    def _photo(self, i: int) -> dict:
        w, h = self.size(i)
        return {"id": i, "name": self.name(i), "width": w, "height": h, "url": f"/api/image/{i}"}

    def thumbnail(self, i: int, max_side: int) -> bytes:
        """The indexed photo ``i`` as a JPEG of at most ``max_side`` pixels (runs on a pool
        thread): re-encoded, so whatever the file on disk is, only an image leaves."""
        from beyondvis.io import ImageLoadError, load_image

        key = (self.check_id(i), max_side)
        with self._lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        try:
            image = load_image(self.path(i), max_pixels=self.max_pixels)
        except ImageLoadError as exc:
            raise ServiceError(
                f"photo {i} of the index cannot be read now: {exc.reason}", 410
            ) from None
        image.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=85)
        data = buf.getvalue()
        with self._lock:
            self._thumbs[key] = data
            while len(self._thumbs) > 4 * self.cache_size:
                self._thumbs.popitem(last=False)
        return data

    # -- queries
    def remember_upload(self, image: Any, data: bytes) -> str:
        token = hashlib.sha256(data).hexdigest()[:20]
        with self._lock:
            self._uploads[token] = _Query(image, "uploaded photo")
            self._uploads.move_to_end(token)
            while len(self._uploads) > self.cache_size:
                self._uploads.popitem(last=False)
        return token

    def upload(self, token: str) -> _Query:
        with self._lock:
            q = self._uploads.get(token)
        if q is None:
            raise ServiceError(
                "the uploaded query photo is no longer held by the server; upload it again", 410
            )
        return q

    def indexed_query(self, i: int) -> _Query:
        from beyondvis.io import ImageLoadError, load_image

        try:
            image = load_image(self.path(i), max_pixels=self.max_pixels)
        except ImageLoadError as exc:
            raise ServiceError(
                f"photo {i} of the index cannot be read now: {exc.reason}", 410
            ) from None
        return _Query(image, self.name(i))

    def search(
        self,
        key: tuple,
        query: Callable[[], _Query],
        box: tuple[float, float, float, float] | None,
        page: int,
        per_page: int,
    ) -> dict:
        """One page of the ranking for a query (runs on a pool thread)."""
        t0 = time.perf_counter()
        ckey = (key, box)
        with self._lock:
            cached = self._rankings.get(ckey)
            if cached is not None:
                self._rankings.move_to_end(ckey)
        if cached is None:
            q = query()
            w, h = q.image.size
            if box is not None:
                box = (max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h))
                if not (box[2] - box[0] >= 2 and box[3] - box[1] >= 2):
                    raise ServiceError(f"the box lies outside the {w}x{h} query photo")
            hits = self._rank(q.image, box)
            cached = (hits, (w, h), box, q.label)
            with self._lock:
                self._rankings[ckey] = cached
                while len(self._rankings) > self.cache_size:
                    self._rankings.popitem(last=False)
        hits, (w, h), box, label = cached
        total = len(hits)
        pages = max(1, -(-total // per_page))
        page = min(max(1, page), pages)
        start = (page - 1) * per_page
        results = []
        for rank, hit in enumerate(hits[start : start + per_page], start + 1):
            results.append(
                {
                    "rank": rank,
                    **self._photo(hit.id),
                    "score": round(float(hit.score), 5),
                    "box": None if hit.box is None else [round(float(v), 1) for v in hit.box],
                }
            )
        return {
            "format": SEARCH_JSON_FORMAT,
            "format_version": SEARCH_JSON_VERSION,
            "query": {"label": label, "width": w, "height": h, "box": box and list(box)},
            "total": total,
            "page": page,
            "pages": pages,
            "per_page": per_page,
            "seconds": round(time.perf_counter() - t0, 4),
            "results": results,
        }

    def _rank(self, image: Any, box: tuple | None) -> list:
        """The whole ranking, exactly as ``beyondvis index search`` computes it by default:
        local search (ls) inside a box, else global search (gs), local reranking of the top 100
        with the aspect filter and the spatial pyramid."""
        from beyondvis.retrieval import RerankConfig, SearchConfig

        index = self.index
        config = SearchConfig(
            mode="ls" if box is not None else "gs",
            rerank=True,
            rerank_config=RerankConfig(top_k=100, aspect_threshold=0.4, pyramid_levels=2),
            centre_prior=index.config.centre_prior,
        )
        try:
            views = index.views(image, box=box)
            return index.search_views(views, k=0, config=config)
        except ValueError as exc:
            raise ServiceError(f"search failed: {exc}", 422) from None
