"""Hyperparameter search with Optuna's Hyperband pruner, as in the thesis' model selection.

The resource is training time measured in fractions of an epoch (``unit_epochs``, 0.15 in the
thesis): a trial is trained ``unit`` by ``unit`` with the shared Trainer (resuming its own
checkpoint), its validation O-F1 is reported after every unit, and Hyperband (eta = 3) stops
the weak trials early. Each hyperparameter is sampled from an independent categorical
distribution (random sampling), as in the study. The study lives in a SQLite file, so an
interrupted search continues where it stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from beyondvis.engine import load_config
from beyondvis.sets.experiment import SetsConfig, prepare, train
from beyondvis.utils import atomic_write_json

log = logging.getLogger(__name__)

# Categorical choices per hyperparameter ("section.field": values); applied only where they
# matter for the model (e.g. lambda_eos for *_set).
DEFAULT_SPACE: dict[str, list[Any]] = {
    "train.lr": [1e-4, 3e-4, 1e-3, 3e-3],
    "train.weight_decay": [0.0, 1e-4],
    "train.batch_size": [16, 32, 64],
    "model.dropout": [0.0, 0.1, 0.3, 0.5],
    "model.embed_dim": [0, 256, 512],
}
FAMILY_SPACE: dict[str, dict[str, list[Any]]] = {
    "bce": {"model.label_smoothing": [0.0, 0.1]},
    "ff": {"model.hidden_dims": [[], [512]]},
    "c": {"model.lambda_card": [0.1, 1.0]},
    "ar": {"model.hidden_size": [128, 256, 512]},
    "tf": {"model.tf_layers": [1, 2, 3], "model.tf_heads": [2, 4, 8]},
    "set": {"model.lambda_eos": [0.1, 1.0], "model.lambda_card": [0.01, 0.1, 1.0]},
}


def search_space(model: str) -> dict[str, list[Any]]:
    """The categorical search space for one model name."""
    space = dict(DEFAULT_SPACE)
    families = []
    if model.startswith("ff_"):
        families.append("ff")
        if "_c" in model or model.endswith("_dc"):
            families.append("c")
    else:
        families.append("ar")
    if model.startswith("tf"):
        families.append("tf")
    if model.endswith("_set"):
        families.append("set")
    if "bce" in model or model.endswith("_set"):
        families.append("bce")
    for family in families:
        space.update(FAMILY_SPACE[family])
    return space


def _apply(cfg_dict: dict[str, Any], key: str, value: Any) -> None:
    node = cfg_dict
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def tune(
    base: SetsConfig,
    out_dir: str | Path,
    n_trials: int = 20,
    max_resource: int = 27,
    unit_epochs: float = 0.15,
    space: Mapping[str, Sequence[Any]] | None = None,
    seed: int = 0,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run (or continue) a Hyperband search; returns the best trial's parameters and O-F1."""
    import optuna

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = dict(space or search_space(base.model.name))
    base_dict = copy.deepcopy(_to_dict(base))
    # Cached features are shared by all trials: computing them here keeps trials comparable.
    prepared0 = prepare(base)
    splits = prepared0.splits

    def objective(trial: optuna.Trial) -> float:
        cfg_dict = copy.deepcopy(base_dict)
        for key, values in space.items():
            choice = trial.suggest_categorical(key, [json.dumps(v) for v in values])
            _apply(cfg_dict, key, json.loads(choice))
        trial_dir = out / f"trial_{trial.number:04d}"
        _apply(cfg_dict, "train.out_dir", str(trial_dir))
        _apply(cfg_dict, "train.seed", seed)  # the same seed for every trial, as in the study
        _apply(cfg_dict, "train.scheduler", "none")  # the LR must not depend on the budget
        _apply(cfg_dict, "train.early_stopping_patience", None)
        cfg = load_config(cfg_dict, SetsConfig)
        prepared = prepare(cfg, splits)
        steps_per_epoch = max(1, math.ceil(len(prepared.datasets["train"]) / cfg.train.batch_size))
        unit_steps = max(1, math.ceil(unit_epochs * steps_per_epoch))
        cfg.train.epochs = max(1, math.ceil(max_resource * unit_steps / steps_per_epoch))
        best = -math.inf
        for unit in range(1, max_resource + 1):
            cfg.train.max_steps = unit * unit_steps
            result = train(cfg, prepared, resume="auto")
            value = float(result.history[-1].get("val_o_f1", math.nan))
            best = max(best, value)
            trial.report(value, unit)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return best

    sampler = optuna.samplers.RandomSampler(seed=seed)
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=max_resource, reduction_factor=3
    )
    study = optuna.create_study(
        study_name=f"sets-{base.model.name}",
        storage=f"sqlite:///{(out / 'study.db').resolve()}",
        load_if_exists=True,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
    )
    done = len([t for t in study.trials if t.state.is_finished()])
    remaining = max(0, n_trials - done)
    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=timeout)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise RuntimeError("no trial completed; raise n_trials or the resource budget")
    best = study.best_trial
    summary = {
        "model": base.model.name,
        "best_val_o_f1": best.value,
        "best_params": {k: json.loads(v) for k, v in best.params.items()},
        "best_overrides": [f"{k}={json.dumps(json.loads(v))}" for k, v in best.params.items()],
        "trials": len(study.trials),
        "completed": len(completed),
        "pruned": len([t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]),
        "max_resource": max_resource,
        "unit_epochs": unit_epochs,
        "reduction_factor": 3,
    }
    atomic_write_json(out / "best.json", summary)
    return summary


def _to_dict(cfg: SetsConfig) -> dict[str, Any]:
    from beyondvis.engine import config_to_dict

    return config_to_dict(cfg)
