"""Evaluation measures of thesis chapter 9.

* perplexity of the instruction decoder (corpus-level and mean per-recipe);
* ingredient-set metrics from TP/FP/FN accumulated over a whole split (Pascal VOC style):
  IoU, F1, per-ingredient F1, cardinality error and mean predicted set size (Tables 9.1, 9.2);
* precision@K of ranked ingredient scores (Figure 9.3);
* precision/recall of the ingredients mentioned in generated instructions against the reference
  ingredients (Table 9.3 right).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor


# --------------------------------------------------------------------------------- perplexity
def perplexity(nll_sum: float, num_words: int) -> float:
    """exp(mean negative log-likelihood per word)."""
    if num_words <= 0:
        raise ValueError("perplexity needs at least one word")
    return math.exp(nll_sum / num_words)


class PerplexityMeter:
    """Accumulates word NLL over batches.

    ``corpus`` = exp(total NLL / total words); ``per_recipe`` = mean over recipes of
    exp(recipe NLL / recipe words), the variant the original inverse-cooking code reports.
    """

    def __init__(self) -> None:
        self.nll_sum = 0.0
        self.num_words = 0
        self.recipe_ppl_sum = 0.0
        self.num_recipes = 0

    def update(self, logits: Tensor, targets: Tensor, pad_id: int) -> None:
        """``logits`` (B, T, V), ``targets`` (B, T) with ``pad_id`` where no word is scored."""
        nll = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), targets, ignore_index=pad_id, reduction="none"
        )  # (B, T), 0 at padding
        counts = (targets != pad_id).sum(dim=1)
        row_nll = nll.sum(dim=1)
        has_words = counts > 0
        self.nll_sum += float(row_nll.sum())
        self.num_words += int(counts.sum())
        self.recipe_ppl_sum += float(torch.exp(row_nll[has_words] / counts[has_words]).sum())
        self.num_recipes += int(has_words.sum())

    def compute(self) -> dict[str, float]:
        if not self.num_recipes:
            raise ValueError("no words seen")
        return {
            "ppl": perplexity(self.nll_sum, self.num_words),
            "ppl_per_recipe": self.recipe_ppl_sum / self.num_recipes,
        }


# ------------------------------------------------------------------------- ingredient sets
def to_multi_hot(label_lists: Iterable[Iterable[int]], num_classes: int) -> Tensor:
    """[[3, 5], [1]] -> (N, C) bool; duplicates count once."""
    rows = list(label_lists)
    out = torch.zeros(len(rows), num_classes, dtype=torch.bool)
    for i, labels in enumerate(rows):
        idx = torch.as_tensor(list(labels), dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= num_classes):
            raise ValueError(f"label outside [0, {num_classes}) in row {i}")
        out[i, idx] = True
    return out


class SetMetrics:
    """Accumulates predicted vs true ingredient sets over a split.

    Global IoU = TP / (TP + FP + FN) and F1 = 2TP / (2TP + FP + FN) from the summed counts;
    per-ingredient F1 from per-class counts (NaN for an ingredient neither predicted nor present);
    cardinality error = |#predicted - #true| per image (mean and std), and the predicted size.
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.num_classes = num_classes
        self.tp = np.zeros(num_classes, dtype=np.int64)
        self.fp = np.zeros(num_classes, dtype=np.int64)
        self.fn = np.zeros(num_classes, dtype=np.int64)
        self.card_errors: list[np.ndarray] = []
        self.pred_sizes: list[np.ndarray] = []

    def update(self, pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> None:
        """Multi-hot (N, C) predictions and targets (use :func:`to_multi_hot` for label lists)."""
        pred = np.asarray(torch.as_tensor(pred).cpu(), dtype=bool)
        target = np.asarray(torch.as_tensor(target).cpu(), dtype=bool)
        if pred.shape != target.shape or pred.ndim != 2 or pred.shape[1] != self.num_classes:
            raise ValueError(
                f"expected (N, {self.num_classes}) arrays, got {pred.shape} and {target.shape}"
            )
        self.tp += (pred & target).sum(axis=0)
        self.fp += (pred & ~target).sum(axis=0)
        self.fn += (~pred & target).sum(axis=0)
        pred_size = pred.sum(axis=1)
        self.card_errors.append(np.abs(pred_size - target.sum(axis=1)))
        self.pred_sizes.append(pred_size)

    def per_class_f1(self) -> np.ndarray:
        denom = 2 * self.tp + self.fp + self.fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, 2 * self.tp / np.maximum(denom, 1), np.nan)

    def compute(self) -> dict[str, float]:
        if not self.card_errors:
            raise ValueError("no samples seen")
        tp, fp, fn = int(self.tp.sum()), int(self.fp.sum()), int(self.fn.sum())
        card = np.concatenate(self.card_errors).astype(float)
        size = np.concatenate(self.pred_sizes).astype(float)

        def ratio(num: float, den: float) -> float:
            return num / den if den else 0.0

        return {
            "iou": ratio(tp, tp + fp + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn),
            "card_error": float(card.mean()),
            "card_error_std": float(card.std()),
            "pred_size": float(size.mean()),
            "pred_size_std": float(size.std()),
            "num_samples": float(card.size),
        }


def precision_at_k(scores: Tensor, target: Tensor, k: int) -> float:
    """Mean over images of (#true ingredients among the ``k`` highest scores) / k."""
    if scores.shape != target.shape or scores.dim() != 2:
        raise ValueError(f"expected equal (N, C) shapes, got {scores.shape} and {target.shape}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in [1, {scores.shape[1]}]")
    if scores.shape[0] == 0:
        raise ValueError("no samples")
    top = scores.topk(k, dim=1).indices
    hits = target.bool().gather(1, top).sum(dim=1).float()
    return float((hits / k).mean())


# ---------------------------------------------------------- ingredients named in instructions
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


_PUNCT = re.compile(r"^\W+|\W+$")


class IngredientMatcher:
    """Finds which vocabulary ingredients a tokenized text mentions.

    ``vocabulary`` maps each ingredient label to its surface forms (several for a merged
    cluster), or is a plain list of labels (each its own form). Multi-word forms are written
    with spaces or underscores ("olive_oil"). Matching is longest-form-first and
    non-overlapping, so "olive oil" counts as olive oil, not also as oil.
    """

    def __init__(self, vocabulary: Mapping[str, Iterable[str]] | Iterable[str]) -> None:
        if not isinstance(vocabulary, Mapping):
            vocabulary = {label: [label] for label in vocabulary}
        self._forms: dict[tuple[str, ...], str] = {}
        for label, forms in vocabulary.items():
            for form in [label, *forms]:
                key = self._normalise(re.split(r"[\s_]+", form.strip()))
                if key:
                    self._forms.setdefault(key, label)
        if not self._forms:
            raise ValueError("empty ingredient vocabulary")
        self._max_words = max(len(k) for k in self._forms)

    @staticmethod
    def _normalise(words: Sequence[str]) -> tuple[str, ...]:
        out = (word_key(_PUNCT.sub("", w)) for w in words)
        return tuple(w for w in out if w)

    def find(self, words: Sequence[str]) -> set[str]:
        """Labels mentioned in ``words`` (a token list; punctuation tokens are ignored)."""
        norm = self._normalise(words)
        found: set[str] = set()
        i = 0
        while i < len(norm):
            for n in range(min(self._max_words, len(norm) - i), 0, -1):
                label = self._forms.get(norm[i : i + n])
                if label is not None:
                    found.add(label)
                    i += n
                    break
            else:
                i += 1
        return found


class MentionMetrics:
    """Precision/recall of ingredients named in generated instructions (Table 9.3 right).

    recall = share of reference ingredients the instructions mention; precision = share of the
    mentioned ingredients that are in the reference. Reported from counts summed over the split
    (``precision``/``recall``) and as means over recipes (``*_per_recipe``; recipes with nothing
    mentioned / no reference are left out of the respective mean).
    """

    def __init__(self, matcher: IngredientMatcher) -> None:
        self.matcher = matcher
        self.hits = 0
        self.mentioned = 0
        self.reference = 0
        self.precisions: list[float] = []
        self.recalls: list[float] = []

    def update(self, words: Sequence[str], reference: Iterable[str]) -> set[str]:
        """Score one recipe; returns the ingredients found in ``words``."""
        ref = set(reference)
        found = self.matcher.find(words)
        hits = len(found & ref)
        self.hits += hits
        self.mentioned += len(found)
        self.reference += len(ref)
        if found:
            self.precisions.append(hits / len(found))
        if ref:
            self.recalls.append(hits / len(ref))
        return found

    def compute(self) -> dict[str, float]:
        return {
            "precision": self.hits / self.mentioned if self.mentioned else 0.0,
            "recall": self.hits / self.reference if self.reference else 0.0,
            "precision_per_recipe": float(np.mean(self.precisions)) if self.precisions else 0.0,
            "recall_per_recipe": float(np.mean(self.recalls)) if self.recalls else 0.0,
        }
