"""Every model (one test per model, grouped by family) must fit a few samples almost perfectly."""

from __future__ import annotations

import pytest
import torch

from beyondvis.sets import MODEL_NAMES, SetMetrics, create_set_predictor

NUM_LABELS, MAX_SET, FEAT = 5, 3, 16
SETS = [[0, 2], [1], [], [4, 3, 2], [0], [2, 1], [3], [], [1, 4], [0, 3, 1], [4], [2]]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(sets):
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(len(sets), FEAT, 2, 2, generator=gen)
    targets = torch.zeros(len(sets), NUM_LABELS)
    sequence = torch.full((len(sets), MAX_SET), -1)
    for i, labels in enumerate(sets):
        targets[i, labels] = 1.0
        sequence[i, : len(labels)] = torch.tensor(labels, dtype=torch.long)
    batch = {"targets": targets, "card": targets.sum(1).long(), "sequence": sequence}
    return features, batch


def _sets_for(name: str) -> list[list[int]]:
    if name == "ff_td":
        # A softmax cannot say "no label", and the cumulative rule (mass > 0.5) recovers a set
        # from its target distribution 1/k exactly only for k = 1 (k = 2 sits on the threshold,
        # k >= 3 stops early): that weakness is the model's, tested in test_sets_decoding.
        return [s for s in SETS if len(s) == 1]
    if name in ("ff_siou", "ff_siou_c"):
        # Soft IoU with an empty target is 1 - e/(sum p + e): flat, (almost) no gradient, so
        # the sIoU models do not learn to score labels of empty-set images (the thesis' weak
        # sIoU results on NUS-WIDE point the same way); they are fitted on non-empty sets.
        return [s for s in SETS if s]
    return SETS


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_overfits_a_few_samples(name):
    torch.manual_seed(0)
    model = create_set_predictor(
        name,
        NUM_LABELS,
        MAX_SET,
        FEAT,
        embed_dim=32,
        hidden_size=32,
        tf_heads=2,
        tf_layers=1,
        dropout=0.0,
    )
    features, batch = _batch(_sets_for(name))
    # sIoU's gradient vanishes on a saturated false positive (sigmoid ~ 1), so those models
    # need a gentler step to avoid getting stuck there.
    lr, steps = (3e-3, 250) if "siou" in name else (1e-2, 150)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(features, batch)["loss"].backward()
        optimizer.step()
    model.eval()
    pred, scores = model.predict(features)
    metrics = SetMetrics(NUM_LABELS)
    metrics.update(pred, batch["targets"], scores)
    out = metrics.compute()
    assert out["o_f1"] >= 0.95 and out["i_f1"] >= 0.95, (name, out)
