"""Recurrent instance segmentation (RSIS, thesis ch. 6): one object per ConvLSTM step.

>>> from beyondvis.segmentation import Segmenter, create_rsis_model
>>> seg = Segmenter.load()                    # shipped CVPPP leaf model (offline)
>>> seg.predict_path("plant.png", out_dir="out")["instances"][0]["step"]
1

Training and evaluation: ``beyondvis rsis train --config cvppp`` / ``beyondvis rsis eval``;
see docs/segmentation.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RSIS": "beyondvis.segmentation.model",
    "RSISModelConfig": "beyondvis.segmentation.model",
    "ConvLSTMCell": "beyondvis.segmentation.model",
    "create_rsis_model": "beyondvis.segmentation.model",
    "list_skip_modes": "beyondvis.segmentation.model",
    "LossWeights": "beyondvis.segmentation.losses",
    "rsis_loss": "beyondvis.segmentation.losses",
    "hungarian_match": "beyondvis.segmentation.losses",
    "soft_iou": "beyondvis.segmentation.losses",
    "SegmentationMetrics": "beyondvis.segmentation.metrics",
    "symmetric_best_dice": "beyondvis.segmentation.metrics",
    "best_dice": "beyondvis.segmentation.metrics",
    "difference_in_count": "beyondvis.segmentation.metrics",
    "order_correlations": "beyondvis.segmentation.metrics",
    "RSISConfig": "beyondvis.segmentation.experiment",
    "load_rsis_config": "beyondvis.segmentation.experiment",
    "list_rsis_configs": "beyondvis.segmentation.experiment",
    "Segmenter": "beyondvis.segmentation.predict",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'beyondvis.segmentation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
