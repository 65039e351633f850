"""ImageNet-1k class names, taken offline from torchvision's weight metadata."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _labels() -> tuple[str, ...]:
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in index order (285 -> "Egyptian cat")."""
    return list(_labels())


def top_classes(backbone: Any, image: Any, k: int = 5, device: Any = None) -> list[dict]:
    """The ``k`` most likely ImageNet classes of a PIL ``image`` under a pretrained
    ``backbone`` (already on ``device``): ``{"index", "label", "prob"}`` each, most likely
    first, ``prob`` rounded to 4 decimals."""
    import torch

    labels = imagenet_labels()
    x = backbone.transform()(image).unsqueeze(0)
    if device is not None:
        x = x.to(device)
    with torch.inference_mode():
        probs = backbone.classify(x).float().softmax(dim=-1)[0].cpu()
    values, indices = probs.topk(min(k, probs.numel()))
    return [
        {"index": int(i), "label": labels[int(i)], "prob": round(float(p), 4)}
        for p, i in zip(values, indices)
    ]
