"""Real weights: sample photos get their ImageNet classes; missing weights explain themselves."""

from __future__ import annotations

import pytest
import torch
import torchvision

from beyondvis.backbones import WeightsNotFoundError, create_backbone, imagenet_labels
from beyondvis.io import load_image


def top1(backbone, path):
    x = backbone.transform()(load_image(path)).unsqueeze(0)
    with torch.inference_mode():
        return int(backbone.classify(x).argmax())


def test_imagenet_labels():
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert labels[285] == "Egyptian cat" and labels[967] == "espresso"


def test_chelsea_is_a_cat(lite0, skimage_data):
    assert 281 <= top1(lite0, skimage_data / "chelsea.png") <= 285


def test_coffee_is_espresso(lite0, skimage_data):
    assert top1(lite0, skimage_data / "coffee.png") == 967


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


@pytest.mark.parametrize(
    "name, file_name",
    [
        ("resnet50", "resnet50-0676ba61.pth"),
        ("resnet101", "resnet101-63fe2227.pth"),
        ("vgg16", "vgg16-397923af.pth"),
    ],
)
def test_missing_weights_name_the_file_and_the_folder(empty_hub, name, file_name):
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone(name)
    message = str(info.value)
    assert f"'{file_name}'" in message
    assert str(empty_hub) in message
    assert "weights=PATH" in message and "pretrained=False" in message


def test_weights_from_the_hub_cache_and_from_a_path(empty_hub, tmp_path):
    reference = torchvision.models.resnet50(weights=None)
    empty_hub.mkdir(parents=True)
    torch.save(reference.state_dict(), empty_hub / "resnet50-0676ba61.pth")
    from_cache = create_backbone("resnet50")
    torch.testing.assert_close(from_cache.model.fc.weight, reference.fc.weight)
    assert from_cache.weights_path == empty_hub / "resnet50-0676ba61.pth"
    from_path = create_backbone("resnet50", weights=empty_hub / "resnet50-0676ba61.pth")
    torch.testing.assert_close(from_path.model.conv1.weight, reference.conv1.weight)


def test_bad_weight_files_are_clear_errors(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_backbone("vgg16", weights=tmp_path / "nope.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights file"):
        create_backbone("efficientnet_lite0", weights=corrupt)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(ValueError, match="does not fit"):
        create_backbone("resnet50", weights=wrong)
