"""Hyperparameter search with Optuna's Hyperband pruner, as in the thesis' model selection.

The resource is training time in epochs: one resource unit is ``unit_epochs`` epochs (the
thesis used 0.15 epoch and R = 600 units; on small data a whole epoch per unit keeps the
reports from measuring noise). A trial reports its validation O-F1 after every unit and
Hyperband (eta = 3) stops the weak trials early; the objective is the best validation O-F1 the
trial reached. Whole-epoch units train in one run of the shared Trainer (validation every
``unit_epochs`` epochs); fractional units train unit by unit, resuming the trial's checkpoint.
Each hyperparameter is sampled from an independent categorical distribution (random
sampling), as in the study, and every trial uses the same seed.

The study lives in a SQLite file (``study.db``) in the output folder, so an interrupted search
continues where it stopped: trials left running by a killed process are marked failed and
their parameters are tried again. Every trial records its CPU and wall seconds, so the total
CPU time of the whole search (over all sessions) is known. Outputs, rewritten after every
trial: ``trials.csv`` / ``trials.md`` (one row per trial), ``trials.png`` (validation O-F1
against epochs for every trial, pruned ones dashed), ``best.json`` and ``best_config.yaml``
(the base config with the best parameters, ready for ``beyondvis sets train --config``).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from beyondvis.engine import config_to_dict, load_config
from beyondvis.sets.experiment import SetsConfig, prepare, train
from beyondvis.utils import atomic_write, atomic_write_json

log = logging.getLogger(__name__)

TUNE_FORMAT = "beyondvis.sets.tune/1"

# Categorical choices per hyperparameter ("section.field": values); the family spaces apply
# only where they matter for the model (e.g. the threshold for threshold-decoded models).
DEFAULT_SPACE: dict[str, list[Any]] = {
    "train.lr": [1e-4, 3e-4, 1e-3, 3e-3],
    "train.weight_decay": [0.0, 1e-5, 1e-4, 1e-3],
    "train.batch_size": [16, 32, 64],
    "model.dropout": [0.0, 0.1, 0.3, 0.5],
    "model.embed_dim": [0, 256, 512],  # head size: width of the 1x1 conv block (0: none)
}
FAMILY_SPACE: dict[str, dict[str, list[Any]]] = {
    "bce": {"model.label_smoothing": [0.0, 0.1]},
    "ff": {"model.hidden_dims": [[], [256], [512]]},
    "threshold": {"model.threshold": [0.3, 0.4, 0.5, 0.6]},
    "cumulative": {"model.threshold": [0.4, 0.5, 0.6, 0.7, 0.8]},
    "c": {"model.lambda_card": [0.1, 0.3, 1.0, 3.0]},
    "ar": {"model.hidden_size": [128, 256, 512]},
    "tf": {"model.tf_layers": [1, 2, 3], "model.tf_heads": [2, 4, 8]},
    "set": {"model.lambda_eos": [0.1, 0.3, 1.0], "model.lambda_card": [0.01, 0.1, 1.0]},
    # only when (part of) the backbone trains: its learning rate relative to the head's
    "finetune": {"encoder.lr_scale": [0.1, 0.3, 1.0]},
}


def search_space(model: str, finetunes: bool = False) -> dict[str, list[Any]]:
    """The categorical search space for one model name; ``finetunes``: the backbone (or its
    top, ``encoder.finetune_blocks``) trains too, so its learning-rate scale is searched."""
    space = dict(DEFAULT_SPACE)
    families = ["finetune"] if finetunes else []
    if model.startswith("ff_"):
        families.append("ff")
        if model.endswith(("_c", "_dc")):
            families.append("c")
        elif model == "ff_td":
            families.append("cumulative")
        else:
            families.append("threshold")
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


def _trial_config(
    base_dict: dict[str, Any], params: Mapping[str, Any], out_dir: str | None, seed: int
) -> SetsConfig:
    cfg_dict = copy.deepcopy(base_dict)
    for key, value in params.items():
        _apply(cfg_dict, key, value)
    if out_dir is not None:
        _apply(cfg_dict, "train.out_dir", out_dir)
    _apply(cfg_dict, "train.seed", seed)  # the same seed for every trial, as in the study
    _apply(cfg_dict, "train.scheduler", "none")  # the LR must not depend on the budget
    _apply(cfg_dict, "train.early_stopping_patience", None)  # Hyperband decides when to stop
    return load_config(cfg_dict, SetsConfig)


def tune(
    base: SetsConfig,
    out_dir: str | Path,
    n_trials: int = 20,
    max_resource: int = 27,
    unit_epochs: float = 1.0,
    space: Mapping[str, Sequence[Any]] | None = None,
    seed: int = 0,
    timeout: float | None = None,
    save_config: str | Path | None = None,
) -> dict[str, Any]:
    """Run (or continue) a Hyperband search; returns the summary written to ``best.json``.

    ``n_trials`` is the total for the study (trials finished in earlier sessions count);
    each trial trains for at most ``max_resource * unit_epochs`` epochs.
    """
    import optuna

    if max_resource < 1 or unit_epochs <= 0:
        raise ValueError(
            f"need max_resource >= 1 and unit_epochs > 0 ({max_resource}, {unit_epochs})"
        )
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    finetunes = bool(base.encoder.finetune or base.encoder.finetune_blocks)
    space = {k: list(v) for k, v in (space or search_space(base.model.name, finetunes)).items()}
    base_dict = copy.deepcopy(config_to_dict(base))
    # Cached features are shared by all trials: computing them here keeps trials comparable.
    prepared0 = prepare(base)
    splits = prepared0.splits
    whole = float(unit_epochs).is_integer()
    max_epochs = max_resource * unit_epochs

    def objective(trial: optuna.Trial) -> float:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        params = {}
        for key, values in space.items():
            choice = trial.suggest_categorical(key, [json.dumps(v) for v in values])
            params[key] = json.loads(choice)
        cfg = _trial_config(base_dict, params, str(out / f"trial_{trial.number:04d}"), seed)
        prepared = prepare(cfg, splits, reuse=prepared0)  # shares the cached datasets
        best = -math.inf
        curve: list[list[float]] = []

        def report(value: float, unit: int) -> None:
            nonlocal best
            best = max(best, value)
            curve.append([unit * unit_epochs, value])
            trial.set_user_attr("curve", curve)
            trial.set_user_attr("cpu_seconds", time.process_time() - cpu0)
            trial.set_user_attr("wall_seconds", time.perf_counter() - wall0)
            trial.report(value, unit)
            if trial.should_prune():
                raise optuna.TrialPruned()

        if whole:
            cfg.train.epochs = int(max_epochs)
            cfg.train.eval_every_epochs = int(unit_epochs)
            units = iter(range(1, max_resource + 1))
            train(
                cfg,
                prepared,
                resume=False,
                on_eval=lambda m: report(float(m["val_o_f1"]), next(units)),
            )
        else:
            steps_per_epoch = max(
                1, math.ceil(len(prepared.datasets["train"]) / cfg.train.batch_size)
            )
            unit_steps = max(1, math.ceil(unit_epochs * steps_per_epoch))
            cfg.train.epochs = max(1, math.ceil(max_resource * unit_steps / steps_per_epoch))
            for unit in range(1, max_resource + 1):
                cfg.train.max_steps = unit * unit_steps
                result = train(cfg, prepared, resume="auto")
                report(float(result.history[-1].get("val_o_f1", math.nan)), unit)
        return best

    sampler = optuna.samplers.RandomSampler(seed=seed)
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=max_resource, reduction_factor=3
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"sets-{base.model.name}",
        storage=f"sqlite:///{(out / 'study.db').resolve()}",
        load_if_exists=True,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
    )
    _retry_interrupted(study)
    done = len([t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"])
    remaining = max(0, n_trials - done)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        write_trials(study, out)

    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[after_trial])
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise RuntimeError("no trial completed; raise n_trials or the resource budget")
    best = study.best_trial
    best_params = {k: json.loads(v) for k, v in best.params.items()}
    trial_cpu = sum(float(t.user_attrs.get("cpu_seconds", 0.0)) for t in study.trials)
    summary = {
        "format": TUNE_FORMAT,
        "model": base.model.name,
        "best_trial": best.number,
        "best_val_o_f1": best.value,
        "best_params": best_params,
        "best_overrides": [f"{k}={json.dumps(v)}" for k, v in best_params.items()],
        "trials": len(study.trials),
        "completed": len(completed),
        "pruned": len([t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]),
        "failed": len([t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]),
        "max_resource": max_resource,
        "unit_epochs": unit_epochs,
        "max_epochs_per_trial": max_epochs,
        "reduction_factor": 3,
        "trial_epochs_total": sum(_epochs_of(t) for t in study.trials),
        # CPU seconds of this process (all its threads) summed over every trial of the study,
        # including trials of earlier sessions; this session's total adds feature caching.
        "cpu_seconds_trials": trial_cpu,
        "cpu_seconds_this_session": time.process_time() - start_cpu,
        "wall_seconds_this_session": time.perf_counter() - start_wall,
        "space": space,
    }
    atomic_write_json(out / "best.json", summary)
    best_cfg = _trial_config(base_dict, best_params, None, base.train.seed)
    best_cfg.train.epochs = int(math.ceil(max_epochs))
    # Trials ran without early stopping (Hyperband decided); the tuned config keeps the base
    # config's patience so a full run stops once validation O-F1 stalls (best.pt is chosen on
    # validation O-F1 either way, like the trials' objective).
    best_cfg.train.early_stopping_patience = base.train.early_stopping_patience
    # Named after the saved config (or the study folder), one folder per seed: two tuned
    # configs of one model (e.g. pooled and fine-tuned ff_bce_c) must not share a run folder.
    name = Path(save_config).stem if save_config is not None else out.name
    best_cfg.train.out_dir = f"runs/sets/tuned/{name}/seed{{train.seed}}"
    text = _config_yaml(best_cfg, summary)
    with atomic_write(out / "best_config.yaml", "w") as handle:
        handle.write(text)
    if save_config is not None:
        with atomic_write(save_config, "w") as handle:
            handle.write(text)
    write_trials(study, out)
    return summary


def _config_yaml(cfg: SetsConfig, summary: Mapping[str, Any]) -> str:
    import yaml

    header = (
        f"# {summary['model']}: best of a Hyperband search (eta = 3, {summary['trials']} trials, "
        f"<= {summary['max_epochs_per_trial']:g} epochs each), validation O-F1 "
        f"{summary['best_val_o_f1']:.4f} (trial {summary['best_trial']}).\n"
        f"# Tuned parameters: {', '.join(summary['best_overrides'])}\n"
        "# Train: beyondvis sets train --config <this file>\n"
    )
    return header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _retry_interrupted(study: Any) -> None:
    """Trials left RUNNING by a killed process: mark them failed and enqueue their params."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        log.warning("trial %d was interrupted; its parameters are tried again", trial.number)
        study.enqueue_trial(trial.params, skip_if_exists=False)


def _epochs_of(trial: Any) -> float:
    curve = trial.user_attrs.get("curve") or []
    return float(curve[-1][0]) if curve else 0.0


def trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "epochs": _epochs_of(t),
                "best_val_o_f1": max((v for _, v in t.user_attrs.get("curve") or []), default=None),
                "cpu_s": round(float(t.user_attrs.get("cpu_seconds", 0.0)), 1),
                **{k: json.loads(v) for k, v in t.params.items()},
            }
        )
    return rows


def write_trials(study: Any, out: Path) -> None:
    """trials.csv, trials.md and trials.png of the study so far."""
    rows = trial_rows(study)
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    with atomic_write(out / "trials.csv", "w") as handle:
        handle.write(buffer.getvalue())
    with atomic_write(out / "trials.md", "w") as handle:
        handle.write(trials_markdown(rows, keys))
    try:
        plot_trials(study, out / "trials.png")
    except Exception as exc:  # a plot must never lose the study
        log.warning("could not draw %s: %s", out / "trials.png", exc)


def trials_markdown(rows: list[dict[str, Any]], keys: list[str] | None = None) -> str:
    keys = keys or list(dict.fromkeys(k for r in rows for k in r))
    short = [k.split(".", 1)[-1] for k in keys]

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if v < 1 else f"{v:g}"
        return json.dumps(v) if isinstance(v, list) else str(v)

    ordered = sorted(rows, key=lambda r: -(r["best_val_o_f1"] or -1.0))
    lines = ["| " + " | ".join(short) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in ordered]
    return "\n".join(lines) + "\n"


def plot_trials(study: Any, path: Path) -> None:
    """Validation O-F1 against training epochs for every trial (pruned ones dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from beyondvis.utils import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(6, 4))
    for t in study.trials:
        curve = t.user_attrs.get("curve") or []
        if not curve:
            continue
        xs, ys = zip(*curve)
        style = "-" if t.state.name == "COMPLETE" else "--"
        ax.plot(xs, ys, style, marker=".", linewidth=1, alpha=0.8)
    try:
        best = study.best_trial
        xs, ys = zip(*best.user_attrs["curve"])
        ax.plot(xs, ys, "-", color="black", linewidth=2, label=f"best (trial {best.number})")
        ax.legend(fontsize=8)
    except (ValueError, KeyError):
        pass
    ax.set_xlabel("training epochs")
    ax.set_ylabel("validation O-F1")
    ax.set_title(f"Hyperband: {study.study_name} ({len(study.trials)} trials)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
