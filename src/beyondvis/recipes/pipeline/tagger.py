"""The thesis' learned ingredient-name extractor: a bi-LSTM that scores every word of an
ingredient line (logistic regression per token: is it part of the ingredient name?).

Labels come from the corpus (see :func:`beyondvis.recipes.pipeline.ingredients.label_line`); training
uses the shared engine.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from beyondvis.engine import TrainConfig, Trainer, load_checkpoint, seed_everything
from beyondvis.recipes.pipeline.ingredients import tags_to_name
from beyondvis.recipes.pipeline.text import PAD, UNK, Vocabulary, tokenize


@dataclasses.dataclass
class TaggerConfig:
    embed_dim: int = 64
    hidden: int = 64
    min_word_count: int = 2
    max_tokens: int = 40


class IngredientTagger(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-token logits ``(B, T)`` for padded ``ids`` ``(B, T)``."""
        packed = pack_padded_sequence(
            self.embed(ids), lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return self.out(out).squeeze(-1)


def _pad(seqs: Sequence[Sequence[int]], value: int = 0) -> torch.Tensor:
    width = max(1, max(len(s) for s in seqs))
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def collate_tagged(batch: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    ids = [b[0] for b in batch]
    return {
        "ids": _pad(ids),
        "tags": _pad([b[1] for b in batch]).float(),
        "lengths": torch.tensor([len(s) for s in ids]),
    }


def _mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def tagger_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(batch["ids"], batch["lengths"])
    mask = _mask(batch["lengths"], logits.shape[1])
    return nn.functional.binary_cross_entropy_with_logits(logits[mask], batch["tags"][mask])


@dataclasses.dataclass
class TaggerReport:
    train_lines: int
    heldout_lines: int
    token_accuracy: float
    line_accuracy: float  # predicted name == label name


class TrainedTagger:
    """A tagger with its word vocabulary: ``tagger(lines) -> names``."""

    def __init__(self, model: IngredientTagger, vocab: Vocabulary, max_tokens: int = 40):
        self.model = model.eval()
        self.vocab = vocab
        self.max_tokens = max_tokens

    @torch.no_grad()
    def tag(self, lines: Sequence[str], batch_size: int = 512) -> list[tuple[list[str], list[int]]]:
        out = []
        for start in range(0, len(lines), batch_size):
            toks = [tokenize(line)[: self.max_tokens] for line in lines[start : start + batch_size]]
            batch = collate_tagged([(self.vocab.encode(t), [0] * len(t)) for t in toks])
            probs = torch.sigmoid(self.model(batch["ids"], batch["lengths"]))
            for t, p in zip(toks, probs):
                out.append((t, [int(v > 0.5) for v in p[: len(t)].tolist()]))
        return out

    def __call__(self, lines: Sequence[str]) -> list[str]:
        return [tags_to_name(t, g) for t, g in self.tag(lines)]

    def save(self, path: str | Path) -> None:
        from beyondvis.engine import save_checkpoint

        save_checkpoint(
            path,
            {
                "model": self.model.state_dict(),
                "extra": {
                    "vocab": self.vocab.itos,
                    "embed_dim": self.model.embed.embedding_dim,
                    "hidden": self.model.lstm.hidden_size,
                    "max_tokens": self.max_tokens,
                },
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> TrainedTagger:
        ckpt = load_checkpoint(path)
        extra = ckpt["extra"]
        vocab = Vocabulary(extra["vocab"][2:], specials=(PAD, UNK))
        model = IngredientTagger(len(vocab), extra["embed_dim"], extra["hidden"])
        model.load_state_dict(ckpt["model"])
        return cls(model, vocab, extra["max_tokens"])


def train_tagger(
    examples: Sequence[tuple[list[str], list[int]]],
    out_dir: str | Path,
    config: TaggerConfig | None = None,
    epochs: int = 3,
    heldout_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[TrainedTagger, TaggerReport]:
    """Train on ``(tokens, tags)`` examples; report accuracy on a held-out ``heldout_fraction``."""
    config = config or TaggerConfig()
    if len(examples) < 10:
        raise ValueError(
            f"need at least 10 labelled lines to train the tagger, got {len(examples)}"
        )
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_held = max(1, int(len(order) * heldout_fraction))
    held = [examples[i] for i in order[:n_held]]
    train = [examples[i] for i in order[n_held:]]
    counts: Counter = Counter(t for toks, _ in train for t in toks)
    vocab = Vocabulary.build(counts, config.min_word_count, specials=(PAD, UNK))
    data = [(vocab.encode(t[: config.max_tokens]), list(g[: config.max_tokens])) for t, g in train]
    # Seed before building the model: its initial weights must not depend on whatever used
    # the global RNG earlier in the process.
    seed_everything(seed)
    model = IngredientTagger(len(vocab), config.embed_dim, config.hidden)
    cfg = TrainConfig(
        out_dir=str(out_dir),
        epochs=epochs,
        batch_size=64,
        lr=3e-3,
        seed=seed,
        device="cpu",
        progress=False,
        log_every=100,
    )
    Trainer(model, cfg, data, tagger_step, collate_fn=collate_tagged).fit(resume=False)
    tagger = TrainedTagger(model, vocab, config.max_tokens)
    report = evaluate_tagger(tagger, held)
    report.train_lines = len(train)
    return tagger, report


def evaluate_tagger(
    tagger: TrainedTagger, examples: Sequence[tuple[list[str], list[int]]]
) -> TaggerReport:
    lines = [" ".join(t) for t, _ in examples]
    predicted = tagger.tag(lines)
    right = total = exact = 0
    for (toks, gold), (ptoks, pred) in zip(examples, predicted):
        gold = list(gold[: len(ptoks)])
        right += sum(int(a == b) for a, b in zip(gold, pred))
        total += len(gold)
        exact += int(tags_to_name(ptoks, pred) == tags_to_name(toks, gold))
    return TaggerReport(
        train_lines=0,
        heldout_lines=len(examples),
        token_accuracy=right / max(total, 1),
        line_accuracy=exact / max(len(examples), 1),
    )
