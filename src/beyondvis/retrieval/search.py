"""The BLCF search pipeline: initial search (GS / LS / WS), local reranking, query expansion.

Everything works on assignment maps, so the same code serves the CLI (maps computed from
photos) and the tests (maps crafted by hand).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from beyondvis.retrieval import qe
from beyondvis.retrieval.bow import (
    bow,
    box_mask,
    box_to_cells,
    cell_box_to_pixels,
    centre_prior,
    distance_weights,
    resize_mask,
)
from beyondvis.retrieval.inverted import InvertedIndex, top_k_order
from beyondvis.retrieval.rerank import LocalReranker, RerankConfig

MODES = ("gs", "ls", "ws")
QE_MODES = (None, "gqe", "lqe", "wqe")


@dataclass
class QueryView:
    """One (possibly augmented) view of the query: its map and, for LS/WS, its region."""

    assignment: np.ndarray
    image_size: tuple[int, int]  # (width, height) of the view in pixels
    region: np.ndarray | None = None  # bool mask on the map's cells
    box_cells: tuple[int, int, int, int] | None = None  # bounding cells of the region
    box_pixels: tuple[float, float, float, float] | None = None


def make_view(
    assignment: np.ndarray,
    image_size: tuple[int, int],
    box: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
) -> QueryView:
    """Attach a pixel box or pixel mask (H, W) to a query map."""
    shape = assignment.shape
    if box is not None and mask is not None:
        raise ValueError("give a box or a mask, not both")
    if box is not None:
        box = tuple(float(v) for v in box)
        cells = box_to_cells(box, image_size, shape)
        return QueryView(assignment, image_size, box_mask(box, image_size, shape), cells, box)
    if mask is not None:
        region = resize_mask(mask, shape)
        rows, cols = np.nonzero(region)
        cells = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
        ys, xs = np.nonzero(np.asarray(mask) > 0)
        pix = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        return QueryView(assignment, image_size, region, cells, pix)
    return QueryView(assignment, image_size)


def augment_query(
    image: Image.Image, box: Sequence[float] | None = None, mask: np.ndarray | None = None
) -> list[tuple[Image.Image, Sequence[float] | None, np.ndarray | None]]:
    """Original, horizontal flip and zoomed central crop (image enlarged by 50%), with the box
    or mask carried along. A view whose region leaves the crop is dropped (thesis Sec. 2.3.2)."""
    w, h = image.size
    views = [(image, box, mask)]
    flip_box = None if box is None else (w - box[2], box[1], w - box[0], box[3])
    flip_mask = None if mask is None else np.ascontiguousarray(np.asarray(mask)[:, ::-1])
    views.append((ImageOps.mirror(image), flip_box, flip_mask))
    big = image.resize((round(w * 1.5), round(h * 1.5)), Image.BILINEAR)
    ox, oy = (big.width - w) // 2, (big.height - h) // 2
    zcc = big.crop((ox, oy, ox + w, oy + h))
    z_box, z_mask, keep = None, None, True
    if box is not None:
        x0, y0 = max(box[0] * 1.5 - ox, 0), max(box[1] * 1.5 - oy, 0)
        x1, y1 = min(box[2] * 1.5 - ox, w), min(box[3] * 1.5 - oy, h)
        keep = x1 - x0 >= 1 and y1 - y0 >= 1
        z_box = (x0, y0, x1, y1)
    if mask is not None:
        m = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
        m = m.resize((big.width, big.height), Image.NEAREST).crop((ox, oy, ox + w, oy + h))
        z_mask = np.asarray(m) > 0
        keep = bool(z_mask.any())
    if keep:
        views.append((zcc, z_box, z_mask))
    return views


@dataclass
class SearchConfig:
    mode: str = "gs"
    rerank: bool = False
    rerank_config: RerankConfig = field(default_factory=RerankConfig)
    qe: str | None = None
    qe_top: int = 10
    qe_after_rerank: bool = True  # GQE may run before the reranking instead (thesis Sec 2.2)
    centre_prior: bool = True  # weight GS query words like the indexed images
    # Query words searched in the inverted index: the max_words of largest tf-idf weight
    # (None = all). A global query holds ~240 words at the defaults, and its frequent words'
    # long posting lists cost more than a dense flat search; see docs/retrieval.md for the
    # speed and mAP with and without. The reranking and QE still use every query word.
    max_words: int | None = 100

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown search mode {self.mode!r}; choose from {MODES}")
        if self.qe not in QE_MODES:
            raise ValueError(f"unknown query expansion {self.qe!r}; choose from {QE_MODES}")
        if self.qe in ("lqe", "wqe") and not self.rerank:
            raise ValueError(f"{self.qe} needs the windows found by local reranking (rerank=True)")


@dataclass
class Ranking:
    ids: np.ndarray  # best first: all images, or the top k asked for
    scores: np.ndarray
    boxes: dict[int, list[float]]  # image id -> localisation box (pixels), reranked ones only
    # by image id: shares at least one visual word with the (expanded) query. Unmatched images
    # all score 0 in the initial search, so their order says nothing.
    matched: np.ndarray | None = None


class BLCFSearcher:
    """Search over a collection of assignment maps with an inverted index."""

    def __init__(
        self,
        maps: Callable[[int], np.ndarray] | Sequence[np.ndarray],
        image_sizes: np.ndarray,
        inverted: InvertedIndex,
        centre: bool = True,
    ) -> None:
        self._maps = maps
        self.image_sizes = np.asarray(image_sizes)
        self.inverted = inverted
        self.centre = centre

    def map(self, i: int) -> np.ndarray:
        return self._maps(i) if callable(self._maps) else self._maps[i]

    @property
    def vocab_size(self) -> int:
        return self.inverted.vocab_size

    def query_counts(self, views: Sequence[QueryView], mode: str, centre: bool) -> np.ndarray:
        """The query BoW: augmented views are added into one vector (thesis Sec. 2.3.2)."""
        total = np.zeros(self.vocab_size, np.float32)
        for v in views:
            if mode == "gs" or v.region is None:
                weights = centre_prior(v.assignment.shape) if centre else None
            elif mode == "ls":
                weights = v.region.astype(np.float32)
            else:
                weights = distance_weights(v.region)
            total += bow(v.assignment, self.vocab_size, weights)
        return total

    def _image_bow(self, i: int) -> np.ndarray:
        m = self.map(i)
        return bow(m, self.vocab_size, centre_prior(m.shape) if self.centre else None)

    def _expand(self, qvec: np.ndarray, ids: np.ndarray, kind: str, cells: dict) -> np.ndarray:
        w = self.inverted.weight
        if kind == "gqe":
            extra = [self._image_bow(int(i)) for i in ids]
        else:
            maps = [self.map(int(i)) for i in ids]
            win = [cells[int(i)] for i in ids]
            fn = qe.local_expansion_bows if kind == "lqe" else qe.weighted_expansion_bows
            extra = fn(maps, win, self.vocab_size)
        return qe.average_query(qvec, [w(e) for e in extra])

    def search(
        self, views: Sequence[QueryView], config: SearchConfig | None = None, k: int | None = None
    ) -> Ranking:
        """Rank the collection for a query. ``k``: only the best ``k`` ids are ranked (None:
        all); at 1M photos a full sort of the scores costs more than the search itself."""
        cfg = config or SearchConfig()
        need = None
        if k:  # the reranking and QE read their own top lists: rank at least those
            need = max(k, cfg.rerank_config.top_k if cfg.rerank else 0, cfg.qe_top if cfg.qe else 0)
        if not views:
            raise ValueError("no query view to search with")
        counts = self.query_counts(views, cfg.mode, cfg.centre_prior)
        if not counts.any():
            raise ValueError("the query has no visual words")
        qvec = self.inverted.weight(counts)
        scores = self.inverted.scores_vector(self.inverted.prune(qvec, cfg.max_words))
        matched = scores > 0
        order = top_k_order(scores, need)
        cells: dict[int, tuple[int, int, int, int]] = {}
        boxes: dict[int, list[float]] = {}
        if cfg.qe == "gqe" and not (cfg.rerank and cfg.qe_after_rerank):
            qvec = self._expand(qvec, order[: cfg.qe_top], "gqe", cells)
            scores = self.inverted.scores_vector(self.inverted.prune(qvec, cfg.max_words))
            matched |= scores > 0
            order = top_k_order(scores, need)
        if cfg.rerank:
            order, scores, cells = self._rerank(views[0], order, scores, cfg.rerank_config)
            for i, c in cells.items():
                boxes[i] = cell_box_to_pixels(c, tuple(self.image_sizes[i]), self.map(i).shape)
            if cfg.qe is not None and cfg.qe_after_rerank:
                qvec = self._expand(qvec, order[: cfg.qe_top], cfg.qe, cells)
                scores = self.inverted.scores_vector(self.inverted.prune(qvec, cfg.max_words))
                matched |= scores > 0
                order = top_k_order(scores, need)
        return Ranking(order, scores[order], boxes, matched)

    def _rerank(
        self, view: QueryView, order: np.ndarray, scores: np.ndarray, rcfg: RerankConfig
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        reranker = LocalReranker(self.inverted.idf, rcfg)
        shape = view.assignment.shape
        qcells = view.box_cells or (0, 0, shape[1], shape[0])
        qw, qh = view.image_size
        # query aspect ratio in pixels: the box if any, else the whole query image
        if view.box_pixels is not None:
            bx = view.box_pixels
            query_ar = (bx[2] - bx[0]) / max(bx[3] - bx[1], 1e-6)
        else:
            query_ar = qw / qh
        qvecs = reranker.query_vectors(view.assignment, qcells)
        top = order[: rcfg.top_k]
        new_scores = scores.astype(np.float32).copy()
        cells = {}
        for i in top:
            m = self.map(int(i))
            w, h = self.image_sizes[int(i)]
            match = reranker.match(m, qvecs, query_ar, (w / m.shape[1], h / m.shape[0]))
            new_scores[int(i)] = match.score
            cells[int(i)] = match.cells
        # reranked images stay ahead of the rest, sorted by their best window's score
        top_sorted = top[np.argsort(-new_scores[top], kind="stable")]
        rest = order[rcfg.top_k :]
        final = np.concatenate([top_sorted, rest])
        # keep scores monotone: the unranked tail is offset below the reranked head
        if rest.size and top.size:
            tail = new_scores[rest]
            shift = min(float(new_scores[top].min()), float(tail.max())) - float(tail.max())
            new_scores[rest] = tail + shift - 1e-6
        return final, new_scores, cells
