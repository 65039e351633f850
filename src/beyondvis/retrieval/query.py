"""A query photo and its region (box or mask) searched in an index, and its results as text, JSON,
an HTML page or a grid of thumbnails.

:func:`search_photo` (BLCF) and :func:`search_detector_photo` (Faster R-CNN) check the region
against the photo first (a box is clamped to it, a mask must match its size and mark something),
so that ``beyondvis index search`` and a library caller refuse the same queries with the same
one-line :class:`QueryRegionError`. Both return a :class:`QueryResult`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from beyondvis.errors import BeyondvisError

GRID_MAX = 60  # thumbnails in a grid, whatever k is
RESULTS_FORMAT_VERSION = 1


class QueryRegionError(BeyondvisError, ValueError):
    """A query box or mask that does not fit its photo."""


def clamp_box(box: Sequence[float], image_size: tuple[int, int]) -> tuple[float, ...]:
    """``box`` (x0, y0, x1, y1 pixels) clipped to a ``(width, height)`` photo; a box left with
    no area (it lay outside the photo) is a :class:`QueryRegionError`."""
    w, h = image_size
    x0, y0, x1, y1 = box
    clamped = (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
    if not (clamped[2] > clamped[0] and clamped[3] > clamped[1]):
        raise QueryRegionError(f"--box lies outside the {w}x{h} query image")
    return clamped


def region_mask(mask_image: Any, image_size: tuple[int, int], name: Any = "mask") -> np.ndarray:
    """The boolean object mask (non-zero pixels) of a mask photo; it must be the query's size
    and mark at least one pixel (:class:`QueryRegionError` otherwise)."""
    if mask_image.size != tuple(image_size):
        raise QueryRegionError(
            f"mask is {mask_image.size}, query is {tuple(image_size)}: sizes must match"
        )
    mask = np.asarray(mask_image.convert("L")) > 0
    if not mask.any():
        raise QueryRegionError(f"mask {name} is empty")
    return mask


@dataclass
class QueryResult:
    """The ranked hits of one query (``SearchHit.as_dict()`` each) and the query's box in its
    pixels (what grids and pages draw; None = the whole photo)."""

    query: str
    query_box: tuple[float, ...] | None
    results: list[dict] = field(default_factory=list)
    format: str = "beyondvis-blcf-results"
    empty_note: str | None = None  # the line printed for an empty ranking, if any

    def to_json(self) -> dict:
        """The documented results object (docs/formats.md: ``format``, ``format_version``,
        ``results``)."""
        return {
            "format": self.format,
            "format_version": RESULTS_FORMAT_VERSION,
            "results": self.results,
        }

    def lines(self) -> list[str]:
        """One line per hit: rank, score, photo and (when localised) its box."""
        out = []
        for k, r in enumerate(self.results, 1):
            box = r.get("box")
            box_text = "" if box is None else "  box " + ",".join(f"{v:.0f}" for v in box)
            out.append(f"{k:3d}  {r['score']:.4f}  {r['image']}{box_text}")
        if not self.results and self.empty_note:
            out.append(self.empty_note)
        return out

    def render(
        self,
        grid: str | os.PathLike | None = None,
        html: str | os.PathLike | None = None,
        grid_max: int = GRID_MAX,
    ) -> None:
        """Write a PNG grid of the top ``grid_max`` hits and/or an HTML page of all of them."""
        from beyondvis.retrieval.visualize import render_grid, render_html

        if grid:
            render_grid(self.query, self.query_box, self.results[:grid_max], grid)
        if html:
            render_html(self.query, self.query_box, self.results, html)


def search_photo(
    index: Any,
    query: str | os.PathLike,
    box: Sequence[float] | None = None,
    mask: str | os.PathLike | None = None,
    k: int | None = 20,
    mode: str | None = None,
    augment: bool = False,
    unmatched: bool = False,
    **search: Any,
) -> QueryResult:
    """Search a :class:`~beyondvis.retrieval.BLCFIndex` with the photo ``query`` and optionally
    a ``box`` or a ``mask`` photo of the object.

    ``mode`` is the query BoW (``gs``/``ls``/``ws``; default ``ls`` with a region, else ``gs``);
    ``search`` sets the other :class:`~beyondvis.retrieval.SearchConfig` fields (``rerank``,
    ``qe``, ``max_words``, ...; the centre prior follows the index's). ``k`` = 0 or None returns
    the whole ranking. Raises :class:`~beyondvis.io.ImageLoadError` for an unreadable photo.
    """
    from beyondvis.io import load_image
    from beyondvis.retrieval.search import SearchConfig

    image = load_image(query)
    region = None
    if mask is not None:
        region = region_mask(load_image(mask), image.size, mask)
    if box is not None:
        box = clamp_box(box, image.size)
    mode = mode or ("ls" if (box is not None or region is not None) else "gs")
    search.setdefault("centre_prior", index.config.centre_prior)
    config = SearchConfig(mode=mode, **search)
    views = index.views(image, box=box, mask=region, augment=augment)
    hits = index.search_views(views, k=k, config=config, unmatched=unmatched)
    return QueryResult(
        str(query),
        views[0].box_pixels,
        [h.as_dict() for h in hits],
        empty_note="no indexed photo shares a visual word with the query",
    )


def search_detector_photo(
    index: Any,
    query: str | os.PathLike,
    box: Sequence[float] | None = None,
    k: int | None = 20,
    rerank: str | None = "auto",
    query_class: str | int | None = None,
    **search: Any,
) -> QueryResult:
    """Search a :class:`~beyondvis.retrieval.DetectorIndex` with the photo ``query`` and
    optionally the object's ``box``.

    ``rerank`` is the spatial reranking: ``"auto"`` = CS-SR on a fine-tuned index, else CA-SR;
    ``"ca"``, ``"cs"`` or None (off). ``search`` sets the other
    :class:`~beyondvis.retrieval.DetectorSearchConfig` fields (``ipa``, ``rpa``, ``top_k``,
    ``qe_top``).
    """
    from beyondvis.io import load_image
    from beyondvis.retrieval.detector import DetectorSearchConfig

    image = load_image(query)
    if box is not None:
        box = clamp_box(box, image.size)
    if rerank == "auto":
        rerank = "cs" if index.classes else "ca"
    config = DetectorSearchConfig(rerank=rerank, **search)
    hits = index.search(image, box=box, k=k, config=config, query_class=query_class)
    return QueryResult(
        str(query), box, [h.as_dict() for h in hits], format="beyondvis-frcnn-results"
    )
