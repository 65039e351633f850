"""Ingredient word2vec (gensim): each recipe's reduced ingredient names form one "sentence",
every name (``olive_oil``) is one word. Vectors are stored as ``.npy`` aligned with the
ingredient vocabulary (no pickles), row ``i`` = ``vocab.names[i]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def train_ingredient_word2vec(
    ingredient_lists: Sequence[Sequence[str]],
    names: Sequence[str],
    dim: int = 64,
    epochs: int = 10,
    seed: int = 0,
    workers: int = 1,
) -> np.ndarray:
    """Skip-gram vectors for ``names`` (rows in that order; names never seen get zeros)."""
    import logging

    from gensim.models import Word2Vec

    logging.getLogger("gensim").setLevel(logging.WARNING)  # per-epoch INFO lines are noise
    sentences = [list(s) for s in ingredient_lists if len(s) > 0]
    if not sentences:
        raise ValueError("no ingredient lists to train word2vec on")
    window = max(len(s) for s in sentences)  # the whole list is context: order is arbitrary
    model = Word2Vec(
        sentences,
        vector_size=dim,
        window=window,
        min_count=1,
        sg=1,
        epochs=epochs,
        seed=seed,
        workers=workers,
    )
    out = np.zeros((len(names), dim), dtype=np.float32)
    for i, name in enumerate(names):
        if name in model.wv:
            out[i] = model.wv[name]
    return out


def save_vectors(path: str | os.PathLike, vectors: np.ndarray) -> None:
    from beyondvis.utils import atomic_write

    with atomic_write(path, "wb") as fh:
        np.save(fh, vectors.astype(np.float32))


def load_vectors(path: str | os.PathLike) -> np.ndarray:
    return np.load(Path(path), allow_pickle=False)
