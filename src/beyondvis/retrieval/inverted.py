"""A sparse inverted index with tf-idf and cosine similarity (SciPy CSR, one row per word).

Postings hold raw (possibly centre-weighted) term frequencies, and idf and the per-image norms
are derived from them. That keeps ``add`` and shard merging exact: new images change the
document frequencies, so idf and norms are recomputed instead of being baked into the postings.

Query cost is proportional to the total length of the posting lists of the query's words, not
to the collection size times the dimension as in dense flat search.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class InvertedIndex:
    def __init__(self, postings: sp.csr_matrix, tfidf: bool = True) -> None:
        """``postings`` is a (vocab_size, n_images) CSR matrix of term frequencies."""
        self.postings = sp.csr_matrix(postings, dtype=np.float32)
        self.tfidf = tfidf
        self._refresh()

    @classmethod
    def from_bows(cls, bows: sp.csr_matrix, tfidf: bool = True) -> InvertedIndex:
        """Build from a (n_images, vocab_size) BoW matrix."""
        return cls(sp.csr_matrix(bows.T, dtype=np.float32), tfidf=tfidf)

    @property
    def vocab_size(self) -> int:
        return self.postings.shape[0]

    @property
    def num_images(self) -> int:
        return self.postings.shape[1]

    def _refresh(self) -> None:
        # df = number of images holding each word (length of its posting list)
        df = np.diff(self.postings.indptr).astype(np.float64)
        n = max(self.num_images, 1)
        if self.tfidf:
            idf = np.log(n / np.maximum(df, 1.0))
            idf[df == 0] = 0.0
        else:
            idf = np.ones(self.vocab_size)
        self.idf = idf.astype(np.float32)
        squared = self.postings.multiply(self.postings).tocsr()
        norms_sq = squared.T @ (self.idf.astype(np.float64) ** 2)
        self.norms = np.sqrt(norms_sq).astype(np.float32)
        self.norms[self.norms == 0] = 1.0

    def add(self, bows: sp.csr_matrix) -> None:
        """Append images (rows of a (n_new, vocab) BoW matrix) without touching the codebook."""
        if bows.shape[1] != self.vocab_size:
            raise ValueError(f"BoWs have {bows.shape[1]} words, index has {self.vocab_size}")
        self.postings = sp.hstack([self.postings, sp.csr_matrix(bows.T)], format="csr")
        self._refresh()

    def weight(self, counts: np.ndarray) -> np.ndarray:
        """tf-idf weight and L2-normalise a dense query (or database) BoW."""
        vec = np.asarray(counts, dtype=np.float32) * self.idf
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec

    def scores(self, counts: np.ndarray) -> np.ndarray:
        """Cosine similarity of a dense query BoW against every image (dense (n_images,))."""
        return self.scores_vector(self.weight(counts))

    def scores_vector(self, q: np.ndarray) -> np.ndarray:
        """Scores of an already tf-idf weighted, L2-normalised query vector (e.g. after QE)."""
        words = np.flatnonzero(q)
        if words.size == 0:
            return np.zeros(self.num_images, dtype=np.float32)
        # Only the query's posting lists are read: rows `words` of the word-major matrix.
        sub = self.postings[words]
        dots = sub.T @ (q[words] * self.idf[words])
        return (np.asarray(dots).ravel() / self.norms).astype(np.float32)

    def search(self, counts: np.ndarray, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Image ids sorted by decreasing cosine similarity, and their scores."""
        s = self.scores(counts)
        if top_k is None or top_k >= s.size:
            order = np.argsort(-s, kind="stable")
        else:
            part = np.argpartition(-s, top_k)[:top_k]
            order = part[np.argsort(-s[part], kind="stable")]
        return order, s[order]
