"""Pretrained image backbones with multi-scale feature maps, pooled vectors and their preprocessing.

>>> from beyondvis.backbones import create_backbone, FeatureExtractor
>>> backbone = create_backbone("efficientnet_lite0")      # real ImageNet weights, offline
>>> extractor = FeatureExtractor(backbone)                 # fast: ONNX Runtime on CPU
>>> result = extractor.extract_paths(["a.jpg", "b.png"])   # bad files skipped and reported
"""

from beyondvis.backbones.base import Backbone, FeatureInfo, PreprocessConfig, build_transform
from beyondvis.backbones.extractor import ExtractedFeatures, FeatureExtractor, default_cache_dir
from beyondvis.backbones.labels import imagenet_labels, top_classes
from beyondvis.backbones.registry import (
    BACKBONES,
    DEFAULT_BACKBONE,
    create_backbone,
    list_backbones,
)
from beyondvis.backbones.weights import WeightsNotFoundError

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "Backbone",
    "ExtractedFeatures",
    "FeatureExtractor",
    "FeatureInfo",
    "PreprocessConfig",
    "WeightsNotFoundError",
    "build_transform",
    "create_backbone",
    "default_cache_dir",
    "imagenet_labels",
    "list_backbones",
    "top_classes",
]
