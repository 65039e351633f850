"""Turning a query photo (+ box or mask) into the assignment-map views the searcher needs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from beyondvis.retrieval.features import AssignmentEncoder, LocalFeatureExtractor
from beyondvis.retrieval.search import QueryView, augment_query, make_view


class QueryEncoder:
    def __init__(self, encoder: AssignmentEncoder) -> None:
        self.encoder = encoder

    @classmethod
    def for_index(
        cls, index, device: str = "cpu", extractor: LocalFeatureExtractor | None = None
    ) -> QueryEncoder:
        """Encode queries exactly as the index's images were encoded (same backbone, codebook)."""
        extractor = extractor or LocalFeatureExtractor(index.config.features, device=device)
        return cls(AssignmentEncoder(extractor, index.model.pca, index.model.codebook))

    def views(
        self,
        image: Image.Image,
        box: Sequence[float] | None = None,
        mask: np.ndarray | None = None,
        augment: bool = False,
    ) -> list[QueryView]:
        variants = augment_query(image, box, mask) if augment else [(image, box, mask)]
        return [make_view(self.encoder(im), im.size, b, m) for im, b, m in variants]
