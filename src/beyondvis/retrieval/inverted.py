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
to the collection size times the dimension as in dense flat search. A query reads its words'
lists where they lie (SciPy's compiled CSC matrix-vector kernel called on each list, no copy of
the rows) and selects its top k exactly without sorting or partitioning the whole score vector
(``top_k``); at 1M images those two were 5 and 11-14 ms of a 33 ms query (docs/retrieval.md).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

try:  # the kernel behind ``csc_matrix @ vector``; private, hence the public fallback below
    from scipy.sparse._sparsetools import csc_matvec as _csc_matvec
except ImportError:  # pragma: no cover - other SciPy layouts
    _csc_matvec = None

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
        weights = (q[words] * self.idf[words]).astype(np.float32)
        dots = self._accumulate(words, weights)
        dots /= self.norms
        return dots

    def _accumulate(self, words: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """sum_w weights[w] * postings[w] as a dense (n_images,) float32 vector, reading only the
        posting lists of ``words``."""
        post = self.postings
        n = self.num_images
        ptr, ids, tf = post.indptr, post.indices, post.data
        if _csc_matvec is not None and ptr.dtype == ids.dtype and tf.dtype == np.float32:
            out = np.zeros(n, np.float32)
            try:
                for k, w in enumerate(words):
                    if ptr[w + 1] > ptr[w]:
                        # one posting list as a one-column CSC matrix over the shared arrays
                        _csc_matvec(n, 1, ptr[w : w + 2], ids, tf, weights[k : k + 1], out)
                return out
            except (TypeError, ValueError):  # pragma: no cover - a kernel signature change
                pass
        # public path: copy the query's rows, then one sparse matrix-vector product
        dots = post[words].T @ weights
        return np.asarray(dots, np.float32).ravel()

    def search(
        self, counts: np.ndarray, top_k: int | None = None, max_words: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Image ids sorted by decreasing cosine similarity, and their scores."""
        s = self.scores_vector(self.prune(self.weight(counts), max_words))
        order = top_k_order(s, top_k)
        return order, s[order]


def top_k_order(scores: np.ndarray, k: int | None) -> np.ndarray:
    """Ids of the ``k`` largest scores, best first, ties by id (``k`` None: all of them).

    Exactly ``np.argsort(-scores, kind="stable")[:k]``, without partitioning the whole vector:
    the k-th largest of a strided sample (a few times k of ``scores.size``) gives a threshold
    that at least k scores pass, and only those are sorted. 0.3 ms instead of 11 ms for
    argpartition at 1M scores; if the sample's guess lets fewer than k through, a partition
    of the whole vector gives the threshold, so the result never depends on the sample.
    """
    n = scores.size
    if k is None or k >= n:
        return np.argsort(-scores, kind="stable")
    if k <= 0:
        return np.zeros(0, np.int64)
    stride = n // (64 * k)
    if stride >= 4:
        sample = scores[::stride]
        pos = min(sample.size - 1, 4 * k * sample.size // n + 1)  # ~4k expected to pass
        out = _cut(scores, np.partition(sample, sample.size - 1 - pos)[sample.size - 1 - pos], k)
        if out is not None:
            return out
    return _cut(scores, np.partition(scores, n - k)[n - k], k)


def _cut(scores: np.ndarray, thr: float, k: int) -> np.ndarray | None:
    """The stable top k if at least k scores are >= ``thr``, else None."""
    above = np.flatnonzero(scores > thr)
    if above.size >= k:
        return above[np.argsort(-scores[above], kind="stable")[:k]]
    ties = np.flatnonzero(scores == thr)  # in id order, as a stable sort leaves them
    if above.size + ties.size < k:
        return None
    head = above[np.argsort(-scores[above], kind="stable")]
    return np.concatenate([head, ties[: k - above.size]])
