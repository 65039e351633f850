"""The detector index: reranking order on crafted vectors, QE, the network end to end on tiny
photos (random-init backbone), save/load, fine-tuning and detection weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from beyondvis.backbones import WeightsNotFoundError
from beyondvis.retrieval.detector import (
    DetectorConfig,
    DetectorIndex,
    DetectorNet,
    DetectorSearchConfig,
    FinetuneConfig,
    Postprocess,
    QueryObject,
    build_detector,
    finetune_detector,
    is_detector_index,
    query_class_scores,
)
from beyondvis.retrieval.index import IndexFormatError

TINY = dict(pretrained=False, max_side=64, proposals=12, seed=0)


# ----------------------------------------------------------------------------- crafted index
def crafted_index() -> DetectorIndex:
    """Four photos of 80 x 40 px with 2-channel 2 x 4 maps, IPA set by hand (no network)."""
    idx = DetectorIndex(DetectorConfig(**TINY, classes=["obj"]), net=object())
    idx.post = {f"{s}.{k}": Postprocess("max") for s in ("ipa", "rpa") for k in ("sum", "max")}
    idx.paths = [f"p{i}" for i in range(4)]
    idx.sizes = np.array([[80, 40]] * 4, np.int32)
    ipa = np.array([[1, 0], [0.9, 0.44], [0.6, 0.8], [0, 1]], np.float32)
    idx.ipa = {"sum": ipa.astype(np.float16), "max": ipa.astype(np.float16)}
    maps = []
    for _ in range(4):
        m = np.zeros((2, 2, 4), np.float16)
        m[1] = 0.1
        maps.append(m)
    maps[2][0, 1, 3] = 5.0  # photo 2 holds the object (channel 0) in its bottom-right cell
    idx.fmaps = maps
    props = np.array([[0, 0, 20, 20], [60, 20, 80, 40]], np.float32)
    idx.boxes = [props.copy() for _ in range(4)]
    # class probabilities: photo 3's second proposal is the object for the fine-tuned head
    idx.scores = [np.array([[0.9, 0.1], [0.8, 0.2]], np.float16) for _ in range(4)]
    idx.scores[3] = np.array([[0.9, 0.1], [0.05, 0.95]], np.float16)
    return idx


def test_filtering_ranks_by_ipa_cosine():
    idx = crafted_index()
    hits = idx.search_vectors(np.array([1, 0], np.float32), np.array([1, 0], np.float32),
                              DetectorSearchConfig(rerank=None), k=0)  # fmt: skip
    assert [h.id for h in hits] == [0, 1, 2, 3]
    assert all(h.box is None for h in hits)


def test_ca_sr_reorders_the_top_k_by_the_best_proposal_and_gives_its_box():
    idx = crafted_index()
    q_ipa, q_region = np.array([1, 0], np.float32), np.array([1, 0], np.float32)
    hits = idx.search_vectors(q_ipa, q_region, DetectorSearchConfig(rerank="ca", top_k=3), k=0)
    # photo 2's object cell matches the query region: it jumps to the top with that box;
    # photo 3 was outside the top 3 and stays last, below every reranked score
    assert [h.id for h in hits] == [2, 0, 1, 3]
    assert hits[0].box == [60.0, 20.0, 80.0, 40.0]
    assert hits[0].score == pytest.approx(5 / np.hypot(5, 0.1), rel=1e-3)
    assert hits[3].box is None and hits[3].score < hits[2].score


def test_cs_sr_ranks_by_the_fine_tuned_class_score():
    idx = crafted_index()
    q = np.array([1, 0], np.float32)
    cfg = DetectorSearchConfig(rerank="cs", top_k=4)
    hits = idx.search_vectors(q, q, cfg, query_class=1, k=0)
    assert hits[0].id == 3 and hits[0].box == [60.0, 20.0, 80.0, 40.0]
    assert hits[0].score == pytest.approx(0.95, abs=1e-3)
    with pytest.raises(ValueError, match="fine-tuned"):
        idx.search_vectors(q, q, cfg, query_class=None, k=0)


def test_query_expansion_averages_the_top_n_ipa():
    idx = crafted_index()
    q = np.array([1, 0], np.float32)
    plain = idx.search_vectors(q, q, DetectorSearchConfig(rerank=None), k=0)
    # the expanded query (q + photos 0, 1) tilts towards photo 3's direction
    qe = idx.search_vectors(q, q, DetectorSearchConfig(rerank=None, qe_top=2), k=0)
    assert [h.id for h in plain] == [0, 1, 2, 3]
    expanded = q + idx.ipa["sum"][:2].astype(np.float32).sum(0)
    expected = np.argsort(-(idx.ipa["sum"].astype(np.float32) @ expanded), kind="stable")
    assert [h.id for h in qe] == expected.tolist()
    assert qe[0].score == pytest.approx(
        float(idx.ipa["sum"][expected[0]].astype(np.float32) @ expanded / np.linalg.norm(expanded)),
        rel=1e-3,
    )


# ----------------------------------------------------------------------------- network
def _photos(folder: Path, n: int = 5) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        a = (rng.random((48, 64, 3)) * 60).astype(np.uint8)
        x = 8 + 6 * i
        a[10:34, x : x + 20] = [220, 40 + 30 * i, 30]  # one coloured square per photo
        p = folder / f"photo{i}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths


def test_index_end_to_end_save_load_and_checksums(tmp_path):
    photos = _photos(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    idx = DetectorIndex(DetectorConfig(**TINY))
    idx.train(photos)
    skipped = idx.add([*photos, tmp_path / "broken.jpg", photos[0]])
    assert len(idx) == 5 and [s["path"] for s in skipped] == [str(tmp_path / "broken.jpg")]
    assert all(b.shape[1] == 4 and 1 <= b.shape[0] <= 12 for b in idx.boxes)
    hits = idx.search(photos[2], box=(20, 10, 40, 34), k=3)
    assert len(hits) == 3 and hits[0].box is not None
    idx.save(tmp_path / "idx")
    assert is_detector_index(tmp_path / "idx")
    again = DetectorIndex.load(tmp_path / "idx")
    assert [h.image for h in again.search(photos[2], box=(20, 10, 40, 34), k=3)] == [
        h.image for h in hits
    ]
    with open(tmp_path / "idx" / "vectors.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(IndexFormatError, match="checksum"):
        DetectorIndex.load(tmp_path / "idx")
    # merging a second index of the same network and whitening appends its photos
    other = DetectorIndex(DetectorConfig(**TINY), net=idx.net)
    other.post = idx.post
    other.add(photos[:2])
    assert len(idx.merge(other)) == 5  # same paths: nothing added twice


def test_finetuning_modes_train_the_thesis_layers():
    net = DetectorNet(DetectorConfig(**TINY))
    fc = net.set_trainable("fc")
    assert fc and all(".roi_heads." in n for n in fc)
    everything = net.set_trainable("all")
    assert any(".rpn." in n for n in everything)
    assert any("blocks.2" in n for n in everything)
    assert not any("conv_stem" in n or "blocks.0" in n or "blocks.1." in n for n in everything)


def test_finetuning_raises_the_query_class_score(tmp_path):
    photos = _photos(tmp_path, 2)
    queries = [QueryObject("red", photos[0], (8, 10, 28, 34)),
               QueryObject("orange", photos[1], (14, 10, 34, 34))]  # fmt: skip
    torch.manual_seed(0)
    net = build_detector(DetectorConfig(**TINY))
    net.config.classes = ["orange", "red"]
    net.set_classes(3)  # the fresh classifier fine-tuning starts from: about 1/3 each
    before = query_class_scores(net, queries)
    # 60 steps on the 4 photos (2 queries + mirrors): the classifier first learns that most
    # RoIs are background (the query classes fall), then the query boxes (up to ~0.99)
    cfg = FinetuneConfig(mode="fc", epochs=60, batch_size=4, lr=1e-3, warmup_steps=0,
                         progress=False)  # fmt: skip
    result = finetune_detector(net, queries, cfg, tmp_path / "ft")
    after = query_class_scores(net, queries)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert after.mean() > before.mean() + 0.3, (before, after)
    assert net.config.classes == ["orange", "red"] and not any(
        p.requires_grad for p in net.parameters()
    )


def test_detection_weights_load_from_a_file_and_a_missing_one_is_named(tmp_path, monkeypatch):
    net = build_detector(DetectorConfig(**TINY))
    path = tmp_path / "det.pth"
    torch.save(net.state_dict(), path)
    again = build_detector(DetectorConfig(**{**TINY, "seed": 5}, weights=str(path)))
    for (k, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        build_detector(DetectorConfig(**TINY, weights=str(tmp_path / "none.pth")))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotFoundError, match="fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"):
        build_detector(DetectorConfig(arch="resnet50_fpn", max_side=64))
