"""A sparse inverted index with tf-idf and cosine similarity (one posting list per word).

Postings hold raw (possibly centre-weighted) term frequencies, and idf and the per-image norms
are derived from them. That keeps ``add`` and shard merging exact: new images change the
document frequencies, so idf and norms are recomputed instead of being baked into the postings.

A posting is a uint32 image id and a float16 term frequency: 6 bytes, against 8 for a float32
CSR matrix (SciPy has no float16 sparse kernels, hence the arrays and the gather + bincount
scorer below). float16 keeps 3 significant digits of a term frequency, far below what moves a
ranking; the scores are accumulated in float64.

Query cost is proportional to the total length of the posting lists of the query's words, not
to the collection size times the dimension as in dense flat search.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

TF_DTYPE = np.float16
ID_DTYPE = np.uint32


class InvertedIndex:
    def __init__(self, postings: sp.spmatrix, tfidf: bool = True) -> None:
        """``postings`` is a (vocab_size, n_images) sparse matrix of term frequencies."""
        post = sp.csr_matrix(postings, dtype=np.float32)
        post.sort_indices()
        self._set(post.indptr, post.indices, post.data, post.shape, tfidf)
        self._refresh()

    def _set(self, indptr, indices, data, shape, tfidf: bool) -> None:
        self.indptr = np.asarray(indptr, np.int64)
        self.indices = np.asarray(indices, ID_DTYPE)
        self.data = np.asarray(data, TF_DTYPE)
        self.shape = (int(shape[0]), int(shape[1]))
        self.tfidf = tfidf

    @classmethod
    def from_arrays(
        cls,
        indptr: np.ndarray,
        indices: np.ndarray,
        data: np.ndarray,
        num_images: int,
        tfidf: bool = True,
        idf: np.ndarray | None = None,
        norms: np.ndarray | None = None,
    ) -> InvertedIndex:
        """From word-major CSR arrays (as saved); ``idf``/``norms`` skip their recomputation."""
        index = cls.__new__(cls)
        index._set(indptr, indices, data, (len(indptr) - 1, num_images), tfidf)
        if idf is None or norms is None:
            index._refresh()
        else:
            index.idf, index.norms = np.asarray(idf, np.float32), np.asarray(norms, np.float32)
        return index

    @classmethod
    def from_bows(cls, bows: sp.spmatrix, tfidf: bool = True) -> InvertedIndex:
        """Build from a (n_images, vocab_size) BoW matrix."""
        return cls(sp.csr_matrix(bows.T, dtype=np.float32), tfidf=tfidf)

    @property
    def postings(self) -> sp.csr_matrix:
        """The postings as a float32 (vocab_size, n_images) CSR matrix (a copy)."""
        return sp.csr_matrix(
            (self.data.astype(np.float32), self.indices.astype(np.int64), self.indptr),
            shape=self.shape,
        )

    @property
    def vocab_size(self) -> int:
        return self.shape[0]

    @property
    def num_images(self) -> int:
        return self.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the posting lists (ids + term frequencies), without the word offsets."""
        return self.indices.nbytes + self.data.nbytes

    def _refresh(self) -> None:
        # df = number of images holding each word (length of its posting list)
        lengths = np.diff(self.indptr)
        df = lengths.astype(np.float64)
        n = max(self.num_images, 1)
        if self.tfidf:
            idf = np.log(n / np.maximum(df, 1.0))
            idf[df == 0] = 0.0
        else:
            idf = np.ones(self.vocab_size)
        self.idf = idf.astype(np.float32)
        w = np.repeat(idf**2, lengths) * self.data.astype(np.float64) ** 2
        norms_sq = np.bincount(self.indices, weights=w, minlength=self.num_images)
        self.norms = np.sqrt(norms_sq).astype(np.float32)
        self.norms[self.norms == 0] = 1.0

    def add(self, bows: sp.spmatrix) -> None:
        """Append images (rows of a (n_new, vocab) BoW matrix) without touching the codebook."""
        if bows.shape[1] != self.vocab_size:
            raise ValueError(f"BoWs have {bows.shape[1]} words, index has {self.vocab_size}")
        merged = sp.hstack([self.postings, sp.csr_matrix(bows.T)], format="csr")
        merged.sort_indices()
        self._set(merged.indptr, merged.indices, merged.data, merged.shape, self.tfidf)
        self._refresh()

    def weight(self, counts: np.ndarray) -> np.ndarray:
        """tf-idf weight and L2-normalise a dense query (or database) BoW."""
        vec = np.asarray(counts, dtype=np.float32) * self.idf
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec

    @staticmethod
    def prune(q: np.ndarray, max_words: int | None) -> np.ndarray:
        """Keep the ``max_words`` largest tf-idf weights of a query vector, renormalised.

        The words dropped are those of lowest tf x idf: mostly frequent words, whose long
        posting lists are most of a query's cost while their low idf adds little to a cosine
        (the stop-word lists of text retrieval and of Sivic & Zisserman's Video Google).
        """
        nz = np.flatnonzero(q)
        if max_words is None or nz.size <= max_words:
            return q
        keep = nz[np.argpartition(-q[nz], max_words - 1)[:max_words]]
        out = np.zeros_like(q)
        out[keep] = q[keep]
        norm = float(np.linalg.norm(out))
        return out / norm if norm > 0 else out

    def scores(self, counts: np.ndarray) -> np.ndarray:
        """Cosine similarity of a dense query BoW against every image (dense (n_images,))."""
        return self.scores_vector(self.weight(counts))

    def scores_vector(self, q: np.ndarray) -> np.ndarray:
        """Scores of an already tf-idf weighted, L2-normalised query vector (e.g. after QE)."""
        words = np.flatnonzero(q)
        if words.size == 0:
            return np.zeros(self.num_images, dtype=np.float32)
        # Only the query's posting lists are read: gather them, then one weighted bincount.
        starts, lengths = self.indptr[words], np.diff(self.indptr)[words]
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(self.num_images, dtype=np.float32)
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        pos = offsets + np.arange(total)
        weights = np.repeat((q[words] * self.idf[words]).astype(np.float32), lengths)
        dots = np.bincount(
            self.indices[pos], weights=self.data[pos] * weights, minlength=self.num_images
        )
        return (dots / self.norms).astype(np.float32)

    def search(
        self, counts: np.ndarray, top_k: int | None = None, max_words: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Image ids sorted by decreasing cosine similarity, and their scores."""
        s = self.scores_vector(self.prune(self.weight(counts), max_words))
        if top_k is None or top_k >= s.size:
            order = np.argsort(-s, kind="stable")
        else:
            part = np.argpartition(-s, top_k)[:top_k]
            order = part[np.argsort(-s[part], kind="stable")]
        return order, s[order]
