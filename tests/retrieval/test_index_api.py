"""BLCFIndex and the Recipes I EmbeddingIndex are driven by the same method names."""

import numpy as np

from beyondvis.recipes.retrieval.index import EmbeddingIndex
from beyondvis.retrieval.index import BLCFIndex

METHODS = ("train", "add", "search", "save", "load", "merge", "__len__")


def test_both_indexes_have_the_same_methods():
    for cls in (BLCFIndex, EmbeddingIndex):
        assert all(callable(getattr(cls, m, None)) for m in METHODS), cls


def test_embedding_index_add_and_merge(tmp_path):
    v = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    a = EmbeddingIndex.build(v[:6], [{"i": i} for i in range(6)], "flat").train()
    b = EmbeddingIndex.build(v[6:9], [{"i": i} for i in range(6, 9)], "flat")
    a.merge(b)
    a.add(v[9:], [{"i": 9}])
    assert len(a) == 10 and a.search(v[7], k=1)[0][0][1] == {"i": 7}
    a.save(tmp_path / "e")
    assert len(EmbeddingIndex.load(tmp_path / "e")) == 10
