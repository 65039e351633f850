"""The Backbone contract every image model in beyondvis follows.

A backbone gives five feature maps at strides 2, 4, 8, 16 and 32 (for FPN-style heads and
instance search), the last of them pooled into one vector (for retrieval, set prediction and
recipes), ImageNet logits (to prove the weights are real) and the preprocessing its weights
were trained with, so callers never guess mean/std or resize rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map: its stride w.r.t. the input and its channel count."""

    stride: int
    channels: int


@dataclass(frozen=True)
class PreprocessConfig:
    """How images must be prepared for a backbone's weights (values on a 0..1 scale)."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"  # a torchvision InterpolationMode name
    crop_pct: float = 0.875  # eval: resize the short side to input_size / crop_pct, centre-crop


class Backbone(nn.Module):
    """Base class; subclasses set the attributes and implement ``forward_features``/``classify``.

    ``feature_map`` and ``forward`` default to the last map of ``forward_features``; subclasses
    override ``feature_map`` to skip keeping the intermediate maps alive.
    """

    name: str
    num_features: int
    feature_info: list[FeatureInfo]
    preprocess: PreprocessConfig

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transform(
        self, train: bool = False, size: int | None = None
    ) -> Callable[[Image.Image], torch.Tensor]:
        """Return ``PIL RGB -> normalised CHW float tensor`` for this backbone's weights.

        Eval resizes the short side to ``size / crop_pct`` and centre-crops ``size`` (the usual
        ImageNet protocol); train uses a random resized crop and a horizontal flip.
        """
        return build_transform(self.preprocess, train=train, size=size)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={self.num_features}"


def build_transform(
    cfg: PreprocessConfig, train: bool = False, size: int | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    size = int(size or cfg.input_size)
    interpolation = T.InterpolationMode(cfg.interpolation)
    normalize = T.Normalize(cfg.mean, cfg.std)
    if train:
        steps = [
            T.RandomResizedCrop(size, interpolation=interpolation),
            T.RandomHorizontalFlip(),
        ]
    else:
        steps = [
            T.Resize(int(round(size / cfg.crop_pct)), interpolation=interpolation),
            T.CenterCrop(size),
        ]
    return T.Compose([*steps, T.ToTensor(), normalize])
