"""``top_classes``: a backbone's ImageNet top-k of a photo (what ``beyondvis classify`` prints),
on a stand-in backbone whose logits the test chooses."""

from __future__ import annotations

import torch
from PIL import Image

from beyondvis.backbones import imagenet_labels, top_classes


class _Logits:
    """transform/classify as a Backbone has them; the logits favour classes 285, 281, 7."""

    def __init__(self):
        self.seen = None

    def transform(self):
        return lambda image: torch.zeros(3, image.height, image.width)

    def classify(self, x):
        self.seen = x.shape
        logits = torch.zeros(1, 1000)
        logits[0, 285], logits[0, 281], logits[0, 7] = 5.0, 4.0, 3.0
        return logits


def test_top_classes_rank_label_and_round():
    backbone = _Logits()
    out = top_classes(backbone, Image.new("RGB", (8, 6)), k=3)
    assert backbone.seen == (1, 3, 6, 8)  # one transformed image, batched
    assert [p["index"] for p in out] == [285, 281, 7]
    labels = imagenet_labels()
    assert [p["label"] for p in out] == [labels[285], labels[281], labels[7]]
    e = torch.tensor([5.0, 4.0, 3.0]).exp()
    denominator = e.sum() + 997  # the other 997 logits are 0
    assert [p["prob"] for p in out] == [round(float(v / denominator), 4) for v in e]
    assert len(top_classes(backbone, Image.new("RGB", (8, 6)), k=5000)) == 1000


def test_top_classes_moves_the_batch_to_the_device():
    class OnDevice(_Logits):
        def classify(self, x):
            assert x.device.type == "cpu"
            return super().classify(x)

    (best,) = top_classes(OnDevice(), Image.new("RGB", (4, 4)), 1, torch.device("cpu"))
    assert best["index"] == 285
