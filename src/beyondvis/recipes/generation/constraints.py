"""Decoding rules that keep a generated recipe from looping, in plain Python (no torch).

A recipe is decoded as ``title <eoi> step 1 <eoi> ... step n <eoi> <eos>``. Small CPU-trained
decoders fall into loops ("Add the water and cook for 5 minutes." thirteen times, "Whole whole
whole wheat"), so every decoding method (greedy, beam, sampling, in PyTorch or ONNX Runtime)
asks a :class:`RuleState` per hypothesis which words it may not emit next:

* **no-repeat n-grams** (``no_repeat_ngram``, default 3): an n-gram of words that occurred in
  any earlier step or earlier in this step may not occur again. N-grams are taken within steps
  (they never span an ``<eoi>``), and closing a step is never blocked by them, so the rule
  cannot force a run-on step;
* **no repeated step**: a step may not be closed when it equals an earlier step (or the title);
* **title words are unique**: the title may not repeat a word;
* **no content word again within a window** (``repeat_window`` words of the same step; 0 =
  off; ``no_immediate_repeat`` is the window of 1 and on by default);
* **no empty step**, at least ``min_steps`` and at most ``max_steps`` steps (``<eos>`` is then
  forced);
* a **repetition penalty** (CTRL-style, Keskar et al. 2019) on content words already used:
  a positive logit is divided by it and a negative one multiplied. Punctuation and function
  words are exempt (:func:`free_token_ids`), otherwise "." and "the" would be penalised.

Rules are state machines fed one id at a time (:meth:`RuleState.push`), so the cost per step is
O(1) in the length of the recipe; :meth:`RuleState.copy` clones one for a beam.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from beyondvis.recipes.pipeline.text import TEXT_START, UNK

# Words the repetition penalty leaves alone: a recipe needs them in every step.
FUNCTION_WORDS = frozenset(
    "a an the and or of to in on at for with into onto over from by until till then it its "
    "is are be as if each all about up out off this that them they you your until while when "
    "about".split()
)


@dataclass(frozen=True)
class DecodingRules:
    """Which anti-repetition rules a decoding applies (see the module docstring).

    ``no_repeat_ngram`` = 0 and ``repetition_penalty`` = 1 switch those off; ``max_steps`` =
    ``None`` leaves the length to ``max_len``.
    """

    no_repeat_ngram: int = 3
    repetition_penalty: float = 1.0
    no_repeat_step: bool = True
    unique_title_words: bool = True
    min_steps: int = 0
    max_steps: int | None = None
    # no content word twice in a row ("stir-fry stir-fry"): a 2-gram the 3-gram blocking allows
    no_immediate_repeat: bool = True
    # no content word again within this many words of the same step or title (0: off), which
    # the n-gram rule lets through when the words between differ: "ginger, garlic, ginger
    # slices", "turn the heat to low, turn to low" (window 6 blocks both)
    repeat_window: int = 0
    # id -> ids of the same word in another form ("egg"/"eggs", :func:`word_groups`), so that
    # unique_title_words also stops "Egg and eggs"; set by the cook model from its vocabulary
    word_groups: Mapping[int, frozenset[int]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.no_repeat_ngram < 0:
            raise ValueError(f"no_repeat_ngram must be >= 0, got {self.no_repeat_ngram}")
        if not self.repetition_penalty >= 1.0:
            raise ValueError(f"repetition_penalty must be >= 1, got {self.repetition_penalty}")
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be >= 0, got {self.min_steps}")
        if self.repeat_window < 0:
            raise ValueError(f"repeat_window must be >= 0, got {self.repeat_window}")
        if self.max_steps is not None and self.max_steps < max(1, self.min_steps):
            raise ValueError(
                f"max_steps must be >= max(1, min_steps), got {self.max_steps} "
                f"(min_steps {self.min_steps})"
            )

    @classmethod
    def off(cls) -> DecodingRules:
        """No rule at all: the plain model decoding (for tests and ablations)."""
        return cls(
            no_repeat_ngram=0,
            no_repeat_step=False,
            unique_title_words=False,
            no_immediate_repeat=False,
        )


def word_groups(itos: Sequence[str]) -> dict[int, frozenset[int]]:
    """For every word id whose singular/plural key (:func:`beyondvis.recipes.pipeline.text.word_key`) is shared with
    other ids, those other ids ("eggs" -> {"egg"}); words alone in their group are left out."""
    from beyondvis.recipes.pipeline.text import word_key

    by_key: dict[str, list[int]] = {}
    for i, w in enumerate(itos):
        if w.isalpha() and not w.startswith("<"):
            by_key.setdefault(word_key(w), []).append(i)
    return {
        i: frozenset(j for j in ids if j != i)
        for ids in by_key.values()
        if len(ids) > 1
        for i in ids
    }


def never_generated_ids(itos: Sequence[str]) -> list[int]:
    """Words a card may not contain: ``<unk>`` and the text-style start word (an input only)."""
    return [i for i, w in enumerate(itos) if w in (UNK, TEXT_START)]


def free_token_ids(itos: Sequence[str]) -> frozenset[int]:
    """Ids exempt from the repetition penalty: punctuation, numbers, specials, function words."""
    return frozenset(
        i
        for i, w in enumerate(itos)
        # "stir-fry" and "don't" are words: only ids without a letter are punctuation/numbers
        if not any(c.isalpha() for c in w) or w.lower() in FUNCTION_WORDS or w.startswith("<")
    )


class RuleState:
    """The rules' memory of one hypothesis; feed it every emitted id with :meth:`push`."""

    __slots__ = (
        "rules",
        "eoi",
        "eos",
        "free",
        "steps_done",
        "current",
        "seen_ngrams",
        "closed_steps",
        "title_words",
        "used",
        "ended",
    )

    def __init__(
        self, rules: DecodingRules, eoi: int, eos: int, free_ids: Iterable[int] = ()
    ) -> None:
        self.rules = rules
        self.eoi = eoi
        self.eos = eos
        self.free = frozenset(free_ids)
        self.steps_done = 0  # closed segments, the title included
        self.current: list[int] = []
        # prefix (n-1 ids) -> ids that completed it somewhere before
        self.seen_ngrams: dict[tuple[int, ...], set[int]] = {}
        self.closed_steps: set[tuple[int, ...]] = set()
        self.title_words: set[int] = set()
        self.used: set[int] = set()
        self.ended = False

    def copy(self) -> RuleState:
        other = RuleState.__new__(RuleState)
        other.rules, other.eoi, other.eos, other.free = self.rules, self.eoi, self.eos, self.free
        other.steps_done = self.steps_done
        other.current = list(self.current)
        other.seen_ngrams = {k: set(v) for k, v in self.seen_ngrams.items()}
        other.closed_steps = set(self.closed_steps)
        other.title_words = set(self.title_words)
        other.used = set(self.used)
        other.ended = self.ended
        return other

    @property
    def in_title(self) -> bool:
        return self.steps_done == 0

    @property
    def instructions_done(self) -> int:
        """Closed instruction steps (the title is not one)."""
        return max(0, self.steps_done - 1)

    def push(self, token: int) -> None:
        if self.ended:
            return
        if token == self.eos:
            self.ended = True
            return
        if token == self.eoi:
            self.closed_steps.add(tuple(self.current))
            self.current = []
            self.steps_done += 1
            return
        n = self.rules.no_repeat_ngram
        if n >= 1 and len(self.current) >= n - 1:
            prefix = tuple(self.current[len(self.current) - (n - 1) :]) if n > 1 else ()
            self.seen_ngrams.setdefault(prefix, set()).add(token)
        if self.in_title:
            self.title_words.add(token)
            if self.rules.word_groups:
                self.title_words |= self.rules.word_groups.get(token, frozenset())
        if token not in self.free:
            self.used.add(token)
        self.current.append(token)

    def forced(self) -> int | None:
        """The only id allowed next, if the rules leave one (``eos`` after ``max_steps``)."""
        limit = self.rules.max_steps
        if limit is not None and not self.current and self.instructions_done >= limit:
            return self.eos
        return None

    def banned(self) -> set[int]:
        """Ids that may not come next (besides what the decoding itself bans)."""
        out: set[int] = set()
        r = self.rules
        n = r.no_repeat_ngram
        if n >= 1 and len(self.current) >= n - 1:
            prefix = tuple(self.current[len(self.current) - (n - 1) :]) if n > 1 else ()
            out |= self.seen_ngrams.get(prefix, set())
        if r.unique_title_words and self.in_title:
            out |= self.title_words
        if r.no_immediate_repeat and self.current and self.current[-1] not in self.free:
            out.add(self.current[-1])
        if r.repeat_window and self.current:
            out.update(t for t in self.current[-r.repeat_window :] if t not in self.free)
        if not self.current:
            out.add(self.eoi)  # no empty title or step
        elif r.no_repeat_step and tuple(self.current) in self.closed_steps:
            out.add(self.eoi)
        # eos only right after a closed step, and only once min_steps steps exist
        if self.current or self.in_title or self.instructions_done < r.min_steps:
            out.add(self.eos)
        return out

    def penalised(self) -> set[int]:
        """Content words already used, for the repetition penalty."""
        return self.used if self.rules.repetition_penalty > 1.0 else set()


def apply_penalty(logits: list[float] | object, ids: Iterable[int], penalty: float) -> None:
    """CTRL repetition penalty in place on one row of logits (a list or a NumPy array)."""
    if penalty <= 1.0:
        return
    for i in ids:
        v = logits[i]  # type: ignore[index]
        logits[i] = v / penalty if v > 0 else v * penalty  # type: ignore[index]


class RowRules:
    """One :class:`RuleState` per decoded row, applied to a (rows, V) batch of scores.

    Written against plain indexing only, so the same object guards a PyTorch tensor
    (``decoding.py``) and a NumPy array (``onnx_cook.py``): the repetition penalty on logits,
    then bans and forced words on log-probabilities; a row whose every word is banned ends.
    ``rules`` None leaves the scores alone.
    """

    def __init__(
        self,
        rules: DecodingRules | None,
        eoi: int,
        eos: int,
        rows: int,
        free_ids: Iterable[int] | None,
        specials: Iterable[int] = (),
    ) -> None:
        self.rules = rules
        self.eos = eos
        free = set(free_ids) if free_ids is not None else {eoi, eos, *specials}
        self.states = (
            [] if rules is None else [RuleState(rules, eoi, eos, free) for _ in range(rows)]
        )

    @classmethod
    def for_tokens(
        cls, rules: DecodingRules | None, special: Any, rows: int, free_ids: Iterable[int] | None
    ) -> RowRules:
        """From an object with ``pad``, ``bos``, ``eos``, ``eoi`` ids (``SpecialTokens`` or the
        ONNX path's ``Special``)."""
        return cls(
            rules, special.eoi, special.eos, rows, free_ids, specials=(special.pad, special.bos)
        )

    def penalise(self, logits):  # noqa: ANN001, ANN201 - a torch tensor or a NumPy array
        if self.rules is None or self.rules.repetition_penalty <= 1.0:
            return logits
        for row, st in enumerate(self.states):
            ids = st.penalised()
            if ids:
                apply_penalty(logits[row], ids, self.rules.repetition_penalty)
        return logits

    def restrict(self, logp):  # noqa: ANN001, ANN201 - a torch tensor or a NumPy array
        neg_inf = float("-inf")
        for row, st in enumerate(self.states):
            if st.ended:
                continue
            forced = st.forced()
            if forced is not None:
                keep = float(logp[row, forced])
                logp[row] = neg_inf
                logp[row, forced] = keep if keep != neg_inf else 0.0
                continue
            banned = st.banned()
            if banned:
                logp[row, sorted(banned)] = neg_inf
            if float(logp[row].max()) == neg_inf:  # everything banned: end the recipe
                logp[row, self.eos] = 0.0
        return logp

    def push(self, words: Iterable[int]) -> None:
        for st, w in zip(self.states, words):
            st.push(int(w))

    def reorder(self, rows: Sequence[int]) -> None:
        if self.states:
            self.states = [self.states[r].copy() for r in rows]
