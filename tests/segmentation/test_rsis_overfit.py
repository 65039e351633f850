"""The whole objective can be minimised: overfit RSIS on a few images (frozen Lite0 features)."""

from __future__ import annotations

import numpy as np
import torch

from beyondvis.backbones import create_backbone
from beyondvis.segmentation.data import collate_targets, normalize
from beyondvis.segmentation.losses import LossWeights, rsis_loss, training_steps
from beyondvis.segmentation.metrics import symmetric_best_dice
from beyondvis.segmentation.model import RSIS, RSISModelConfig


def synthetic(seed: int, size: int = 64):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.3, 0.5, (3, size, size)).astype(np.float32)
    labels = np.zeros((size, size), np.int64)
    n = 2 + seed % 2
    for k in range(n):
        y, x = rng.integers(0, size - 20, 2)
        h, w = rng.integers(12, 20, 2)
        labels[y : y + h, x : x + w] = k + 1
        image[:, y : y + h, x : x + w] = rng.uniform(0, 1, (3, 1, 1))
    labels_t = torch.from_numpy(labels)
    present = [k for k in range(1, n + 1) if (labels == k).any()]
    remap = torch.zeros(n + 1, dtype=torch.long)
    remap[present] = torch.arange(1, len(present) + 1)
    return torch.from_numpy(image), remap[labels_t], torch.zeros(len(present), dtype=torch.long)


def test_overfit_few_images():
    torch.manual_seed(0)
    items = [synthetic(s) for s in range(3)]
    backbone = create_backbone("efficientnet_lite0")
    with torch.no_grad():
        feats = backbone.forward_features(torch.stack([normalize(i[0]) for i in items]))
    t = collate_targets([i[1] for i in items], [i[2] for i in items])
    model = RSIS(RSISModelConfig(hidden=16, num_layers=4, min_channels=16))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    steps = training_steps(t["counts"], None)
    weights = LossWeights(mask=1.0, box=10.0, cls=0.1, stop=0.5)
    first = None
    for _ in range(150):
        out = model(feats, steps=int(steps.max()))
        res = rsis_loss(out, t["masks"], t["counts"], t["boxes"], t["labels"], weights, steps)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        first = first if first is not None else float(res["loss"].detach())
    assert float(res["loss"]) < 0.4 * first
    assert float(res["mask"]) < 0.7  # soft masks; thresholded ones are checked below
    model.eval()
    preds = model.predict(feats, max_steps=6, stop_threshold=0.5)
    for b, pred in enumerate(preds):
        n = int(t["counts"][b])
        assert len(pred["masks"]) == n  # learned when to stop
        gt = t["masks"][b, :n].numpy() > 0.5
        assert symmetric_best_dice(pred["masks"].numpy(), gt) > 0.7
