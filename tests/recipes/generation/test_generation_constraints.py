"""Anti-repetition decoding rules on a toy decoder whose plain greedy output loops."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from beyondvis.recipes.generation.config import SpecialTokens
from beyondvis.recipes.generation.constraints import DecodingRules, RuleState, apply_penalty
from beyondvis.recipes.generation.decoding import beam_search, greedy_decode, sample_decode
from beyondvis.recipes.generation.fusion import Condition

PAD, BOS, EOS, EOI = 0, 1, 2, 3
VOCAB = 12
SPECIAL = SpecialTokens(pad=PAD, bos=BOS, eos=EOS, eoi=EOI)


class _State:
    def __init__(self, batch: int) -> None:
        self.last = torch.full((batch,), BOS)

    @property
    def batch_size(self) -> int:
        return self.last.shape[0]

    def repeat_interleave(self, n: int) -> None:
        self.last = self.last.repeat_interleave(n)

    def reorder(self, index: torch.Tensor) -> None:
        self.last = self.last.index_select(0, index)


class LoopingDecoder:
    """Next word depends on the last word only; plain greedy says "4 4 4 ..." to the end
    (like "Whole whole whole wheat"), and a blocked word leads into other loops.

    The favourite successor of each word gets logit 5, a fixed runner-up 3, all others 0, so
    blocking a word still leaves a definite next choice.
    """

    FAVOURITE = {BOS: 4, 4: 4, 5: 6, 6: 7, 7: EOI, EOI: 4, 8: 9, 9: 10, 10: EOI, 11: EOI}
    RUNNER_UP = {BOS: 8, 4: 5, 5: 11, 6: 11, 7: 8, EOI: 8, 8: 11, 9: 11, 10: 11, 11: 5}

    def __init__(self, max_len: int = 40) -> None:
        self.special = SPECIAL
        self.config = SimpleNamespace(max_len=max_len)

    def encode_conditions(self, image_features, ingredient_ids):
        batch = image_features.shape[0]
        return {"image": Condition(tokens=torch.zeros(batch, 1, 1))}

    def start(self, conditions, max_len):
        return _State(next(iter(conditions.values())).tokens.shape[0])

    def step(self, state: _State, words: torch.Tensor) -> torch.Tensor:
        state.last = words[:, -1].clone()
        logits = torch.zeros(words.shape[0], 1, VOCAB)
        for row, w in enumerate(state.last.tolist()):
            logits[row, 0, self.FAVOURITE.get(w, EOI)] = 5.0
            logits[row, 0, self.RUNNER_UP.get(w, 5)] = 3.0
        return logits


def _segments(ids: list[int]) -> list[tuple[int, ...]]:
    out, cur = [], []
    for i in ids:
        if i == EOS:
            break
        if i == EOI:
            out.append(tuple(cur))
            cur = []
        else:
            cur.append(i)
    if cur:
        out.append(tuple(cur))
    return out


def _ngrams(segments, n):
    grams = [seg[i : i + n] for seg in segments for i in range(len(seg) - n + 1)]
    return grams


@pytest.fixture()
def image():
    return torch.zeros(2, 1, 1)


def test_plain_greedy_loops(image):
    out = greedy_decode(LoopingDecoder(), image).sequences()[0]
    assert len(out) == 40 and set(out) == {4}  # never closes its title


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_rules_stop_every_loop(method, image):
    rules = DecodingRules(no_repeat_ngram=3, max_steps=6)
    kwargs = {"rules": rules}
    if method == "greedy":
        out = greedy_decode(LoopingDecoder(), image, **kwargs)
    elif method == "beam":
        out = beam_search(LoopingDecoder(), image, beam_size=3, **kwargs)
    else:
        gen = torch.Generator().manual_seed(0)
        out = sample_decode(LoopingDecoder(), image, top_k=3, generator=gen, **kwargs)
    for seq in out.sequences():
        segs = _segments(seq)
        title, steps = segs[0], [s for s in segs[1:] if s]
        assert len(set(title)) == len(title), f"title repeats a word: {title}"
        assert len(set(segs)) == len(segs), f"a step is repeated: {segs}"
        grams = _ngrams(segs, 3)
        assert len(grams) == len(set(grams)), f"a 3-gram repeats: {segs}"
        assert all(segs), "empty step"
        assert len(steps) <= 6


def test_min_and_max_steps(image):
    out = greedy_decode(LoopingDecoder(), image, rules=DecodingRules(min_steps=2, max_steps=2))
    for seq in out.sequences():
        assert seq[-1] == EOS
        assert len(_segments(seq)) - 1 == 2  # title + exactly 2 steps


def test_rule_state_incremental():
    st = RuleState(DecodingRules(no_repeat_ngram=2), eoi=EOI, eos=EOS)
    for w in [4, 5, EOI, 4]:
        st.push(w)
    assert 5 in st.banned()  # the bigram "4 5" was used in the title
    assert EOS in st.banned()  # not at the end of a step
    st.push(6)
    st.push(EOI)
    assert EOS not in st.banned() and EOI in st.banned()  # no empty step
    clone = st.copy()
    clone.push(9)
    assert st.current == [] and clone.current == [9]


def test_repetition_penalty_and_validation():
    row = [2.0, -2.0, 1.0]
    apply_penalty(row, [0, 1], 2.0)
    assert row == [1.0, -4.0, 1.0]
    with pytest.raises(ValueError):
        DecodingRules(repetition_penalty=0.5)
    with pytest.raises(ValueError):
        DecodingRules(min_steps=3, max_steps=2)


def test_no_immediate_repeat_of_a_content_word():
    free = {EOI, EOS, 9}  # 9 plays a number or punctuation: free to repeat
    st = RuleState(DecodingRules(no_repeat_ngram=0), eoi=EOI, eos=EOS, free_ids=free)
    st.push(4)
    st.push(EOI)  # title "4"
    st.push(5)
    assert 5 in st.banned()  # "stir-fry stir-fry"
    st.push(9)
    assert 9 not in st.banned()
    off = RuleState(
        DecodingRules(no_repeat_ngram=0, no_immediate_repeat=False), eoi=EOI, eos=EOS, free_ids=free
    )
    off.push(4)
    off.push(EOI)
    off.push(5)
    assert 5 not in off.banned()


def test_repeat_window_blocks_a_content_word_within_the_window_of_one_step():
    # "ginger , garlic , ginger": the n-gram rule lets it through, the window does not
    free = {EOI, EOS, 9}  # 9 plays ","
    rules = DecodingRules(no_repeat_ngram=3, repeat_window=4)
    st = RuleState(rules, eoi=EOI, eos=EOS, free_ids=free)
    for t in (4, EOI, 5, 9, 6, 9):  # title "4"; step "5 , 6 ,"
        st.push(t)
    assert {5, 6} <= st.banned() and 9 not in st.banned()
    for t in (7, 8):  # "5 , 6 , 7 8": 5 is now 5 words back, outside the window of 4
        st.push(t)
    assert 5 not in st.banned() and 6 in st.banned()
    st.push(EOI)  # a new step starts with a fresh window
    assert not {5, 6, 7, 8} & st.banned()
    plain = RuleState(DecodingRules(no_repeat_ngram=3), eoi=EOI, eos=EOS, free_ids=free)
    for t in (4, EOI, 5, 9, 6, 9):
        plain.push(t)
    assert 5 not in plain.banned()  # off by default (window 0)
    with pytest.raises(ValueError):
        DecodingRules(repeat_window=-1)


def test_hyphenated_words_are_not_free_but_punctuation_and_numbers_are():
    from beyondvis.recipes.generation.constraints import free_token_ids

    itos = ["<pad>", "stir-fry", "don't", "10", "-", ",", "the", "pork", "1/2"]
    assert {itos[i] for i in free_token_ids(itos)} == {"<pad>", "10", "-", ",", "the", "1/2"}


def test_title_words_are_unique_across_singular_and_plural():
    from beyondvis.recipes.generation.constraints import word_groups

    itos = ["<pad>", "<start>", "<end>", "<eoi>", "egg", "eggs", "and", "tomato", "tomatoes"]
    groups = word_groups(itos)
    assert groups[4] == {5} and groups[8] == {7} and 6 not in groups
    st = RuleState(DecodingRules(word_groups=groups), eoi=EOI, eos=EOS)
    st.push(4)  # "egg"
    assert {4, 5} <= st.banned()  # neither "egg" nor "eggs" again in the title
    st.push(EOI)
    st.push(4)
    assert 5 not in st.banned()  # steps may say "eggs"
