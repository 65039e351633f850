"""Visual codebook: FAISS k-means on (L2-PCA-L2 transformed) local convolutional features."""

from __future__ import annotations

import faiss
import numpy as np

from beyondvis.retrieval.bow import map_dtype


class Codebook:
    def __init__(self, centroids: np.ndarray) -> None:
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self._index = faiss.IndexFlatL2(self.centroids.shape[1])
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
