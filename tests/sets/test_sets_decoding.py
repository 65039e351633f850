"""Decoders on crafted probabilities, including the empty set, and repeated-label masking."""

from __future__ import annotations

import torch

from beyondvis.sets import decoding
from beyondvis.sets.models import AutoregressiveSet, PredictorConfig


def test_threshold_decode_can_be_empty():
    probs = torch.tensor([[0.9, 0.5, 0.49], [0.1, 0.2, 0.3]])
    out = decoding.threshold_decode(probs, 0.5)
    assert out.tolist() == [[1, 1, 0], [0, 0, 0]]


def test_cumulative_decode():
    probs = torch.tensor([[0.2, 0.6, 0.2, 0.0], [0.3, 0.5, 0.2, 0.0], [0.1, 0.35, 0.3, 0.25]])
    out = decoding.cumulative_decode(probs, 0.5)
    assert out[0].tolist() == [0, 1, 0, 0]  # 0.6 alone passes 0.5
    assert out[1].tolist() == [1, 1, 0, 0]  # 0.5 does not pass 0.5: 0.3 is added (0.8)
    assert out[2].tolist() == [0, 1, 1, 0]  # 0.35 + 0.3 = 0.65 passes after two labels
    # A flat distribution still yields at least one label: ff_td can never predict {}.
    flat = decoding.cumulative_decode(torch.full((1, 4), 0.25), 0.5)
    assert flat.sum().item() == 3  # 0.25, 0.5 (not past 0.5), 0.75


def test_topk_decode_including_zero():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.8, 0.7, 0.6], [0.3, 0.2, 0.1]])
    out = decoding.topk_decode(scores, torch.tensor([2, 0, 5]))
    assert out.tolist() == [[0, 1, 1], [0, 0, 0], [1, 1, 1]]


def test_repeat_mask_blocks_previous_labels_not_eos():
    num_labels, vocab = 4, 5  # eos = 4, start = 5
    tokens = torch.tensor([[5, 2, 0, 4]])
    mask = decoding.repeat_mask(tokens, num_labels, vocab)
    blocked = torch.isinf(mask[0])
    assert blocked[0].tolist() == [False] * 5  # after start: nothing used yet
    assert blocked[1].tolist() == [False, False, True, False, False]
    assert blocked[2].tolist() == [True, False, True, False, False]
    assert blocked[3].tolist() == [True, False, True, False, False]  # eos input masks nothing
    assert not blocked[:, 4].any()


def test_sequence_to_multihot():
    seqs = torch.tensor([[1, 3, 4, 4], [4, 0, 0, 4], [-1, -1, -1, -1]])
    out = decoding.sequence_to_multihot(seqs, 4)
    assert out.tolist() == [[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]]


class _ScriptedDecoder(torch.nn.Module):
    """Always prefers label 0, then label 1, ...: only the repeat mask stops repetition."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def start(self, memory):
        return {}

    def step(self, state, tokens):
        return self.logits.expand(tokens.shape[0], -1).clone()


def _scripted_model(step_logits, max_set_size=3):
    model = AutoregressiveSet(3, max_set_size, 4, PredictorConfig(embed_dim=0), "lstm", False)
    model.decoder = _ScriptedDecoder(torch.tensor([step_logits]))
    return model.eval()


def test_greedy_decoding_masks_repeats_and_stops_at_eos():
    # Label 0 best, then 1, eos (index 3) third, label 2 last: masking forces 0, 1, then eos.
    model = _scripted_model([5.0, 4.0, -1.0, 3.0])
    pred, scores = model.predict(torch.zeros(2, 4))
    assert pred.tolist() == [[1, 1, 0], [1, 1, 0]]
    assert model.decode_sequences(torch.zeros(1, 4)) == [[0, 1]]
    # Eos first -> the empty set.
    empty = _scripted_model([0.0, 0.0, 0.0, 9.0])
    assert empty.predict(torch.zeros(1, 4))[0].sum().item() == 0
    # Never eos: stops after max_set_size labels, each label at most once.
    full = _scripted_model([3.0, 2.0, 1.0, -9.0], max_set_size=2)
    assert full.decode_sequences(torch.zeros(1, 4)) == [[0, 1]]
