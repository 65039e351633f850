"""Image-to-set prediction (thesis chapter 5): set predictors, losses, decoders and metrics.

>>> from beyondvis.sets import create_set_model, list_set_models
>>> "lstm" in list_set_models()
True
>>> model = create_set_model("lstm", num_labels=5, max_set_size=4, feature_dim=1280)

Experiments: ``load_sets_config("miml")`` (a packaged config, see :func:`list_set_configs`),
``prepare`` + ``train``, ``load_model(checkpoint)``, ``evaluate_folder``; the Hyperband search
is :func:`run_tune`, the linear probe :func:`run_probe`, multi-seed tables :func:`run_table`.
Names load on first use (most import torch).
"""

from __future__ import annotations

from beyondvis.utils import lazy_exports


def list_set_models() -> list[str]:
    """Names :func:`create_set_model` builds (``ff_bce``, ``lstm``, ``tf_set``, ...)."""
    from beyondvis.sets.models import SET_MODELS

    return SET_MODELS.names()


_EXPORTS = {
    **dict.fromkeys(
        (
            "MODEL_NAMES",
            "SET_MODELS",
            "AutoregressiveSet",
            "FeedForwardSet",
            "PredictorConfig",
            "SetPredictor",
            "create_set_predictor",
        ),
        ".models",
    ),
    # the timm-style name of the factory (create_set_predictor stays for existing callers)
    "create_set_model": ".models:create_set_predictor",
    "SetMetrics": ".metrics",
    "plot_f1_by_cardinality": ".metrics",
    **dict.fromkeys(
        (
            "LoadedModel",
            "SetsConfig",
            "evaluate_folder",
            "load_model",
            "load_sets_config",
            "load_trained",
            "prepare",
            "read_splits",
            "test_report",
            "train",
        ),
        ".experiment",
    ),
    "list_set_configs": ".experiment:packaged_configs",
    # ``tune`` is also the submodule's name, so the function is exported as run_tune
    "run_tune": ".tune:tune",
    **dict.fromkeys(
        ("SetsRunError", "eval_lines", "score_checkpoint", "tune_summary_line"), ".reports"
    ),
    "run_probe": ".probe",
    "load_table_spec": ".multiseed",
    "run_table": ".multiseed",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["list_set_models", *_EXPORTS]
