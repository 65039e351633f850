"""ResNet-50/101 and VGG-16 on torchvision's architectures, with offline weights.

Weights come from ``weights=PATH`` or torchvision's own cache file in the torch hub directory;
nothing is downloaded. ``pretrained=False`` gives random initialisation (tests, speed runs).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from beyondvis.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    FeatureInfo,
    PreprocessConfig,
)
from beyondvis.backbones.weights import find_torchvision_weights, load_state_dict_file

# torchvision's IMAGENET1K_V1 recipe: resize 256, centre crop 224, bilinear, ImageNet mean/std.
TORCHVISION_PREPROCESS = PreprocessConfig(
    input_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    interpolation="bilinear",
    crop_pct=224 / 256,
)


def _load_torchvision(
    name: str,
    builder: Callable[..., nn.Module],
    weights_enum: models.WeightsEnum,
    pretrained: bool,
    weights: str | os.PathLike | None,
) -> tuple[nn.Module, Path | None]:
    model = builder(weights=None)
    path = None
    if pretrained or weights is not None:
        path = find_torchvision_weights(name, weights_enum.url, weights)
        try:
            model.load_state_dict(load_state_dict_file(path), strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{name}: weights file {str(path)!r} does not fit: {exc}") from exc
    return model.eval(), path


class ResNetBackbone(Backbone):
    """Stride 2: the stem (conv1+bn+relu, 64 ch); 4/8/16/32: layer1..layer4."""

    def __init__(self, name: str, model: nn.Module, weights_path: Path | None) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self.weights_path = weights_path
        self.num_features = model.fc.in_features
        widths = [model.conv1.out_channels] + [
            layer[-1].conv3.out_channels
            for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
        ]
        self.feature_info = [FeatureInfo(2**i, c) for i, c in enumerate(widths, start=1)]
        self.preprocess = TORCHVISION_PREPROCESS

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.model
        x = m.relu(m.bn1(m.conv1(x)))
        maps = [x]
        x = m.maxpool(x)
        for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
            x = layer(x)
            maps.append(x)
        return maps

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.fc(self.forward(x))


# The five max-pool layers of VGG-16's ``features`` (pool1..pool5). Their outputs are the
# stride 2..32 maps; pool5 (512 ch) is the map that is pooled and fed to the classifier.
VGG16_POOL_INDICES = (4, 9, 16, 23, 30)


class VGGBackbone(Backbone):
    """Maps are the outputs of pool1..pool5 (strides 2..32; 64, 128, 256, 512, 512 ch)."""

    def __init__(self, name: str, model: nn.Module, weights_path: Path | None) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self.weights_path = weights_path
        features = model.features
        for index in VGG16_POOL_INDICES:
            if not isinstance(features[index], nn.MaxPool2d):
                raise TypeError(f"{name}: features[{index}] is not a max-pool layer")
        widths = []
        for index in VGG16_POOL_INDICES:
            convs = [m for m in features[:index] if isinstance(m, nn.Conv2d)]
            widths.append(convs[-1].out_channels)
        self.num_features = widths[-1]
        self.feature_info = [FeatureInfo(2**i, c) for i, c in enumerate(widths, start=1)]
        self.preprocess = TORCHVISION_PREPROCESS

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps, start = [], 0
        for end in VGG16_POOL_INDICES:
            x = self.model.features[start : end + 1](x)
            maps.append(x)
            start = end + 1
        return maps

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.model.avgpool(self.feature_map(x)), 1)
        return self.model.classifier(x)


def resnet50(pretrained: bool = True, weights: str | os.PathLike | None = None) -> Backbone:
    model, path = _load_torchvision(
        "resnet50", models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1, pretrained, weights
    )
    return ResNetBackbone("resnet50", model, path)


def resnet101(pretrained: bool = True, weights: str | os.PathLike | None = None) -> Backbone:
    model, path = _load_torchvision(
        "resnet101", models.resnet101, models.ResNet101_Weights.IMAGENET1K_V1, pretrained, weights
    )
    return ResNetBackbone("resnet101", model, path)


def vgg16(pretrained: bool = True, weights: str | os.PathLike | None = None) -> Backbone:
    model, path = _load_torchvision(
        "vgg16", models.vgg16, models.VGG16_Weights.IMAGENET1K_V1, pretrained, weights
    )
    return VGGBackbone("vgg16", model, path)
