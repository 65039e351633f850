"""Visual codebook: FAISS k-means on (L2-PCA-L2 transformed) local convolutional features."""

from __future__ import annotations

import logging

import faiss
import numpy as np

from beyondvis.retrieval.bow import map_dtype

log = logging.getLogger(__name__)
MIN_POINTS_PER_WORD = 39  # FAISS' own threshold for a well-fitted centroid


def capped_size(size: int, num_features: int) -> int:
    """The codebook size that ``num_features`` local features can support (at least 1)."""
    return max(1, min(int(size), int(num_features) // MIN_POINTS_PER_WORD))


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
        progress: bool = False,
    ) -> Codebook:
        """FAISS k-means, one iteration per call so that a long fit can show progress.

        ``size`` is capped at ``len(features) // MIN_POINTS_PER_WORD``: FAISS needs about 39
        points per centroid for stable centroids (below that it warns and produces empty or
        duplicate words), and a 25,000-word codebook on the 60 photos of a small folder would
        be mostly noise. The cap is logged.
        """
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError("k-means needs a non-empty (n, d) array of features")
        cap = capped_size(size, x.shape[0])
        if cap < size:
            log.warning(
                "codebook size capped at %d words (asked %d): only %d local features to fit it "
                "on, and each word needs >= %d of them",
                cap,
                size,
                x.shape[0],
                MIN_POINTS_PER_WORD,
            )
        kmeans = faiss.Kmeans(
            x.shape[1],
            cap,
            niter=1,
            seed=seed,
            max_points_per_centroid=max_points_per_centroid,
            min_points_per_centroid=1,  # the cap above already keeps enough points per word
            verbose=False,
        )
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=iterations, desc=f"k-means ({cap} words)", unit="it", leave=False)
        centroids = None
        for _ in range(max(1, iterations)):
            # the same seed each call: FAISS subsamples the same points; the previous centroids
            # are the starting point, so this equals one run of ``iterations`` iterations
            kmeans.train(x, init_centroids=centroids)
            centroids = kmeans.centroids.copy()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return cls(centroids)

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
