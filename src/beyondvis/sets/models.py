"""Set predictors of the image-to-set study (thesis chapter 5, Table 5.1), selectable by name.

Every predictor maps image features to a set of labels and carries its own decoding rule:

=============  ==================================  =============================================
name           training loss                       decoding (how the set is read out)
=============  ==================================  =============================================
ff_bce         BCE                                 sigmoid >= threshold
ff_siou        soft IoU                            sigmoid >= threshold
ff_td          target distribution s/sum(s), CE    labels by decreasing softmax prob. until
                                                   their sum passes threshold (never empty!)
ff_bce_c       BCE + categorical cardinality CE    top-K sigmoid, K = argmax p(K)
ff_siou_c      soft IoU + categorical card. CE     top-K sigmoid, K = argmax p(K)
ff_td_c        target distribution + card. CE      top-K softmax, K = argmax p(K)
ff_bce_dc      BCE + Dirichlet-categorical NLL     top-K sigmoid, K = argmax DC posterior
lstm           per-step CE, teacher forcing        greedy until eos, repeats masked to -inf
lstm_shuffle   as lstm, label order reshuffled     greedy until eos
lstm_set       pooled BCE + eos BCE + L1 card.     greedy until eos
tf             per-step CE, teacher forcing        greedy until eos
tf_shuffle     as tf, label order reshuffled       greedy until eos
tf_set         pooled BCE + eos BCE + L1 card.     greedy until eos
=============  ==================================  =============================================

Predictors are generic in ``(num_labels, max_set_size, feature_dim)`` and accept either a
feature map ``(B, C, H, W)`` or a pooled vector ``(B, C)`` (seen as a 1x1 map), so the recipe
generator can reuse them for ingredient prediction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from beyondvis.registry import Registry
from beyondvis.sets import decoding, losses

IGNORE = -100  # target id of padded steps in sequence losses


@dataclasses.dataclass
class PredictorConfig:
    """Hyperparameters of a set predictor (the study tunes these with Hyperband)."""

    name: str = "ff_bce"
    embed_dim: int = 512  # output channels of the optional 1x1 conv block (0: no conv block)
    hidden_dims: list[int] = dataclasses.field(default_factory=list)  # FF intermediate FC layers
    dropout: float = 0.3
    label_smoothing: float = 0.0  # for the BCE-trained models (ff_bce*, *_set)
    threshold: float = 0.5  # ff_bce / ff_siou probability threshold, ff_td cumulative mass
    hidden_size: int = 512  # LSTM hidden size / transformer width
    tf_layers: int = 2
    tf_heads: int = 4
    lambda_eos: float = 1.0  # *_set: weight of the eos loss
    lambda_card: float = 1.0  # *_c/_dc: cardinality-head loss weight; *_set: L1 penalty weight


SET_MODELS: Registry[SetPredictor] = Registry("set model")  # type: ignore[name-defined]


class FeatureBlock(nn.Module):
    """Optional 1x1 conv (+BN, ReLU, dropout) changing the channel count; maps -> tokens."""

    def __init__(self, feature_dim: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.out_dim = embed_dim if embed_dim > 0 else feature_dim
        if embed_dim > 0:
            self.conv: nn.Module = nn.Sequential(
                nn.Conv2d(feature_dim, embed_dim, kernel_size=1, bias=False),
                nn.BatchNorm2d(embed_dim),
                nn.ReLU(inplace=True),
                nn.Dropout2d(dropout),
            )
        else:
            self.conv = nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, C) -> (B, H*W, D) tokens."""
        if features.ndim == 2:
            features = features[:, :, None, None]
        if features.ndim != 4:
            raise ValueError(
                f"expected features (B, C, H, W) or (B, C), got shape {tuple(features.shape)}"
            )
        x = self.conv(features.float())
        return x.flatten(2).transpose(1, 2)


class SetPredictor(nn.Module):
    """Base: ``forward(features, batch)`` -> loss dict, ``predict(features)`` -> (set, scores)."""

    name: str = ""
    decoding: str = ""
    represents_empty_set: bool = True
    autoregressive: bool = False
    shuffle_labels: bool = False  # the data pipeline reshuffles label order at every load

    def __init__(
        self, num_labels: int, max_set_size: int, feature_dim: int, config: PredictorConfig
    ) -> None:
        super().__init__()
        if num_labels < 1 or max_set_size < 1 or feature_dim < 1:
            raise ValueError(
                f"num_labels ({num_labels}), max_set_size ({max_set_size}) and feature_dim "
                f"({feature_dim}) must all be >= 1"
            )
        self.num_labels = num_labels
        self.max_set_size = max_set_size
        self.feature_dim = feature_dim
        self.config = config
        self.block = FeatureBlock(feature_dim, config.embed_dim, config.dropout)

    def forward(self, features: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        return self.compute_loss(features, batch)

    def compute_loss(
        self, features: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> dict[str, Any]:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(multi-hot prediction (B, N), label scores (B, N) for ranking metrics such as P@K)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "decoding": self.decoding,
            "represents_empty_set": self.represents_empty_set,
        }


# --------------------------------------------------------------------------- feed-forward
class FeedForwardSet(SetPredictor):
    """1x1 conv block -> global average pooling -> FC layers -> label scores (+ cardinality)."""

    def __init__(
        self,
        num_labels: int,
        max_set_size: int,
        feature_dim: int,
        config: PredictorConfig,
        loss: str,
        cardinality: str | None,
    ) -> None:
        super().__init__(num_labels, max_set_size, feature_dim, config)
        if loss not in ("bce", "siou", "td") or cardinality not in (None, "cat", "dc"):
            raise ValueError(f"unknown loss {loss!r} / cardinality {cardinality!r}")
        self.loss_kind = loss
        self.cardinality = cardinality
        layers: list[nn.Module] = [nn.Dropout(config.dropout)]
        width = self.block.out_dim
        for hidden in config.hidden_dims:
            # Intermediate FC layers: FC, dropout, batch norm, ReLU (the study's block).
            layers += [
                nn.Linear(width, hidden),
                nn.Dropout(config.dropout),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
            ]
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_labels)
        self.card_head = nn.Linear(width, max_set_size + 1) if cardinality else None
        # Training-set histogram of set sizes: the Dirichlet-categorical prior counts (kept in
        # the state dict so a checkpoint decodes the same way). Ones until set from the data.
        self.register_buffer("card_prior", torch.ones(max_set_size + 1))

    def set_cardinality_prior(self, counts: torch.Tensor) -> None:
        counts = torch.as_tensor(counts, dtype=torch.float32).flatten()
        if counts.numel() != self.max_set_size + 1:
            raise ValueError(f"need {self.max_set_size + 1} counts, got {counts.numel()}")
        self.card_prior.copy_(counts)

    def _heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = self.mlp(self.block(features).mean(1))
        card = self.card_head(hidden) if self.card_head is not None else None
        return self.classifier(hidden), card

    def _alphas(self, card_logits: torch.Tensor) -> torch.Tensor:
        # Positive Dirichlet concentrations; exp (clamped) lets them reach the scale of the
        # prior counts, which grow with the training-set size.
        return torch.exp(card_logits.clamp(max=30.0))

    def compute_loss(
        self, features: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> dict[str, Any]:
        targets = batch["targets"].float()
        logits, card_logits = self._heads(features)
        if self.loss_kind == "bce":
            label_loss = losses.bce_loss(logits, targets, self.config.label_smoothing)
        elif self.loss_kind == "siou":
            label_loss = losses.soft_iou_loss(logits, targets)
        else:
            label_loss = losses.target_distribution_loss(logits, targets)
        out: dict[str, Any] = {"label_loss": label_loss.mean().detach()}
        total = label_loss.mean()
        if card_logits is not None:
            card = batch["card"].clamp(max=self.max_set_size)
            if self.cardinality == "cat":
                card_loss = losses.cardinality_loss(card_logits, card)
            else:
                card_loss = losses.dirichlet_categorical_loss(
                    self._alphas(card_logits), self.card_prior, card
                )
            out["card_loss"] = card_loss.mean().detach()
            total = total + self.config.lambda_card * card_loss.mean()
        out["loss"] = total
        return out

    @torch.no_grad()
    def label_scores(self, features: torch.Tensor) -> torch.Tensor:
        logits, _ = self._heads(features)
        return torch.softmax(logits, -1) if self.loss_kind == "td" else torch.sigmoid(logits)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, card_logits = self._heads(features)
        scores = torch.softmax(logits, -1) if self.loss_kind == "td" else torch.sigmoid(logits)
        if card_logits is not None:
            if self.cardinality == "cat":
                card_probs = torch.softmax(card_logits, -1)
            else:
                card_probs = losses.dirichlet_categorical_probs(
                    self._alphas(card_logits), self.card_prior
                )
            return decoding.topk_decode(scores, card_probs.argmax(-1)), scores
        if self.loss_kind == "td":
            return decoding.cumulative_decode(scores, self.config.threshold), scores
        return decoding.threshold_decode(scores, self.config.threshold), scores


# --------------------------------------------------------------------------- autoregressive
class _LSTMDecoder(nn.Module):
    """One LSTM layer with soft spatial attention over the feature tokens (Show, Attend & Tell)."""

    def __init__(self, memory_dim: int, vocab: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, hidden)  # labels, eos, start
        self.init_h = nn.Linear(memory_dim, hidden)
        self.init_c = nn.Linear(memory_dim, hidden)
        self.att_memory = nn.Linear(memory_dim, hidden)
        self.att_hidden = nn.Linear(hidden, hidden)
        self.att_score = nn.Linear(hidden, 1)
        self.cell = nn.LSTMCell(hidden + memory_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab)

    def start(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        mean = memory.mean(1)
        return {
            "memory": memory,
            "keys": self.att_memory(memory),
            "h": torch.tanh(self.init_h(mean)),
            "c": torch.tanh(self.init_c(mean)),
        }

    def step(self, state: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per sample (B,), update ``state`` in place, return logits (B, V)."""
        energy = self.att_score(torch.tanh(state["keys"] + self.att_hidden(state["h"])[:, None]))
        weights = torch.softmax(energy, dim=1)  # (B, L, 1) over spatial positions
        context = (weights * state["memory"]).sum(1)
        x = torch.cat([self.embed(tokens), context], dim=-1)
        state["h"], state["c"] = self.cell(x, (state["h"], state["c"]))
        return self.out(self.dropout(state["h"]))

    def teacher_forced(self, memory: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        state = self.start(memory)
        return torch.stack([self.step(state, inputs[:, t]) for t in range(inputs.shape[1])], 1)


class _TransformerDecoder(nn.Module):
    """Transformer decoder layers: causal self-attention + cross-attention to feature tokens."""

    def __init__(
        self,
        memory_dim: int,
        vocab: int,
        width: int,
        layers: int,
        heads: int,
        dropout: float,
        max_steps: int,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"transformer width {width} must be divisible by heads {heads}")
        self.embed = nn.Embedding(vocab + 1, width)
        self.position = nn.Embedding(max_steps, width)
        self.memory_proj = nn.Linear(memory_dim, width) if memory_dim != width else nn.Identity()
        layer = nn.TransformerDecoderLayer(
            width,
            heads,
            dim_feedforward=4 * width,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab)
        self.scale = math.sqrt(width)

    def start(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"memory": self.memory_proj(memory)}

    def teacher_forced(self, memory: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self._run(self.memory_proj(memory), inputs)

    def _run(self, memory: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        steps = inputs.shape[1]
        pos = torch.arange(steps, device=inputs.device)
        x = self.embed(inputs) * self.scale + self.position(pos)[None]
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=inputs.device)
        h = self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True)
        return self.out(self.norm(h))

    def step(self, state: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        # Re-running the (short) prefix keeps the code simple; sets have at most ~20 steps.
        prefix = (
            tokens[:, None]
            if "prefix" not in state
            else torch.cat([state["prefix"], tokens[:, None]], 1)
        )
        state["prefix"] = prefix
        return self._run(state["memory"], prefix)[:, -1]


class AutoregressiveSet(SetPredictor):
    """LSTM / transformer set decoder with an eos token that encodes the set cardinality.

    Output vocabulary: labels 0..N-1 and eos = N; the start token N+1 is input only. Labels
    already produced are masked to -inf at every step, in training and in decoding, so a set
    never repeats a label. ``set_loss`` selects the order-free training of ``*_set``.
    """

    autoregressive = True

    def __init__(
        self,
        num_labels: int,
        max_set_size: int,
        feature_dim: int,
        config: PredictorConfig,
        arch: str,
        set_loss: bool,
    ) -> None:
        super().__init__(num_labels, max_set_size, feature_dim, config)
        self.eos = num_labels
        self.start_token = num_labels + 1
        self.vocab = num_labels + 1
        self.set_loss = set_loss
        memory_dim = self.block.out_dim
        if arch == "lstm":
            self.decoder: nn.Module = _LSTMDecoder(
                memory_dim, self.vocab, config.hidden_size, config.dropout
            )
        elif arch == "tf":
            self.decoder = _TransformerDecoder(
                memory_dim,
                self.vocab,
                config.hidden_size,
                config.tf_layers,
                config.tf_heads,
                config.dropout,
                max_set_size + 1,
            )
        else:
            raise ValueError(f"unknown autoregressive architecture {arch!r}")

    # -- sequences -------------------------------------------------------------------------
    def _teacher_inputs(self, sequence: torch.Tensor, card: torch.Tensor, steps: int):
        """Decoder inputs [start, l1..lK, eos-padding] and targets [l1..lK, eos, ignore]."""
        batch = sequence.shape[0]
        labels = sequence[:, : steps - 1]
        positions = torch.arange(steps - 1, device=sequence.device)[None]
        valid = (positions < card[:, None]) & (labels >= 0)
        labels = torch.where(valid, labels, torch.full_like(labels, self.eos))
        start = torch.full((batch, 1), self.start_token, device=sequence.device, dtype=torch.long)
        inputs = torch.cat([start, labels], 1)
        pad = torch.full((batch, 1), self.eos, device=sequence.device, dtype=torch.long)
        targets = torch.cat([labels, pad], 1)
        step_ids = torch.arange(steps, device=sequence.device)[None]
        targets = torch.where(step_ids > card[:, None], torch.full_like(targets, IGNORE), targets)
        return inputs, targets

    def compute_loss(
        self, features: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> dict[str, Any]:
        memory = self.block(features)
        card = batch["card"].clamp(max=self.max_set_size)
        steps = int(card.max().item()) + 1  # only as many steps as the longest set needs
        if not self.set_loss:
            inputs, targets = self._teacher_inputs(batch["sequence"], card, steps)
            logits = self.decoder.teacher_forced(memory, inputs)
            logits = logits + decoding.repeat_mask(inputs, self.num_labels, self.vocab)
            loss = losses.sequence_ce_loss(logits, targets, IGNORE).mean()
            return {"loss": loss, "ce_loss": loss.detach()}
        targets = batch["targets"].float()
        probs, _ = self._greedy(memory, steps, feed_labels_only=True)
        step_ids = torch.arange(steps, device=probs.device)[None]
        # Pool label probabilities over the steps that should emit labels (step 0 always, so
        # an empty set still pushes every label down where eos must come first).
        pool_mask = ((step_ids < card[:, None]) | (step_ids == 0)).float()
        pooled = (probs[..., : self.num_labels] * pool_mask[..., None]).amax(1)
        label_loss = losses.bce_prob_loss(pooled, targets, self.config.label_smoothing).mean()
        eos = losses.eos_loss(probs[..., self.eos], card).mean()
        card_pen = losses.cardinality_l1_penalty(pooled, targets).mean()
        total = label_loss + self.config.lambda_eos * eos + self.config.lambda_card * card_pen
        parts = {"label_loss": label_loss, "eos_loss": eos, "card_pen": card_pen}
        return {"loss": total, **{k: v.detach() for k, v in parts.items()}}

    def _greedy(
        self, memory: torch.Tensor, steps: int, feed_labels_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding for ``steps`` steps; returns (softmax probs (B,T,V), tokens (B,T)).

        Repeated labels are masked to -inf before the softmax. ``feed_labels_only`` (training
        of ``*_set``) feeds the best *label* even when eos wins, so every step that should
        produce a label sees a prefix of labels, as it will at inference.
        """
        batch = memory.shape[0]
        state = self.decoder.start(memory)
        token = torch.full((batch,), self.start_token, dtype=torch.long, device=memory.device)
        mask = torch.zeros(batch, self.vocab, device=memory.device)
        all_probs, all_tokens = [], []
        for _ in range(steps):
            logits = self.decoder.step(state, token) + mask
            probs = torch.softmax(logits, -1)
            if feed_labels_only:
                token = logits[:, : self.num_labels].argmax(-1)
            else:
                token = logits.argmax(-1)
            is_label = token < self.num_labels
            mask = mask.scatter(
                1,
                token.clamp(max=self.vocab - 1)[:, None],
                torch.where(is_label, float("-inf"), 0.0)[:, None].to(mask.dtype),
            )
            all_probs.append(probs)
            all_tokens.append(token)
        return torch.stack(all_probs, 1), torch.stack(all_tokens, 1)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory = self.block(features)
        probs, tokens = self._greedy(memory, self.max_set_size + 1)
        # Everything after the first eos is discarded; at most max_set_size labels.
        is_eos = tokens == self.eos
        is_eos[:, -1] = True
        after = is_eos.long().cumsum(1) > 0
        kept = torch.where(after, torch.full_like(tokens, self.eos), tokens)
        prediction = decoding.sequence_to_multihot(kept, self.num_labels)
        live = (~after | is_eos & (is_eos.long().cumsum(1) == 1)).float()
        scores = (probs[..., : self.num_labels] * live[..., None]).amax(1)
        return prediction, scores

    @torch.no_grad()
    def decode_sequences(self, features: torch.Tensor) -> list[list[int]]:
        """Predicted label ids in generation order (for inspection and the recipe generator)."""
        memory = self.block(features)
        _, tokens = self._greedy(memory, self.max_set_size + 1)
        out = []
        for row in tokens.tolist():
            seq = []
            for token in row[: self.max_set_size + 1]:
                if token >= self.num_labels or len(seq) == self.max_set_size:
                    break
                seq.append(token)
            out.append(seq)
        return out


# --------------------------------------------------------------------------- registry
def _register_ff(name: str, loss: str, cardinality: str | None, rule: str) -> None:
    def factory(
        num_labels: int, max_set_size: int, feature_dim: int, config: PredictorConfig
    ) -> SetPredictor:
        model = FeedForwardSet(num_labels, max_set_size, feature_dim, config, loss, cardinality)
        model.name, model.decoding = name, rule
        model.represents_empty_set = not (loss == "td" and cardinality is None)
        return model

    SET_MODELS.register(name)(factory)


def _register_ar(name: str, arch: str, set_loss: bool, shuffle: bool) -> None:
    def factory(
        num_labels: int, max_set_size: int, feature_dim: int, config: PredictorConfig
    ) -> SetPredictor:
        model = AutoregressiveSet(num_labels, max_set_size, feature_dim, config, arch, set_loss)
        model.name = name
        model.decoding = "greedy until eos (repeated labels masked)"
        model.shuffle_labels = shuffle
        return model

    SET_MODELS.register(name)(factory)


_register_ff("ff_bce", "bce", None, "sigmoid >= threshold")
_register_ff("ff_siou", "siou", None, "sigmoid >= threshold")
_register_ff("ff_td", "td", None, "cumulative softmax mass > threshold (never empty)")
_register_ff("ff_bce_c", "bce", "cat", "top-K sigmoid, K = argmax categorical")
_register_ff("ff_siou_c", "siou", "cat", "top-K sigmoid, K = argmax categorical")
_register_ff("ff_td_c", "td", "cat", "top-K softmax, K = argmax categorical")
_register_ff("ff_bce_dc", "bce", "dc", "top-K sigmoid, K = argmax Dirichlet-categorical")
_register_ar("lstm", "lstm", set_loss=False, shuffle=False)
_register_ar("lstm_shuffle", "lstm", set_loss=False, shuffle=True)
_register_ar("lstm_set", "lstm", set_loss=True, shuffle=False)
_register_ar("tf", "tf", set_loss=False, shuffle=False)
_register_ar("tf_shuffle", "tf", set_loss=False, shuffle=True)
_register_ar("tf_set", "tf", set_loss=True, shuffle=False)

MODEL_NAMES = SET_MODELS.names()


def create_set_predictor(
    name: str,
    num_labels: int,
    max_set_size: int,
    feature_dim: int,
    config: PredictorConfig | None = None,
    **overrides: Any,
) -> SetPredictor:
    """Build predictor ``name`` (see :data:`SET_MODELS`); ``overrides`` replace config fields."""
    config = dataclasses.replace(config or PredictorConfig(name=name), name=name, **overrides)
    return SET_MODELS.create(name, num_labels, max_set_size, feature_dim, config)
