"""Fine-tuning the backbone's top on cached trunk features (``encoder.finetune_blocks: N``).

Fine-tuning a whole EfficientNet-Lite0 costs a full forward and backward pass per image and
epoch, too much for a CPU. Most of what fine-tuning changes is in the last, most task-specific
layers, and those are cheap: at 224 px the last stage runs on 7 x 7 maps. So the backbone is
split: the *trunk* (stem and every stage but the last N) stays frozen and its output is cached
once per split with the engine's feature cache, for the plain view and for each of the
``encoder.cache_views`` augmented training views (the multi-crop augmentation of the fast path);
the *top* (the last N stages, ``conv_head`` and its batch norm) is trained with the set
predictor, at ``train.lr * encoder.lr_scale`` like a fully fine-tuned backbone.

The top's weights are saved in the checkpoint (``encoder.top.*``); the frozen trunk is not, it
is rebuilt from the pretrained backbone when the model has to take images
(:func:`beyondvis.sets.experiment.load_model`, ``sets eval --root``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def _parts(backbone: Any) -> Any:
    """The timm EfficientNet inside ``backbone`` (conv_stem, bn1, blocks, conv_head, bn2)."""
    model = getattr(backbone, "model", None)
    needed = ("conv_stem", "bn1", "blocks", "conv_head", "bn2")
    if model is None or not all(hasattr(model, n) for n in needed):
        raise ValueError(
            f"encoder.finetune_blocks needs an EfficientNet-style backbone (stem, blocks, "
            f"conv_head); {getattr(backbone, 'name', type(backbone).__name__)} is not one"
        )
    return model


def num_stages(backbone: Any) -> int:
    return len(_parts(backbone).blocks)


def _check(backbone: Any, top_blocks: int) -> Any:
    model = _parts(backbone)
    if not 1 <= top_blocks <= len(model.blocks):
        raise ValueError(
            f"encoder.finetune_blocks must be in 1..{len(model.blocks)} (the backbone's stages), "
            f"got {top_blocks}"
        )
    return model


class Trunk(nn.Module):
    """The frozen part of the backbone: stem and every stage but the last ``top_blocks``.

    It holds the backbone's own modules (no copy), is always in eval mode and never builds a
    graph, so caching and scoring images cost one inference pass."""

    def __init__(self, backbone: Any, top_blocks: int) -> None:
        super().__init__()
        model = _check(backbone, top_blocks)
        self.stem = nn.Sequential(model.conv_stem, model.bn1)
        self.blocks = nn.Sequential(*list(model.blocks)[: len(model.blocks) - top_blocks])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Trunk:  # noqa: ARG002 - frozen: batch norm stays eval
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(images))


class TopBlocks(nn.Module):
    """The trainable top: the last ``top_blocks`` stages, ``conv_head`` and its batch norm,
    copied from the backbone. ``feature_map`` maps trunk features (or images, once a trunk is
    attached with :meth:`attach_trunk`) to the backbone's last feature map."""

    def __init__(self, backbone: Any, top_blocks: int) -> None:
        super().__init__()
        model = _check(backbone, top_blocks)
        self.top_blocks = top_blocks
        self.top = nn.Sequential(
            *[copy.deepcopy(b) for b in list(model.blocks)[len(model.blocks) - top_blocks :]],
            copy.deepcopy(model.conv_head),
            copy.deepcopy(model.bn2),
        )
        self.num_features = int(getattr(backbone, "num_features", 0))
        # Not a registered submodule: the frozen trunk is neither trained nor saved.
        self._trunk: list[Trunk] = []

    def attach_trunk(self, backbone: Any) -> TopBlocks:
        """Put the frozen trunk of ``backbone`` in front, so ``feature_map`` takes images."""
        self._trunk = [Trunk(backbone, self.top_blocks)]
        self.preprocess = backbone.preprocess
        self.transform = backbone.transform
        return self

    @property
    def takes_images(self) -> bool:
        return bool(self._trunk)

    def _apply(self, fn: Any, recurse: bool = True) -> TopBlocks:
        # .to(device) must move the unregistered trunk too.
        for trunk in self._trunk:
            trunk._apply(fn)
        return super()._apply(fn, recurse)

    def feature_map(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._trunk:
            inputs = self._trunk[0](inputs)
        return self.top(inputs)
