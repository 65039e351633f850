"""Visual codebook: FAISS k-means on (L2-PCA-L2 transformed) local convolutional features."""

from __future__ import annotations

import faiss
import numpy as np

from beyondvis.retrieval.bow import map_dtype


class Codebook:
    """Centroids and the FAISS index that assigns features to them.

    ``nprobe=None`` assigns exactly (flat search over all words, as in the thesis). With a
    25,000-word codebook that costs cells x 25,000 x D multiply-adds per image, more than the
    backbone on a CPU; ``nprobe=k`` instead searches an inverted file over the words (about
    sqrt(K) coarse cells, k of them visited), an approximate nearest word at a fraction of the
    cost.
    """

    def __init__(self, centroids: np.ndarray, nprobe: int | None = None) -> None:
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.nprobe = nprobe
        d, k = self.centroids.shape[1], self.centroids.shape[0]
        if nprobe is None or k < 1024:
            self._index = faiss.IndexFlatL2(d)
        else:
            nlist = int(np.sqrt(k))
            self._quantizer = faiss.IndexFlatL2(d)  # kept alive: the IVF index refers to it
            self._index = faiss.IndexIVFFlat(self._quantizer, d, nlist)
            self._index.cp.min_points_per_centroid = 1  # trained on the words themselves
            self._index.train(self.centroids)
            self._index.nprobe = nprobe
        self._index.add(self.centroids)

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        size: int,
        iterations: int = 20,
        seed: int = 0,
        max_points_per_centroid: int = 256,
    ) -> Codebook:
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError("k-means needs a non-empty (n, d) array of features")
        if x.shape[0] < size:
            raise ValueError(
                f"cannot fit {size} visual words on {x.shape[0]} features; lower the codebook size"
            )
        kmeans = faiss.Kmeans(
            x.shape[1],
            size,
            niter=iterations,
            seed=seed,
            max_points_per_centroid=max_points_per_centroid,
            verbose=False,
        )
        kmeans.train(x)
        return cls(kmeans.centroids)

    @property
    def size(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def assign(self, features: np.ndarray) -> np.ndarray:
        """Nearest word of every feature; an (h, w, d) map gives an (h, w) assignment map."""
        x = np.asarray(features, dtype=np.float32)
        shape = x.shape[:-1]
        _, ids = self._index.search(np.ascontiguousarray(x.reshape(-1, x.shape[-1])), 1)
        return ids.reshape(shape).astype(map_dtype(self.size))
