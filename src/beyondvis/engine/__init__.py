"""The shared training engine: config, seeding, Trainer, checkpoints, DDP, feature caching.

See docs/engine.md for how a system plugs in. Names load on first use: the config system
(``load_config``, ``resolve_config``, ``list_configs``, ...) needs only PyYAML, so reading or
listing configs does not import torch; the Trainer, checkpoints and caches do.
"""

from __future__ import annotations

from beyondvis.utils import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        (
            "FORMAT_VERSION",
            "CheckpointError",
            "check_plain",
            "load_checkpoint",
            "restore_model",
            "save_checkpoint",
            "unwrap_model",
        ),
        ".checkpoint",
    ),
    **dict.fromkeys(
        (
            "PACKAGED_CONFIG_DIR",
            "ConfigError",
            "ResumeConfigError",
            "TrainConfig",
            "config_diff",
            "config_to_dict",
            "format_diff",
            "list_configs",
            "load_config",
            "resolve_config",
            "save_config",
        ),
        ".config",
    ),
    **dict.fromkeys(
        ("DistContext", "ResumableSampler", "init_distributed", "shutdown_distributed"),
        ".distributed",
    ),
    **dict.fromkeys(
        (
            "CACHE_FORMAT_VERSION",
            "CachedFeatureDataset",
            "FeatureCache",
            "FeatureCacheError",
            "cache_features",
            "cache_image_features",
        ),
        ".features",
    ),
    "MetricsLogger": ".metrics",
    **dict.fromkeys(
        ("get_rng_state", "seed_everything", "seed_worker", "set_rng_state"), ".seeding"
    ),
    **dict.fromkeys(
        (
            "Trainer",
            "TrainResult",
            "build_optimizer",
            "build_scheduler",
            "move_to_device",
            "resume_diff",
        ),
        ".trainer",
    ),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = list(_EXPORTS)
