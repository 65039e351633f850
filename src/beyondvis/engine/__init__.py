"""The shared training engine: config, seeding, Trainer, checkpoints, DDP, feature caching.

See docs/engine.md for how a system plugs in.
"""

from beyondvis.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    check_plain,
    load_checkpoint,
    restore_model,
    save_checkpoint,
    unwrap_model,
)
from beyondvis.engine.config import (
    ConfigError,
    ResumeConfigError,
    TrainConfig,
    config_diff,
    config_to_dict,
    list_configs,
    load_config,
    resolve_config,
    save_config,
)
from beyondvis.engine.distributed import DistContext, ResumableSampler, init_distributed
from beyondvis.engine.features import (
    CACHE_FORMAT_VERSION,
    CachedFeatureDataset,
    FeatureCache,
    FeatureCacheError,
    cache_features,
)
from beyondvis.engine.metrics import MetricsLogger
from beyondvis.engine.seeding import get_rng_state, seed_everything, seed_worker, set_rng_state
from beyondvis.engine.trainer import (
    Trainer,
    TrainResult,
    build_optimizer,
    build_scheduler,
    move_to_device,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CachedFeatureDataset",
    "FeatureCache",
    "FeatureCacheError",
    "cache_features",
    "FORMAT_VERSION",
    "CheckpointError",
    "ConfigError",
    "ResumeConfigError",
    "DistContext",
    "MetricsLogger",
    "ResumableSampler",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "check_plain",
    "config_diff",
    "config_to_dict",
    "list_configs",
    "resolve_config",
    "get_rng_state",
    "init_distributed",
    "load_checkpoint",
    "load_config",
    "move_to_device",
    "restore_model",
    "save_checkpoint",
    "save_config",
    "seed_everything",
    "seed_worker",
    "set_rng_state",
    "unwrap_model",
]
