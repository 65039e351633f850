"""Retrieval metrics vs hand-computed rankings, the losses, CCA, the FAISS index."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from beyondvis.recipes.retrieval.cca import fit_cca
from beyondvis.recipes.retrieval.index import EmbeddingIndex, IndexFormatError, arithmetic_query
from beyondvis.recipes.retrieval.losses import (
    bidirectional_triplet_loss,
    contrastive_loss,
    cosine_pair_loss,
    semantic_loss,
)
from beyondvis.recipes.retrieval.metrics import (
    rank_metrics,
    ranks_from_similarity,
    retrieval_metrics,
    subset_evaluation,
)


def test_ranks_hand_computed():
    sim = np.array(
        [
            [0.9, 0.1, 0.2, 0.0],  # true item first -> rank 1
            [0.8, 0.5, 0.7, 0.1],  # 0.8 and 0.7 beat 0.5 -> rank 3
            [0.3, 0.3, 0.3, 0.3],  # all tied: pessimistic -> rank 4
            [0.0, 0.9, 0.1, 0.2],  # 0.9 beats 0.2 -> rank 2
        ]
    )
    assert ranks_from_similarity(sim).tolist() == [1, 3, 4, 2]
    m = rank_metrics(np.array([1, 3, 4, 2]), ks=(1, 2, 5))
    assert m == {"medR": 2.5, "R@1": 0.25, "R@2": 0.5, "R@5": 1.0}
    assert ranks_from_similarity(sim.T).tolist() == [1, 2, 2, 2]
    with pytest.raises(ValueError):
        ranks_from_similarity(np.zeros((2, 3)))


def test_retrieval_metrics_both_directions():
    img = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    rec = np.array([[2.0, 0.1], [0.1, 3.0], [1.0, 0.9]])
    m = retrieval_metrics(img, rec)
    assert m["im2recipe"]["medR"] == 1.0 and m["im2recipe"]["R@1"] == 1.0
    assert m["recipe2im"]["R@1"] == 1.0
    swapped = retrieval_metrics(img, rec[[1, 0, 2]])
    assert swapped["im2recipe"]["R@1"] == pytest.approx(1 / 3)


def test_subset_protocol_small_test_split_uses_all_pairs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    out = subset_evaluation(x, x + 0.01 * rng.normal(size=x.shape), subset_size=1000, n_subsets=10)
    assert out["protocol"] == {"pairs": 30, "subset_size": 30, "n_subsets": 10}
    assert out["im2recipe"]["medR"] == 1.0 and out["im2recipe"]["medR_std"] == 0.0
    part = subset_evaluation(x, rng.normal(size=x.shape), subset_size=10, n_subsets=5)
    assert part["protocol"]["subset_size"] == 10
    assert part["recipe2im"]["medR"] > 1.0


def test_cosine_pair_loss_matches_eq_7_9():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.2]])
    y = torch.tensor([1, -1, -1])
    cos = [1 / math.sqrt(2), 0.0, 1 / math.sqrt(1.04)]
    expected = ((1 - cos[0]) + max(0.0, cos[1] - 0.1) + max(0.0, cos[2] - 0.1)) / 3
    assert cosine_pair_loss(a, b, y, margin=0.1).item() == pytest.approx(expected, rel=1e-5)


def test_semantic_loss_shares_the_classifier():
    clf = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        clf.weight.copy_(torch.eye(3, 2))
    img = torch.tensor([[1.0, 0.0]])
    rec = torch.tensor([[0.0, 1.0]])
    loss = semantic_loss(clf, img, rec, torch.tensor([0]), torch.tensor([1]))
    logits = torch.tensor([1.0, 0.0, 0.0])
    ce = -torch.log_softmax(logits, 0)[0]
    assert loss.item() == pytest.approx(2 * ce.item(), rel=1e-6)


def test_triplet_loss_zero_when_separated_and_hand_computed_otherwise():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert bidirectional_triplet_loss(img, img.clone(), margin=0.5).item() == 0.0
    rec = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # recipe 1 is 45 degrees from both images
    s = 1 / math.sqrt(2)
    # image queries: img0 neg rec1: 0.5 + s - 1; img1 neg rec0: 0.5 + 0 - s -> max(0, .)
    # recipe queries: rec0 neg img1: 0.5 + 0 - 1 -> 0; rec1 neg img0: 0.5 + s - s = 0.5
    expected = ((0.5 + s - 1) + max(0.0, 0.5 - s)) / 2 + (0.0 + 0.5) / 2
    got = bidirectional_triplet_loss(img, rec, margin=0.5, hardest=True).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_contrastive_loss_prefers_aligned_pairs():
    x = torch.eye(4)
    aligned = contrastive_loss(x, x, temperature=0.1)
    shuffled = contrastive_loss(x, x[[1, 0, 3, 2]], temperature=0.1)
    assert aligned.item() < 0.01 < shuffled.item()


def test_cca_recovers_shared_signal():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 2))
    x = np.c_[z @ rng.normal(size=(2, 5)), rng.normal(size=(400, 3))]
    y = np.c_[z @ rng.normal(size=(2, 7)), rng.normal(size=(400, 4))] + 0.05 * rng.normal(
        size=(400, 11)
    )
    cca = fit_cca(x, y, k=3, reg=1e-3)
    assert cca.correlations[0] > 0.95 and cca.correlations[1] > 0.95
    assert cca.correlations[2] < 0.5
    m = retrieval_metrics(cca.transform_y(y[:50])[:, :2], cca.transform_x(x[:50])[:, :2])
    assert m["im2recipe"]["medR"] <= 2


def test_index_roundtrip_search_and_corruption(tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(50, 16)).astype(np.float32)
    items = [{"id": f"r{i}", "title": f"recipe {i}"} for i in range(50)]
    for kind in ("fp16", "flat"):
        index = EmbeddingIndex.build(vecs, items, kind)
        index.save(tmp_path / kind)
        loaded = EmbeddingIndex.load(tmp_path / kind)
        hits = loaded.search(vecs[7] * 3.0, k=3)[0]
        assert hits[0][1]["id"] == "r7" and hits[0][0] == pytest.approx(1.0, abs=1e-3)
        assert len(hits) == 3
    with pytest.raises(ValueError):
        loaded.search(np.zeros((1, 8)), 1)
    (tmp_path / "flat" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexFormatError, match="checksum"):
        EmbeddingIndex.load(tmp_path / "flat")
    with pytest.raises(IndexFormatError):
        EmbeddingIndex.load(tmp_path / "missing")


def test_embedding_arithmetic():
    # axes: chicken, pizza, salad
    vecs = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=np.float32)
    titles = ["Chicken Pizza", "Pizza", "Green Salad", "Chicken Salad"]
    q = arithmetic_query(vecs, titles, plus=["chicken pizza", "salad"], minus=["pizza"])
    best = int(np.argmax(vecs @ q / np.linalg.norm(vecs, axis=1)))
    assert titles[best] == "Chicken Salad"
    with pytest.raises(ValueError, match="sushi"):
        arithmetic_query(vecs, titles, plus=["sushi"])
