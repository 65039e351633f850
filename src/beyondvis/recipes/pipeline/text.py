"""Instruction tokenisation and word vocabularies (shared with recipe generation).

A recipe becomes ``<start> title <eoi> step 1 <eoi> ... step n <eoi> <end>``: the title is the
first "instruction", ``<eoi>`` marks the end of each instruction, words seen fewer than
``min_count`` times in the training recipes become ``<unk>``, and sequences are truncated to
``max_len`` tokens (the thesis keeps 150 words) with ``<end>`` kept last.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from beyondvis.utils import atomic_write_json
from beyondvis.utils.versioned import VersionedFileError, read_versioned_json

PAD, START, END, EOI, UNK = "<pad>", "<start>", "<end>", "<eoi>", "<unk>"
# First word of recipes in another style than the cards' (generation's ``style_start``); an
# input only, never generated.
TEXT_START = "<start_text>"
SPECIAL_TOKENS = (PAD, START, END, EOI, UNK)
VOCAB_FORMAT_VERSION = 1

# Numbers (with fractions/decimals) stay one token; words keep inner apostrophes/hyphens;
# any other non-space character is its own token.
_TOKEN = re.compile(r"\d+(?:[./]\d+)*|[^\W\d_]+(?:['’-][^\W\d_]+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens: ``"Bake 20-25 min."`` -> ``['bake', '20', '-', '25', 'min', '.']``."""
    return _TOKEN.findall(text.lower().replace("’", "'"))


# Singular/plural matching, shared by the mention metrics and the title rule (torch-free).
_IRREGULAR_PLURALS = {"leaves": "leaf", "loaves": "loaf", "halves": "half", "knives": "knife"}


def word_key(word: str) -> str:
    """Matching key shared by a word's singular and plural ("tomatoes"/"tomato" -> "tomato",
    "berries"/"berry" -> "berri", "cheeses"/"cheese" -> "chees"). Not a real lemmatiser: both
    the text and the vocabulary go through it, so only equality of keys matters."""
    w = word.lower()
    w = _IRREGULAR_PLURALS.get(w, w)
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and w.endswith("y"):
        w = w[:-1] + "i"
    return w


class Vocabulary:
    """Word <-> id map with the special tokens first (``<pad>`` = 0)."""

    def __init__(self, words: Iterable[str] = (), specials: Sequence[str] = SPECIAL_TOKENS):
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        self.specials = tuple(specials)
        for w in (*self.specials, *words):
            if w not in self.stoi:
                self.stoi[w] = len(self.itos)
                self.itos.append(w)

    def __len__(self) -> int:
        return len(self.itos)

    def extend(self, words: Iterable[str]) -> list[str]:
        """Append the ``words`` not in the vocabulary yet, after every existing id, and return
        them in order. Ids already given never change, so a model trained on the smaller
        vocabulary warm-starts on the larger one by adding rows (dish names of a weakly
        labelled source, say, that the text recipes use fewer than ``min_count`` times)."""
        added: list[str] = []
        for w in words:
            if w not in self.stoi:
                self.stoi[w] = len(self.itos)
                self.itos.append(w)
                added.append(w)
        return added

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    @property
    def unk_id(self) -> int:
        return self.stoi[UNK]

    def id(self, word: str) -> int:
        return self.stoi.get(word, self.stoi.get(UNK, 0))

    def encode(self, words: Iterable[str]) -> list[int]:
        return [self.id(w) for w in words]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] if 0 <= i < len(self.itos) else UNK for i in ids]

    @classmethod
    def build(
        cls, counts: Counter, min_count: int = 10, specials: Sequence[str] = SPECIAL_TOKENS
    ) -> Vocabulary:
        """Keep words seen at least ``min_count`` times (most frequent first, ties by word)."""
        words = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(words, specials)

    def to_dict(self) -> dict:
        return {
            "format_version": VOCAB_FORMAT_VERSION,
            "specials": list(self.specials),
            "itos": self.itos,
        }

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        data = read_versioned_json(
            path, None, VOCAB_FORMAT_VERSION, what="vocabulary", exact=True,
            fix="rerun beyondvis recipes prepare",
        )  # fmt: skip
        if "itos" not in data:
            raise VersionedFileError(f"{path}: not a vocabulary file (no itos)")
        vocab = cls((), data["specials"])
        for w in data["itos"]:
            if w not in vocab.stoi:
                vocab.stoi[w] = len(vocab.itos)
                vocab.itos.append(w)
        return vocab


def recipe_tokens(title: str, instructions: Sequence[str], max_len: int = 150) -> list[str]:
    """``<start> title <eoi> step <eoi> ... <end>``, at most ``max_len`` tokens, ``<end>`` last."""
    if max_len < 2:
        raise ValueError("max_len must be >= 2 (room for <start> and <end>)")
    body: list[str] = []
    for part in (title, *instructions):
        body.extend(tokenize(part))
        body.append(EOI)
    return [START, *body[: max_len - 2], END]


def count_words(texts: Iterable[str]) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        counts.update(tokenize(text))
    return counts


def build_instruction_vocab(
    recipes: Iterable[tuple[str, Sequence[str]]], min_count: int = 10
) -> Vocabulary:
    """Vocabulary of titles + instructions of the (training) recipes."""
    counts: Counter = Counter()
    for title, steps in recipes:
        counts.update(tokenize(title))
        for step in steps:
            counts.update(tokenize(step))
    return Vocabulary.build(counts, min_count)
