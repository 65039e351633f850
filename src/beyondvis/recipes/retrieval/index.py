"""FAISS index of embedded recipes (or images), persisted atomically with a format version.

A folder holds ``index.faiss`` (``faiss.serialize_index`` bytes; inner product over
L2-normalised vectors = cosine) and ``meta.json`` (format version, dimension, count, the
SHA-256 of the index bytes, and one metadata dict per vector: id, title, ...). Both files are
written atomically, the index first, so a crash never leaves a meta file describing a
half-written index; a mismatch is detected on load.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from beyondvis.errors import FormatError
from beyondvis.utils import atomic_write_bytes, atomic_write_json
from beyondvis.utils.versioned import read_versioned_json

INDEX_FORMAT_VERSION = 1
KINDS = ("fp16", "flat")


class IndexFormatError(FormatError, ValueError):
    """An index folder is missing, corrupt or of another format version."""


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class EmbeddingIndex:
    """Cosine nearest neighbours over FAISS (``fp16`` scalar quantiser or exact ``flat``)."""

    def __init__(self, index: Any, items: list[dict[str, Any]], kind: str) -> None:
        self.index = index
        self.items = items
        self.kind = kind

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(
        cls, vectors: np.ndarray, items: Sequence[dict[str, Any]], kind: str = "fp16"
    ) -> EmbeddingIndex:
        import faiss

        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) != len(items):
            raise ValueError("need one metadata dict per vector (2-D array)")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        d = vectors.shape[1]
        if kind == "fp16":
            index = faiss.IndexScalarQuantizer(
                d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
        else:
            index = faiss.IndexFlatIP(d)
        if len(vectors):
            index.add(_normalize(vectors))
        return cls(index, list(items), kind)

    # The method names of beyondvis.retrieval.BLCFIndex (train/add/search/save/load/merge/len),
    # so both indexes are driven the same way.
    def train(self, vectors: np.ndarray | None = None) -> EmbeddingIndex:
        """Nothing to fit (flat and fp16 indexes need no training); returns self."""
        return self

    def add(self, vectors: np.ndarray, items: Sequence[dict[str, Any]]) -> None:
        """Append vectors (cosine-normalised here) with one metadata dict each."""
        vectors = np.atleast_2d(np.asarray(vectors))
        if len(vectors) != len(items):
            raise ValueError("need one metadata dict per vector")
        if len(vectors) and vectors.shape[1] != self.dim:
            raise ValueError(f"vector dimension {vectors.shape[1]} != index dimension {self.dim}")
        if len(vectors):
            self.index.add(_normalize(vectors))
        self.items.extend(items)

    def merge(self, other: EmbeddingIndex) -> EmbeddingIndex:
        """Append the vectors and items of ``other`` (same dimension); returns self."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge a {other.dim}-D index into a {self.dim}-D one")
        if len(other):
            self.add(other.index.reconstruct_n(0, len(other)), other.items)
        return self

    def search(self, queries: np.ndarray, k: int = 5) -> list[list[tuple[float, dict[str, Any]]]]:
        """For each query row: up to ``k`` ``(cosine, item)`` pairs, best first."""
        queries = np.atleast_2d(np.asarray(queries))
        if queries.shape[1] != self.dim:
            raise ValueError(f"query dimension {queries.shape[1]} != index dimension {self.dim}")
        if len(self) == 0:
            return [[] for _ in queries]
        scores, ids = self.index.search(_normalize(queries), min(k, len(self)))
        return [
            [(float(s), self.items[int(i)]) for s, i in zip(srow, irow) if i >= 0]
            for srow, irow in zip(scores, ids)
        ]

    def save(self, folder: str | os.PathLike) -> None:
        import faiss

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = faiss.serialize_index(self.index).tobytes()
        atomic_write_bytes(folder / "index.faiss", data)
        atomic_write_json(
            folder / "meta.json",
            {
                "format_version": INDEX_FORMAT_VERSION,
                "kind": self.kind,
                "dim": self.dim,
                "count": len(self),
                "sha256": hashlib.sha256(data).hexdigest(),
                "items": self.items,
            },
            indent=None,
        )

    @classmethod
    def load(cls, folder: str | os.PathLike) -> EmbeddingIndex:
        import faiss

        folder = Path(folder)
        meta_path, index_path = folder / "meta.json", folder / "index.faiss"
        if not meta_path.is_file() or not index_path.is_file():
            raise IndexFormatError(f"{folder}: needs index.faiss and meta.json")
        meta = read_versioned_json(
            meta_path, None, INDEX_FORMAT_VERSION, IndexFormatError, what="embedding index",
            exact=True, fix="rebuild it (beyondvis recipes index)",
        )  # fmt: skip
        data = index_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise IndexFormatError(f"{index_path}: checksum does not match meta.json")
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        if index.ntotal != meta["count"] or index.ntotal != len(meta["items"]):
            raise IndexFormatError(f"{folder}: index holds {index.ntotal} vectors, meta differs")
        return cls(index, meta["items"], meta["kind"])


def arithmetic_query(
    vectors: np.ndarray,
    titles: Sequence[str],
    plus: Sequence[str],
    minus: Sequence[str] = (),
) -> np.ndarray:
    """Embedding arithmetic of the thesis: ``v(a) - v(b) + v(c)`` where ``v(words)`` is the mean
    (normalised) embedding of the items whose title contains all the words of the phrase.

    ``arithmetic_query(emb, titles, plus=["chicken pizza", "salad"], minus=["pizza"])``.
    Raises ValueError naming a phrase that matches no title.
    """
    vectors = _normalize(vectors)
    low = [t.lower() for t in titles]

    def v(phrase: str) -> np.ndarray:
        words = phrase.lower().split()
        rows = [i for i, t in enumerate(low) if all(w in t.split() for w in words)]
        if not rows:
            raise ValueError(f"no title contains {phrase!r}")
        return vectors[rows].mean(0)

    if not plus:
        raise ValueError("need at least one phrase to add")
    q = sum(v(p) for p in plus) - sum((v(m) for m in minus), np.zeros(vectors.shape[1]))
    return _normalize(np.asarray(q)[None])[0]
