"""A sparse inverted index with tf-idf and cosine similarity (SciPy CSR, one row per word).

Postings hold raw (possibly centre-weighted) term frequencies, and idf and the per-image norms
are derived from them. That keeps ``add`` and shard merging exact: new images change the
document frequencies, so idf and norms are recomputed instead of being baked into the postings.

In memory a posting is an int32 image id and a float32 term frequency (8 bytes): SciPy's CSR
kernels, which a query runs on, have no float16 or uint32 variant, and a gather + bincount in
NumPy over float16 postings measured 10-20x slower than ``csr[words].T @ q``. On disk
(``postings.npz``) a posting is a uint32 id and a float16 term frequency, 6 bytes; float16 keeps
3 significant digits of a term frequency, far below what moves a ranking.

Query cost is proportional to the total length of the posting lists of the query's words, not
to the collection size times the dimension as in dense flat search.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

DISK_TF_DTYPE = np.float16
DISK_ID_DTYPE = np.uint32


class InvertedIndex:
    def __init__(self, postings: sp.spmatrix, tfidf: bool = True) -> None:
        """``postings`` is a (vocab_size, n_images) sparse matrix of term frequencies."""
        self.postings = sp.csr_matrix(postings, dtype=np.float32, copy=True)
        # rounded to what postings.npz keeps, so a loaded index scores exactly like the built one
        self.postings.data = self.postings.data.astype(DISK_TF_DTYPE).astype(np.float32)
        self.tfidf = tfidf
        self._refresh()

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
        index.postings = sp.csr_matrix(
            (
                np.asarray(data, np.float32),
                np.asarray(indices, np.int32),
                np.asarray(indptr, np.int64),
            ),
            shape=(len(indptr) - 1, num_images),
        )
        index.tfidf = tfidf
        if idf is None or norms is None:
            index._refresh()
        else:
            index.idf, index.norms = np.asarray(idf, np.float32), np.asarray(norms, np.float32)
        return index

    @classmethod
    def from_bows(cls, bows: sp.spmatrix, tfidf: bool = True) -> InvertedIndex:
        """Build from a (n_images, vocab_size) BoW matrix."""
        return cls(sp.csr_matrix(bows.T, dtype=np.float32), tfidf=tfidf)

    def disk_arrays(self) -> dict[str, np.ndarray]:
        """The postings as saved: word offsets, uint32 ids, float16 term frequencies."""
        post = self.postings
        return {
            "indptr": post.indptr.astype(np.int64),
            "indices": post.indices.astype(DISK_ID_DTYPE),
            "data": post.data.astype(DISK_TF_DTYPE),
        }

    @property
    def nbytes(self) -> int:
        """Bytes of the posting lists in memory (ids + term frequencies, no word offsets)."""
        return self.postings.indices.nbytes + self.postings.data.nbytes

    @property
    def disk_nbytes(self) -> int:
        """Bytes of the posting lists on disk (uint32 id + float16 tf per posting)."""
        nnz = self.postings.nnz
        return nnz * (np.dtype(DISK_ID_DTYPE).itemsize + np.dtype(DISK_TF_DTYPE).itemsize)

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

    def add(self, bows: sp.spmatrix) -> None:
        """Append images (rows of a (n_new, vocab) BoW matrix) without touching the codebook."""
        if bows.shape[1] != self.vocab_size:
            raise ValueError(f"BoWs have {bows.shape[1]} words, index has {self.vocab_size}")
        new = sp.csr_matrix(bows.T, dtype=np.float32, copy=True)
        new.data = new.data.astype(DISK_TF_DTYPE).astype(np.float32)
        self.postings = sp.hstack([self.postings, new], format="csr")
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
        # Only the query's posting lists are read: rows `words` of the word-major matrix.
        sub = self.postings[words]
        dots = sub.T @ (q[words] * self.idf[words])
        return (np.asarray(dots).ravel() / self.norms).astype(np.float32)

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
