"""Local convolutional features and their encoding into assignment maps.

Local features are the activations of one level of the backbone's ``forward_features`` (one
D-dimensional descriptor per feature-map cell), computed on the image rescaled by a factor
while keeping its aspect ratio (thesis: 1/3 of the original size), optionally with the maps
bilinearly upsampled 2x (thesis Table 2.1: a cheap alternative to a larger input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from beyondvis.errors import BeyondvisError
from beyondvis.retrieval.codebook import Codebook
from beyondvis.retrieval.pooling import PCAWhitening

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneMismatchError(BeyondvisError, ValueError):
    """The query would be encoded with another network than the one the index was built with."""


class _TimmFeatures(torch.nn.Module):
    # Fallback used only when beyondvis.backbones is unavailable (e.g. a partial checkout): the
    # timm architecture with random weights, good for tests of the plumbing, not for search.
    def __init__(self, name: str) -> None:
        super().__init__()
        import timm

        self.name = f"timm:{name}"
        self.model = timm.create_model(name, pretrained=False, features_only=True)
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x)


def load_backbone(name: str = "efficientnet_lite0", pretrained: bool = True) -> torch.nn.Module:
    """The project backbone (``beyondvis.backbones``); ``timm:<arch>`` gives random weights."""
    if name.startswith("timm:"):
        return _TimmFeatures(name[len("timm:") :])
    from beyondvis.backbones import create_backbone

    return create_backbone(name, pretrained=pretrained)


def _norm_stats(backbone: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pre = getattr(backbone, "preprocess", None)
    if pre is not None:
        return tuple(pre.mean), tuple(pre.std)
    return getattr(backbone, "mean", IMAGENET_MEAN), getattr(backbone, "std", IMAGENET_STD)


@dataclass
class FeatureConfig:
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    level: int = 3  # index into forward_features: 3 = stride 16, 4 = stride 32
    scale: float = 1.0  # input rescaling factor (thesis: 1/3 of Oxford's ~1024 px images)
    # Cap on the rescaled long side. 384 px is the thesis' input size (1/3 of Oxford's ~1024 px
    # photos) and what keeps a 2-core CPU above 10 photos/s with <= 2 KB of postings per photo
    # (docs/retrieval.md, "Speed and memory"); 1024 px costs 7x the backbone time.
    max_side: int = 384
    min_side: int = 64  # below this the stride-16/32 maps have too few cells to be useful
    # 2x bilinear interpolation of the maps (thesis Table 2.1). Off by default: at 384 px it
    # multiplies the cells by 4 and the distinct words per photo by 1.5 (449 vs 296 with the
    # previous 8,192-word shipped codebook), past 2 KB of postings per photo, and the word
    # assignment time by 4.
    upsample: bool = False


class LocalFeatureExtractor:
    def __init__(self, config: FeatureConfig, device: str = "cpu", backbone=None) -> None:
        self.config = config
        self.device = torch.device(device)
        self.backbone = (backbone or load_backbone(config.backbone, config.pretrained)).to(
            self.device
        )
        self.backbone.eval()
        mean, std = _norm_stats(self.backbone)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def input_size(self, size: tuple[int, int]) -> tuple[int, int]:
        cfg = self.config
        w, h = size
        factor = cfg.scale
        if max(w, h) * factor > cfg.max_side:
            factor = cfg.max_side / max(w, h)
        if min(w, h) * factor < cfg.min_side:
            factor = cfg.min_side / min(w, h)
        return max(1, round(w * factor)), max(1, round(h * factor))

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """Resize and normalise: the (1, 3, h, w) input tensor. Runs in loader threads (PIL and
        torch release the GIL), so decoding overlaps the backbone of the previous photo."""
        resized = image.resize(self.input_size(image.size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def features(self, x: torch.Tensor) -> np.ndarray:
        """(h, w, D) float32 local features of a prepared input tensor."""
        fmap = _level_map(self.backbone, x.to(self.device), self.config.level)
        if self.config.upsample:
            fmap = F.interpolate(fmap, scale_factor=2, mode="bilinear", align_corners=False)
        return fmap[0].permute(1, 2, 0).float().cpu().numpy()

    def __call__(self, image: Image.Image) -> np.ndarray:
        """(h, w, D) float32 local features of one RGB image."""
        return self.features(self.prepare(image))


def _level_map(backbone: torch.nn.Module, x: torch.Tensor, level: int) -> torch.Tensor:
    """One level of ``forward_features``, stopping the network there when it is known how.

    For EfficientNet-Lite0's stride-16 map this skips the stride-32 blocks and the 1280-channel
    head, 12% of the forward pass at 384-768 px (measured), with the same output.
    """
    model, ends = getattr(backbone, "model", None), getattr(backbone, "_block_ends", None)
    if ends is not None and 0 <= level < len(ends) and hasattr(model, "blocks"):
        y = model.bn1(model.conv_stem(x))
        for i, block in enumerate(model.blocks):
            y = block(y)
            if i == ends[level]:
                return y
    maps = backbone.forward_features(x)
    if not -len(maps) <= level < len(maps):
        raise ValueError(f"feature level {level} out of range: backbone gives {len(maps)} maps")
    return maps[level]


class AssignmentEncoder:
    """Local features -> L2-PCA-whitening-L2 -> nearest visual word, per cell."""

    def __init__(self, extractor: LocalFeatureExtractor, pca: PCAWhitening, codebook: Codebook):
        self.extractor = extractor
        self.pca = pca
        self.codebook = codebook

    def encode_features(self, features: np.ndarray) -> np.ndarray:
        h, w, d = features.shape
        return self.codebook.assign(self.pca(features.reshape(-1, d))).reshape(h, w)

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.encode_features(self.extractor(image))
