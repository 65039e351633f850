"""ImageNet-1k class names, taken offline from torchvision's weight metadata."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _labels() -> tuple[str, ...]:
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in index order (285 -> "Egyptian cat")."""
    return list(_labels())
