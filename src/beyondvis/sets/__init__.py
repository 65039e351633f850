"""Image-to-set prediction (thesis chapter 5): set predictors, losses, decoders and metrics.

>>> from beyondvis.sets import create_set_predictor, SetMetrics
>>> model = create_set_predictor("lstm", num_labels=5, max_set_size=4, feature_dim=1280)
"""

from beyondvis.sets.metrics import SetMetrics, plot_f1_by_cardinality
from beyondvis.sets.models import (
    MODEL_NAMES,
    SET_MODELS,
    AutoregressiveSet,
    FeedForwardSet,
    PredictorConfig,
    SetPredictor,
    create_set_predictor,
)

__all__ = [
    "MODEL_NAMES",
    "SET_MODELS",
    "AutoregressiveSet",
    "FeedForwardSet",
    "PredictorConfig",
    "SetMetrics",
    "SetPredictor",
    "create_set_predictor",
    "plot_f1_by_cardinality",
]
