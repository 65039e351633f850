"""The backbone registry: name -> factory ``(pretrained, weights) -> Backbone``."""

from __future__ import annotations

import os

from beyondvis.backbones import efficientnet, torchvision_models
from beyondvis.backbones.base import Backbone
from beyondvis.registry import Registry

BACKBONES: Registry[Backbone] = Registry("backbone")
DEFAULT_BACKBONE = "efficientnet_lite0"

BACKBONES.register("efficientnet_lite0")(efficientnet.EfficientNetLite0)
BACKBONES.register("resnet50")(torchvision_models.resnet50)
BACKBONES.register("resnet101")(torchvision_models.resnet101)
BACKBONES.register("vgg16")(torchvision_models.vgg16)


def list_backbones() -> list[str]:
    return BACKBONES.names()


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
) -> Backbone:
    """Build a backbone in eval mode.

    ``weights=PATH`` loads that file (and implies pretrained); otherwise ``pretrained=True`` uses
    the packaged / torch-hub-cached ImageNet weights and raises
    :class:`~beyondvis.backbones.weights.WeightsNotFoundError` naming the file when absent;
    ``pretrained=False`` gives random initialisation.
    """
    return BACKBONES.create(name, pretrained=pretrained, weights=weights)
