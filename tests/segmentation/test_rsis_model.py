"""RSIS network: ConvLSTM step shapes, decoder shapes per skip mode / depth, the stop rule."""

from __future__ import annotations

import pytest
import torch

from beyondvis.engine import ConfigError
from beyondvis.segmentation.model import RSIS, ConvLSTMCell, RSISModelConfig, create_rsis_model

CHANNELS = [16, 24, 40, 112, 1280]


def fake_maps(batch: int = 2, size: int = 64) -> list[torch.Tensor]:
    return [
        torch.randn(batch, c, size // s, size // s)
        for c, s in zip(CHANNELS, (2, 4, 8, 16, 32), strict=True)
    ]


def test_convlstm_step_shapes_and_state():
    cell = ConvLSTMCell(in_channels=5, hidden=7)
    x = torch.randn(3, 5, 9, 11)
    h, c = cell(x, None)
    assert h.shape == (3, 7, 9, 11) and c.shape == (3, 7, 9, 11)
    h2, c2 = cell(x, (h, c))
    assert h2.shape == h.shape
    assert not torch.allclose(h2, h)  # the previous state changes the output
    assert h.abs().max() <= 1.0  # h = o * tanh(c)


@pytest.mark.parametrize("skip", ["concat", "sum", "mult", "none"])
@pytest.mark.parametrize("layers", [1, 3, 5])
def test_decoder_shapes(skip, layers):
    model = RSIS(RSISModelConfig(hidden=16, num_layers=layers, skip=skip, num_classes=3))
    out = model(fake_maps(), steps=4)
    assert out["mask_logits"].shape == (2, 4, 64, 64)
    assert out["boxes"].shape == (2, 4, 4)
    assert out["class_logits"].shape == (2, 4, 3)
    assert out["stop_logits"].shape == (2, 4)
    assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all()


def test_layer_channels_halve_after_two():
    assert RSISModelConfig(hidden=64, num_layers=5).layer_channels() == [64, 64, 32, 16, 8]


def test_bad_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="skip must be one of"):
        RSISModelConfig(skip="add")
    with pytest.raises(ConfigError, match="num_layers"):
        RSISModelConfig(num_layers=6)


def test_steps_are_recurrent_not_copies():
    torch.manual_seed(0)
    model = RSIS(RSISModelConfig(hidden=16))
    out = model(fake_maps(1), steps=3)
    assert not torch.allclose(out["mask_logits"][0, 0], out["mask_logits"][0, 1])


def test_with_backbone_on_images():
    model = create_rsis_model(backbone="efficientnet_lite0", hidden=8, num_layers=2)
    assert all(not p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert not model.encoder.training  # frozen BatchNorm statistics
    out = model(torch.randn(1, 3, 64, 64), steps=2)
    assert out["mask_logits"].shape == (1, 2, 64, 64)


def _scripted_model(stop_probs: list[list[float]]) -> RSIS:
    """A model whose stop score at step t is stop_probs[b][t]."""
    model = RSIS(RSISModelConfig(hidden=8, num_layers=2))
    real_step = model.step
    counter = {"t": 0}

    def step(skips, state, out_size):
        out, new_state = real_step(skips, state, out_size)
        t = counter["t"]
        counter["t"] += 1
        p = torch.tensor([row[t] for row in stop_probs])
        out["stop_logits"] = torch.logit(p)
        return out, new_state

    model.step = step
    return model


def test_stop_rule_emits_steps_until_the_score_drops():
    model = _scripted_model([[0.9, 0.8, 0.2, 0.9, 0.9], [0.9, 0.9, 0.9, 0.9, 0.1]])
    preds = model.predict(fake_maps(2), max_steps=5, stop_threshold=0.5)
    # image 0 stops at step 3 (0.2 < 0.5) and never restarts; image 1 stops at step 5
    assert [len(p["masks"]) for p in preds] == [2, 4]
    assert torch.allclose(preds[0]["stop_scores"], torch.tensor([0.9, 0.8]))


def test_stop_rule_threshold_and_max_steps():
    model = _scripted_model([[0.4, 0.4, 0.4]])
    assert len(model.predict(fake_maps(1), max_steps=3, stop_threshold=0.5)[0]["masks"]) == 0
    model = _scripted_model([[0.4, 0.4, 0.4]])
    pred = model.predict(fake_maps(1), max_steps=3, stop_threshold=0.3)[0]
    assert len(pred["masks"]) == 3  # never below 0.3: capped by max_steps
    assert pred["masks"].dtype == torch.bool and pred["masks"].shape == (3, 64, 64)
