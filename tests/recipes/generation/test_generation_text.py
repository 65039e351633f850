"""Recipe sequences, ingredient de-duplication and special tokens."""

from __future__ import annotations

import pytest
import torch
from helpers_generation import SPECIAL

from beyondvis.recipes.generation import (
    SpecialTokens,
    dedup_ingredient_batch,
    dedup_ingredients,
    encode_recipe,
    split_recipe,
    teacher_forcing_batch,
)

EOI, EOS = SPECIAL.eoi, SPECIAL.eos


def test_encode_recipe_puts_title_first_and_truncates_keeping_eos():
    ids = encode_recipe([5, 6], [[7], [8, 9]], SPECIAL)
    assert ids == [5, 6, EOI, 7, EOI, 8, 9, EOI, EOS]
    assert encode_recipe([5, 6], [[7], [8, 9]], SPECIAL, max_len=4) == [5, 6, EOI, EOS]
    assert split_recipe(ids, SPECIAL) == ([5, 6], [[7], [8, 9]])
    with pytest.raises(ValueError, match="special"):
        encode_recipe([5, EOS], [], SPECIAL)


def test_split_recipe_handles_generated_junk():
    generated = torch.tensor([5, EOI, EOI, 7, 8, EOS, 9, 9])
    assert split_recipe(generated, SPECIAL) == ([5], [[7, 8]])
    assert split_recipe([7, 8], SPECIAL) == ([7, 8], [])  # cut by max_len, no eoi/eos
    assert split_recipe([], SPECIAL) == ([], [])


def test_teacher_forcing_batch_shifts_and_pads():
    inputs, targets = teacher_forcing_batch([[5, 6, EOS], [7, EOS]], SPECIAL)
    assert targets.tolist() == [[5, 6, EOS], [7, EOS, SPECIAL.pad]]
    assert inputs.tolist() == [[SPECIAL.bos, 5, 6], [SPECIAL.bos, 7, SPECIAL.pad]]
    # Whole sequences that start with bos (the tokenizer's form) give the same batch.
    whole = teacher_forcing_batch([[SPECIAL.bos, 5, 6, EOS], [SPECIAL.bos, 7, EOS]], SPECIAL)
    assert whole[0].tolist() == inputs.tolist() and whole[1].tolist() == targets.tolist()
    with pytest.raises(ValueError, match="empty"):
        teacher_forcing_batch([], SPECIAL)


def test_teacher_forcing_batch_other_start_word_is_an_input_only():
    style = 30  # e.g. <start_text>
    inputs, targets = teacher_forcing_batch(
        [[style, 5, 6, EOS], [SPECIAL.bos, 7, EOS]], SPECIAL, starts=(style,)
    )
    assert inputs.tolist() == [[style, 5, 6], [SPECIAL.bos, 7, SPECIAL.pad]]
    assert targets.tolist() == [[5, 6, EOS], [7, EOS, SPECIAL.pad]]  # the same words scored
    # without ``starts`` the word would be a target like any other
    assert teacher_forcing_batch([[style, 5, EOS]], SPECIAL)[1].tolist() == [[style, 5, EOS]]


def test_special_tokens_from_vocab():
    stoi = {"<pad>": 0, "<start>": 1, "<end>": 2, "<eoi>": 3, "salt": 4}
    assert SpecialTokens.from_vocab(stoi) == SpecialTokens(0, 1, 2, 3)
    assert SpecialTokens.from_vocab({**stoi, "<i>": 9}, eoi="<i>").eoi == 9
    with pytest.raises(KeyError, match="<eoi>"):
        SpecialTokens.from_vocab({"<pad>": 0, "<start>": 1, "<end>": 2})
    with pytest.raises(ValueError, match="distinct"):
        SpecialTokens(0, 1, 1, 2)


def test_dedup_keeps_first_occurrence_and_stops_at_eos():
    labels, probs = dedup_ingredients([7, 3, 7, 9, 3, 1, 4], eos_id=1)
    assert labels == [7, 3, 9] and probs is None
    assert dedup_ingredients([0, 5, 0, 5], ignore_ids={0})[0] == [5]
    assert dedup_ingredients([]) == ([], None)


def test_dedup_keeps_the_most_probable_occurrence():
    labels, probs = dedup_ingredients([7, 3, 7, 9], [0.2, 0.5, 0.9, 0.4])
    assert labels == [7, 3, 9]
    assert probs == pytest.approx([0.9, 0.5, 0.4])
    with pytest.raises(ValueError, match="probabilities"):
        dedup_ingredients([1, 2], [0.5])


def test_dedup_merges_labels_of_one_cluster():
    # 5 ("virgin olive oil") and 6 ("olive oil") are one cluster, represented by 6.
    cluster = {5: 6}
    labels, probs = dedup_ingredients([5, 8, 6], [0.3, 0.9, 0.7], cluster_of=cluster)
    assert labels == [6, 8] and probs == pytest.approx([0.7, 0.9])
    assert dedup_ingredients([5, 8, 6], cluster_of=[0, 1, 2, 3, 4, 6, 6, 7, 8])[0] == [5, 8]
    with pytest.raises(ValueError, match="cluster map"):
        dedup_ingredients([12], cluster_of=[0, 1])


def test_dedup_batch_repads_rows():
    ids = torch.tensor([[4, 4, 5, 1, 6], [7, 0, 7, 0, 0], [1, 4, 4, 0, 0]])
    probs = torch.tensor([[0.1, 0.8, 0.5, 0.0, 0.3], [0.6, 0, 0.7, 0, 0], [0.2, 0.9, 0.9, 0, 0]])
    out, out_probs = dedup_ingredient_batch(ids, probs, pad_id=0, eos_id=1)
    assert out.tolist() == [[4, 5, 0, 0, 0], [7, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert torch.allclose(out_probs[0], torch.tensor([0.8, 0.5, 0, 0, 0]))
    assert torch.allclose(out_probs[1], torch.tensor([0.7, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        dedup_ingredient_batch(ids, probs[:, :2], pad_id=0)
