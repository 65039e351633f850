"""Joint neural embedding of recipes and food images (thesis Figure 8.2).

Recipe side: a bi-LSTM over the word2vec vectors of the ingredients and an LSTM over the
skip-instructions vectors of the steps; both final states are concatenated and projected.
Image side: pooled backbone features (precomputed once, the backbone stays frozen: the photos
are too few to fine-tune a ConvNet) pass through a residual adapter (the trainable "vision"
part of the two-stage schedule) and are projected. A classifier shared by both modalities gives
the semantic regularisation.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence


@dataclasses.dataclass
class JointConfig:
    w2v_dim: int = 64
    step_dim: int = 128
    image_dim: int = 1280
    num_ingredients: int = 0  # vocabulary size (ids 1..n; 0 = padding)
    num_classes: int = 1
    ingr_hidden: int = 128
    instr_hidden: int = 256
    emb_dim: int = 256
    adapter_hidden: int = 512
    dropout: float = 0.1


class JointEmbedding(nn.Module):
    def __init__(self, config: JointConfig, w2v: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        c = config
        self.ingr_embed = nn.Embedding(c.num_ingredients + 1, c.w2v_dim, padding_idx=0)
        if w2v is not None:
            if tuple(w2v.shape) != (c.num_ingredients, c.w2v_dim):
                raise ValueError(
                    f"w2v shape {tuple(w2v.shape)} != ({c.num_ingredients}, {c.w2v_dim})"
                )
            with torch.no_grad():
                self.ingr_embed.weight[1:] = w2v
        self.ingr_embed.weight.requires_grad_(False)  # pretrained word2vec stays fixed
        self.ingr_lstm = nn.LSTM(c.w2v_dim, c.ingr_hidden, batch_first=True, bidirectional=True)
        self.instr_lstm = nn.LSTM(c.step_dim, c.instr_hidden, batch_first=True)
        self.recipe_proj = nn.Sequential(
            nn.Dropout(c.dropout), nn.Linear(2 * c.ingr_hidden + c.instr_hidden, c.emb_dim)
        )
        self.adapter = nn.Sequential(
            nn.Linear(c.image_dim, c.adapter_hidden),
            nn.ReLU(),
            nn.Linear(c.adapter_hidden, c.image_dim),
        )
        nn.init.zeros_(self.adapter[2].weight)  # starts as the identity: stage 1 = frozen vision
        nn.init.zeros_(self.adapter[2].bias)
        self.image_proj = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.image_dim, c.emb_dim))
        self.classifier = nn.Linear(c.emb_dim, c.num_classes)

    # -- encoders ---------------------------------------------------------------------------
    @staticmethod
    def _last_state(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = lstm(packed)
        return torch.cat(list(h), dim=-1)  # (B, hidden * directions)

    def embed_recipe(
        self,
        ingr_ids: torch.Tensor,
        ingr_len: torch.Tensor,
        steps: torch.Tensor,
        steps_len: torch.Tensor,
    ) -> torch.Tensor:
        h_ingr = self._last_state(self.ingr_lstm, self.ingr_embed(ingr_ids), ingr_len)
        h_instr = self._last_state(self.instr_lstm, steps, steps_len)
        return F.normalize(torch.tanh(self.recipe_proj(torch.cat([h_ingr, h_instr], -1))), dim=-1)

    def embed_image(self, features: torch.Tensor) -> torch.Tensor:
        x = features + self.adapter(features)
        return F.normalize(torch.tanh(self.image_proj(x)), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        rec = self.embed_recipe(
            batch["ingr"], batch["ingr_len"], batch["steps"], batch["steps_len"]
        )
        img = self.embed_image(batch["image"])
        return img, rec

    # -- two-stage schedule -----------------------------------------------------------------
    def set_stage(self, stage: int) -> None:
        """Stage 1: vision (adapter) frozen, recipe side + projections + classifier learn.
        Stage 2: recipe side and classifier frozen, vision (adapter + image projection) learns.
        Stage 3: everything but word2vec learns."""
        recipe_side = [self.ingr_lstm, self.instr_lstm, self.recipe_proj, self.classifier]
        vision = [self.adapter]
        for module in (*recipe_side, *vision, self.image_proj):
            module.requires_grad_(stage == 3)
        if stage == 1:
            for m in (*recipe_side, self.image_proj):
                m.requires_grad_(True)
        elif stage == 2:
            for m in (*vision, self.image_proj):
                m.requires_grad_(True)
        elif stage != 3:
            raise ValueError(f"stage must be 1, 2 or 3, got {stage}")
