"""Evaluation measures of thesis chapter 9.

* perplexity of the instruction decoder (corpus-level and mean per-recipe);
* ingredient-set metrics from TP/FP/FN accumulated over a whole split (Pascal VOC style):
  IoU, F1, P@K and cardinality error come from ``beyondvis.sets.metrics``; added here are
  per-ingredient F1 and the mean predicted set size (Tables 9.1, 9.2, Figure 9.3);
* precision/recall of the ingredients mentioned in generated instructions against the reference
  ingredients (Table 9.3 right).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from beyondvis.recipes.pipeline.text import word_key
from beyondvis.sets.metrics import SetMetrics


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


class IngredientSetMetrics(SetMetrics):
    """The image-to-set metrics of ``beyondvis.sets`` plus the chapter-9 extras.

    Inherited (same counts, same definitions): global ``iou`` = TP / (TP + FP + FN) and ``o_f1``
    = 2TP / (2TP + FP + FN) from counts summed over the split, ``card_err``, ``p@K`` (pass
    ``scores`` to :meth:`update`; the K values are ``topk``). Added: ``f1`` (the thesis' name
    for ``o_f1``), micro ``precision``/``recall``, ``card_err_std``, the mean predicted set size
    ``pred_size`` (Table 9.2) and :meth:`per_ingredient_f1` (Figure 9.3 right).
    """

    def __init__(self, num_labels: int, topk: Sequence[int] = (1, 5, 10, 15, 20)) -> None:
        if num_labels < 1:
            raise ValueError("num_labels must be >= 1")
        super().__init__(num_labels, topk=topk)

    def per_ingredient_f1(self) -> np.ndarray:
        """F1 of each ingredient; NaN for one never present nor predicted (nothing to score).

        (``c_f1`` counts those as 1, as the image-to-set study does; a per-ingredient plot
        should leave them out instead.)
        """
        denom = 2 * self.tp + self.fp + self.fn
        return np.where(denom > 0, 2 * self.tp / np.maximum(denom, 1), np.nan)

    def compute(self) -> dict[str, float]:
        out = super().compute()
        tp, fp, fn = int(self.tp.sum()), int(self.fp.sum()), int(self.fn.sum())
        pred = np.asarray(self.pred_card, dtype=float)
        errors = np.abs(pred - np.asarray(self.true_card, dtype=float))
        out.update(
            f1=out["o_f1"],
            precision=tp / (tp + fp) if tp + fp else 0.0,
            recall=tp / (tp + fn) if tp + fn else 0.0,
            card_err_std=float(errors.std()),
            pred_size=float(pred.mean()),
            pred_size_std=float(pred.std()),
        )
        return out


# ---------------------------------------------------------- ingredients named in instructions
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

    def __init__(
        self, matcher: IngredientMatcher | Callable[[Sequence[str]], Iterable[str]]
    ) -> None:
        # Any words -> ingredient labels function works, e.g. the Recipes I vocabulary's own
        # matcher: ``lambda words: vocab.find_in_text(" ".join(words))``.
        self.find = matcher.find if isinstance(matcher, IngredientMatcher) else matcher
        self.hits = 0
        self.mentioned = 0
        self.reference = 0
        self.precisions: list[float] = []
        self.recalls: list[float] = []

    def update(self, words: Sequence[str], reference: Iterable[str]) -> set[str]:
        """Score one recipe; returns the ingredients found in ``words``."""
        ref = set(reference)
        found = set(self.find(words))
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
