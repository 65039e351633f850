"""Recurrent instance segmentation (RSIS, thesis ch. 6): one object per ConvLSTM step.

>>> from beyondvis.segmentation import Segmenter, create_segmentation_model
>>> model = create_segmentation_model("cvppp", pretrained=False)   # untrained, any config
>>> seg = Segmenter.load()                    # shipped CVPPP leaf model (offline)
>>> seg.predict_path("plant.png", out_dir="out")["instances"][0]["step"]
1

Training and evaluation: ``beyondvis rsis train --config cvppp`` / ``beyondvis rsis eval``;
see docs/segmentation.md. Names load on first use (most import torch).
"""

from __future__ import annotations

from typing import Any

from beyondvis.utils import lazy_exports


def list_segmentation_models() -> list[str]:
    """Names :func:`create_segmentation_model` builds: the packaged RSIS configs (``cvppp``,
    ``pennfudan``, ``voc_sbd``, ...), each a decoder shape and backbone of the thesis."""
    from beyondvis.segmentation.experiment import list_rsis_configs

    return list_rsis_configs()


def create_segmentation_model(
    name: str = "cvppp", pretrained: bool = True, num_classes: int | None = None, **overrides: Any
) -> Any:
    """The (untrained) RSIS model of packaged config ``name``, with its backbone in front.

    ``pretrained`` loads the backbone's ImageNet weights (``False``: random, no file needed);
    ``num_classes`` defaults to the config's; ``overrides`` set :class:`RSISModelConfig` fields.
    For a trained model use :meth:`Segmenter.load` (the shipped CVPPP model by default).
    """
    from beyondvis.segmentation.experiment import load_rsis_config
    from beyondvis.segmentation.model import create_rsis_model

    cfg = load_rsis_config(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    encoder = cfg.encoder
    return create_rsis_model(
        cfg.model,
        backbone=encoder.backbone,
        pretrained=pretrained and encoder.pretrained,
        weights=encoder.weights if pretrained else None,
        **overrides,
    )


_EXPORTS = {
    **dict.fromkeys(
        ("RSIS", "RSISModelConfig", "ConvLSTMCell", "create_rsis_model", "list_skip_modes"),
        ".model",
    ),
    **dict.fromkeys(("LossWeights", "rsis_loss", "hungarian_match", "soft_iou"), ".losses"),
    **dict.fromkeys(
        (
            "SegmentationMetrics",
            "symmetric_best_dice",
            "best_dice",
            "difference_in_count",
            "order_correlations",
            "plot_error_analysis",
        ),
        ".metrics",
    ),
    "ViewDataset": ".data",
    **dict.fromkeys(
        (
            "CONFIG_DIR",
            "DATASETS",
            "RSISConfig",
            "build_backbone",
            "cache_views",
            "evaluate_records",
            "export_bundle",
            "list_rsis_configs",
            "load_bundle",
            "load_rsis_config",
            "model_from_checkpoint",
            "prepare",
            "read_splits",
            "stop_threshold_sweep",
            "test_report",
            "train",
        ),
        ".experiment",
    ),
    # online views of the fine-tuning path (the class is private to experiment.py)
    "OnlineViews": ".experiment:_SafeViews",
    "Segmenter": ".predict",
    **dict.fromkeys(
        (
            "SegmentationRunError",
            "dataset_summary",
            "eval_lines",
            "evaluate_checkpoint",
            "sweep_lines",
            "tune_stop_threshold",
        ),
        ".reports",
    ),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["create_segmentation_model", "list_segmentation_models", *_EXPORTS]
