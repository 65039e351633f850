"""The RSIS network (thesis ch. 6, Fig. 6.1): an encoder and a recurrent ConvLSTM decoder.

The encoder is any :class:`~beyondvis.backbones.Backbone`; its five maps (strides 2..32) are
``F = [f4, f3, f2, f1, f0]`` in the thesis' naming, ``f0`` the deepest. Each used ``f_i`` is
projected by a 1x1 conv to ``S_i``. ConvLSTM layer 0 reads ``S_0``; layer ``i`` reads
``[B2(h_{i-1,t}) | S_i]`` (or the sum / product / nothing of ``S_i``) and its own
``h_{i,t-1}``. The first two layers have ``D`` channels, each later one half of the previous.
A 1x1 conv + sigmoid on the last layer, upsampled to the input size, gives the mask of step
``t``; the box (4), class (C) and stop (1) heads are linear layers on the concatenated
max-pooled hidden states of all layers.

The encoder may be left out (``encoder=None``): the decoder then runs on precomputed feature
maps, which is how the CPU defaults train on a frozen backbone (see ``experiment.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from beyondvis.engine.config import ConfigError

SKIP_MODES = ("concat", "sum", "mult", "none")
MAX_LAYERS = 5  # one ConvLSTM per encoder block (strides 32, 16, 8, 4, 2)


@dataclasses.dataclass
class RSISModelConfig:
    """Decoder shape. ``feature_channels`` are the encoder's channels at strides 2..32."""

    hidden: int = 32  # D: channels of the first two ConvLSTM layers (thesis: 64 CVPPP, 128 VOC)
    num_layers: int = 5  # ConvLSTM layers, deepest first (ablation Table 6.2a: 1..5)
    skip: str = "concat"  # concat | sum | mult | none
    num_classes: int = 1  # object categories (no background class: stop decides "no object")
    kernel_size: int = 3
    min_channels: int = 4  # floor of the halving D, D, D/2, D/4, ... (the mask comes from the last)
    dropout: float = 0.0  # on the pooled state feeding the heads
    feature_channels: list[int] = dataclasses.field(
        default_factory=lambda: [16, 24, 40, 112, 1280]  # EfficientNet-Lite0
    )

    def __post_init__(self) -> None:
        problems = []
        if self.skip not in SKIP_MODES:
            problems.append(f"skip must be one of {SKIP_MODES}, got {self.skip!r}")
        if not 1 <= self.num_layers <= MAX_LAYERS:
            problems.append(f"num_layers must be in 1..{MAX_LAYERS}, got {self.num_layers}")
        if self.hidden < 8:
            problems.append(f"hidden must be >= 8, got {self.hidden}")
        if self.num_classes < 1:
            problems.append(f"num_classes must be >= 1, got {self.num_classes}")
        if len(self.feature_channels) != MAX_LAYERS:
            problems.append(f"feature_channels needs {MAX_LAYERS} entries (strides 2..32)")
        if self.kernel_size % 2 != 1:
            problems.append(f"kernel_size must be odd, got {self.kernel_size}")
        if problems:
            raise ConfigError("invalid RSISModelConfig: " + "; ".join(problems))

    def layer_channels(self) -> list[int]:
        """Hidden channels of each ConvLSTM layer: D, D, D/2, D/4, ... (at least ``min_channels``)."""
        dims = []
        for i in range(self.num_layers):
            dims.append(self.hidden if i < 2 else max(self.min_channels, dims[-1] // 2))
        return dims


class ConvLSTMCell(nn.Module):
    """One ConvLSTM (thesis Eq. 6.1): all four gates from one conv over ``[x | h]``."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(
            in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2
        )
        with torch.no_grad():  # forget-gate bias 1: remember by default early in training
            self.gates.bias.zero_()
            self.gates.bias[hidden : 2 * hidden].fill_(1.0)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden, x.shape[2], x.shape[3])
            state = (zeros, zeros)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class RSIS(nn.Module):
    """Image (or its feature maps) -> ``steps`` predictions of (mask, box, class, stop).

    ``forward`` returns a dict: ``masks`` (B, T, H, W) probabilities at the input size,
    ``boxes`` (B, T, 4) normalised ``x0, y0, x1, y1`` in [0, 1], ``class_logits`` (B, T, C),
    ``stop_logits`` (B, T) (sigmoid = objectness: keep decoding while it is high).
    """

    def __init__(self, config: RSISModelConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        dims = config.layer_channels()
        deep_first = list(reversed(config.feature_channels))[: config.num_layers]
        self.strides = [32 // (2**i) for i in range(config.num_layers)]
        proj, cells = [], []
        for i, (feat_ch, hid) in enumerate(zip(deep_first, dims, strict=True)):
            if i == 0:
                proj_ch, in_ch = hid, hid
            else:
                proj_ch = dims[i - 1]  # sum / mult need S_i to match B2(h_{i-1})
                in_ch = dims[i - 1] * (2 if config.skip == "concat" else 1)
            use_proj = i == 0 or config.skip != "none"
            proj.append(nn.Conv2d(feat_ch, proj_ch, 1) if use_proj else nn.Identity())
            cells.append(ConvLSTMCell(in_ch, hid, config.kernel_size))
        self.proj = nn.ModuleList(proj)
        self.cells = nn.ModuleList(cells)
        self.mask_head = nn.Conv2d(dims[-1], 1, 1)
        with torch.no_grad():  # start from sparse masks (p ~ 0.12): one object covers little
            self.mask_head.bias.fill_(-2.0)
        pooled = sum(dims)
        self.dropout = nn.Dropout(config.dropout)
        self.box_head = nn.Linear(pooled, 4)
        self.class_head = nn.Linear(pooled, config.num_classes)
        self.stop_head = nn.Linear(pooled, 1)
        # Training schedule (curriculum objects, finished epochs, evals without improvement,
        # best val loss) kept as a buffer so checkpoints resume it and DDP broadcasts it.
        self.register_buffer("schedule", torch.tensor([0.0, 0.0, 0.0, float("inf")]))

    def train(self, mode: bool = True) -> RSIS:
        super().train(mode)
        # A frozen encoder keeps its BatchNorm statistics: it stays in eval mode.
        if self.encoder is not None and not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()
        return self

    # ------------------------------------------------------------------ encoder
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone maps at strides 2..32 (the encoder runs frozen unless it requires grad)."""
        if self.encoder is None:
            raise RuntimeError("this RSIS model has no encoder: pass feature maps, not images")
        trainable = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            return list(self.encoder.forward_features(images))

    def project(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``S_i`` for the used layers, deepest first."""
        if len(features) != MAX_LAYERS:
            raise ValueError(
                f"expected {MAX_LAYERS} feature maps (strides 2..32), got {len(features)}"
            )
        deep_first = list(reversed(features))[: self.config.num_layers]
        return [p(f.float()) for p, f in zip(self.proj, deep_first, strict=True)]

    def _skips(
        self, inputs: torch.Tensor | Sequence[torch.Tensor], out_size: tuple[int, int] | None
    ) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Projected skip maps of images or of their 5 feature maps, and the mask size (by
        default the image size: 2x the stride-2 map)."""
        if isinstance(inputs, torch.Tensor):
            out_size = out_size or (inputs.shape[-2], inputs.shape[-1])
            features = self.encode(inputs)
        else:
            features = list(inputs)
            if out_size is None:
                out_size = (2 * features[0].shape[-2], 2 * features[0].shape[-1])
        return self.project(features), out_size

    # ------------------------------------------------------------------ decoder
    def init_state(self) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        return [None] * len(self.cells)

    def step(
        self,
        skips: list[torch.Tensor],
        state: list[tuple[torch.Tensor, torch.Tensor] | None],
        out_size: tuple[int, int],
    ) -> tuple[dict[str, torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
        """One time step: every ConvLSTM layer once, then the four heads."""
        new_state: list[tuple[torch.Tensor, torch.Tensor]] = []
        pooled = []
        h = None
        for i, cell in enumerate(self.cells):
            if i == 0:
                x = skips[0]
            else:
                up = F.interpolate(
                    h, size=skips[i].shape[-2:], mode="bilinear", align_corners=False
                )
                mode = self.config.skip
                if mode == "concat":
                    x = torch.cat([up, skips[i]], dim=1)
                elif mode == "sum":
                    x = up + skips[i]
                elif mode == "mult":
                    x = up * skips[i]
                else:
                    x = up
            h, c = cell(x, state[i])
            new_state.append((h, c))
            pooled.append(h.amax(dim=(2, 3)))
        logits = self.mask_head(h)
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
        z = self.dropout(torch.cat(pooled, dim=1))
        out = {
            "mask_logits": logits[:, 0],
            "boxes": torch.sigmoid(self.box_head(z)),
            "class_logits": self.class_head(z),
            "stop_logits": self.stop_head(z)[:, 0],
        }
        return out, new_state

    def forward(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        steps: int,
        out_size: tuple[int, int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run ``steps`` decoding steps on images (B, 3, H, W) or on their 5 feature maps.

        ``out_size`` is the mask size; by default the image size (2x the stride-2 map).
        """
        skips, out_size = self._skips(inputs, out_size)
        state = self.init_state()
        outs: list[dict[str, torch.Tensor]] = []
        for _ in range(max(1, steps)):
            out, state = self.step(skips, state, out_size)
            outs.append(out)
        return {key: torch.stack([o[key] for o in outs], dim=1) for key in outs[0]}

    @torch.no_grad()
    def predict(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        max_steps: int = 30,
        stop_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        out_size: tuple[int, int] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Decode until the stop score of a step drops below ``stop_threshold``.

        Step ``t`` is emitted only when its objectness ``sigmoid(stop_t) >= stop_threshold``;
        the first step below it ends the sequence for that image (thesis: 0.5 VOC/Cityscapes,
        0.3 CVPPP). Returns one dict per image: ``masks`` (N, H, W) bool, ``probs`` (N, H, W),
        ``boxes`` (N, 4), ``labels`` (N,), ``class_scores`` (N,), ``stop_scores`` (N,).
        """
        skips, out_size = self._skips(inputs, out_size)
        batch = skips[0].shape[0]
        state = self.init_state()
        alive = torch.ones(batch, dtype=torch.bool, device=skips[0].device)
        kept: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(batch)]
        for _ in range(max_steps):
            out, state = self.step(skips, state, out_size)
            stop = torch.sigmoid(out["stop_logits"])
            alive &= stop >= stop_threshold
            if not alive.any():
                break
            probs = torch.sigmoid(out["mask_logits"])
            cls = torch.softmax(out["class_logits"], dim=1)
            score, label = cls.max(dim=1)
            for b in torch.nonzero(alive).flatten().tolist():
                kept[b].append(
                    {
                        "probs": probs[b],
                        "boxes": out["boxes"][b],
                        "labels": label[b],
                        "class_scores": score[b],
                        "stop_scores": stop[b],
                    }
                )
        results = []
        h, w = out_size
        for items in kept:
            if items:
                res = {key: torch.stack([it[key] for it in items]) for key in items[0]}
            else:
                res = {
                    "probs": torch.zeros(0, h, w),
                    "boxes": torch.zeros(0, 4),
                    "labels": torch.zeros(0, dtype=torch.long),
                    "class_scores": torch.zeros(0),
                    "stop_scores": torch.zeros(0),
                }
            res["masks"] = res["probs"] >= mask_threshold
            results.append({k: v.cpu() for k, v in res.items()})
        return results


def create_rsis_model(
    config: RSISModelConfig | None = None,
    backbone: str | None = "efficientnet_lite0",
    pretrained: bool = True,
    weights: str | None = None,
    **overrides,
) -> RSIS:
    """Build an RSIS model; ``backbone=None`` gives a decoder for precomputed feature maps.

    ``overrides`` set :class:`RSISModelConfig` fields (``hidden=64, skip="sum"``). The
    backbone's channel counts replace ``feature_channels``.
    """
    config = dataclasses.replace(config or RSISModelConfig(), **overrides)
    encoder = None
    if backbone is not None:
        from beyondvis.backbones import create_backbone

        encoder = create_backbone(backbone, pretrained=pretrained, weights=weights)
        for p in encoder.parameters():
            p.requires_grad_(False)
        channels = [info.channels for info in encoder.feature_info]
        if channels != list(config.feature_channels):
            config = dataclasses.replace(config, feature_channels=channels)
    return RSIS(config, encoder)


def list_skip_modes() -> list[str]:
    return list(SKIP_MODES)
