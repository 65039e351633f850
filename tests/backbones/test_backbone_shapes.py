"""Every registered backbone gives five maps at strides 2..32 matching its feature_info."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from beyondvis.backbones import (
    Backbone,
    FeatureInfo,
    PreprocessConfig,
    create_backbone,
    list_backbones,
)

EXPECTED = {
    "efficientnet_lite0": ([16, 24, 40, 112, 1280], 1280),
    "resnet50": ([64, 256, 512, 1024, 2048], 2048),
    "resnet101": ([64, 256, 512, 1024, 2048], 2048),
    "vgg16": ([64, 128, 256, 512, 512], 512),
}


def test_registry_lists_the_four_backbones():
    assert list_backbones() == sorted(EXPECTED)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: efficientnet_lite0, resnet101, resnet50, vgg16"):
        create_backbone("alexnet")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_feature_shapes(name):
    backbone = create_backbone(name, pretrained=False)
    channels, num_features = EXPECTED[name]
    assert isinstance(backbone, Backbone) and backbone.name == name
    assert backbone.num_features == num_features
    assert backbone.feature_info == [FeatureInfo(s, c) for s, c in zip([2, 4, 8, 16, 32], channels)]
    assert isinstance(backbone.preprocess, PreprocessConfig)
    x = torch.randn(2, 3, 64, 96)  # not square: strides must hold per axis
    with torch.inference_mode():
        maps = backbone.forward_features(x)
        last = backbone.feature_map(x)
        pooled = backbone(x)
        logits = backbone.classify(x)
    assert [tuple(m.shape) for m in maps] == [
        (2, info.channels, 64 // info.stride, 96 // info.stride) for info in backbone.feature_info
    ]
    assert last.shape == (2, num_features, 2, 3)
    torch.testing.assert_close(last, maps[-1])
    torch.testing.assert_close(pooled, last.mean(dim=(2, 3)))
    assert logits.shape == (2, 1000)


@pytest.mark.parametrize("train", [False, True])
def test_transform_gives_normalised_chw(lite0, train):
    image = Image.new("RGB", (300, 200), (127, 127, 127))
    x = lite0.transform(train=train)(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert lite0.transform(size=160)(image).shape == (3, 160, 160)
    if not train:  # mid-grey is ~0 under the TF-Lite normalisation (x - 0.5) / 0.5
        assert x.abs().max() < 0.01
