"""Multi-seed runs of several models and the mean (std) table of the thesis' Table 5.3.

A table spec (YAML) names a base experiment config, the models with their own overrides, the
seeds and an output folder::

    base: configs/sets/miml.yaml
    out_dir: runs/sets/miml_table
    seeds: [0, 1, 2]
    overrides: ["train.epochs=10"]          # for every model
    models:
      ff_bce: []
      lstm: ["train.lr=0.0003"]
      ff_bce_c: {config: miml/ff_bce_c, overrides: []}   # its own (e.g. tuned) config
    probe: [plain, views]                   # linear-probe rows (see beyondvis.sets.probe)

Configs may be paths or packaged names (``miml/ff_bce_c`` = the tuned config shipped in
``beyondvis/configs/sets/``). Each (model, seed) trains into ``<out_dir>/<model>/seed<k>`` (finished runs are reused, so an
interrupted table resumes) and is scored on the test split with its best-on-validation
checkpoint. The linear probe (one-vs-rest logistic regression on the pooled cached features
of the base config; ``views``: also on its augmented training views) is deterministic and runs
once. Results go to ``results.json``, ``table.md`` and ``f1_by_cardinality.png``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from beyondvis.sets.experiment import (
    METRIC_KEYS,
    load_sets_config,
    load_trained,
    prepare,
    read_splits,
    resolve_config,
    test_report,
    train,
)
from beyondvis.sets.metrics import plot_f1_by_cardinality
from beyondvis.utils import atomic_write, atomic_write_json

log = logging.getLogger(__name__)

TABLE_FORMAT = "beyondvis.sets.table/1"
HEADERS = {"o_f1": "O-F1", "c_f1": "C-F1", "i_f1": "I-F1", "iou": "IoU", "card_err": "card. err"}


@dataclasses.dataclass
class TableSpec:
    base: str
    out_dir: str
    seeds: list[int]
    models: dict[str, list[str]]
    overrides: list[str] = dataclasses.field(default_factory=list)
    configs: dict[str, str] = dataclasses.field(default_factory=dict)  # model -> own config
    probe: list[str] = dataclasses.field(default_factory=list)  # plain | views


PROBE_VARIANTS = ("plain", "views")


def load_table_spec(path: str | Path) -> TableSpec:
    path = resolve_config(path)
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping")
    try:
        models: dict[str, list[str]] = {}
        configs: dict[str, str] = {}
        for name, value in data["models"].items():
            if isinstance(value, dict):
                if "config" in value:
                    configs[str(name)] = str(value["config"])
                models[str(name)] = list(value.get("overrides") or [])
            else:
                models[str(name)] = list(value or [])
        probe = data.get("probe") or []
        probe = list(PROBE_VARIANTS[:1]) if probe is True else [str(v) for v in probe]
        bad = [v for v in probe if v not in PROBE_VARIANTS]
        if bad:
            raise ValueError(f"{path}: probe variants must be among {PROBE_VARIANTS}, got {bad}")
        spec = TableSpec(
            base=str(data["base"]),
            out_dir=str(data["out_dir"]),
            seeds=[int(s) for s in data["seeds"]],
            models=models,
            overrides=list(data.get("overrides") or []),
            configs=configs,
            probe=probe,
        )
    except KeyError as exc:
        raise ValueError(f"{path}: missing key {exc}") from None
    return spec


def run_table(
    spec: TableSpec,
    models: Sequence[str] | None = None,
    device: str | None = None,
    seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Train + test every (model, seed); write results.json, table.md and the I-F1 plot."""
    out = Path(spec.out_dir)
    results_path = out / "results.json"
    results: dict[str, Any] = {}
    if results_path.is_file():
        results = json.loads(results_path.read_text(encoding="utf-8")).get("runs", {})
    chosen = list(models or spec.models)
    with_probe = models is None or "probe" in chosen
    chosen = [m for m in chosen if m != "probe"]
    unknown = [m for m in chosen if m not in spec.models]
    if unknown:
        raise ValueError(f"models {unknown} are not in the table spec")
    splits = None
    if with_probe:
        for variant in spec.probe:
            key = f"probe/{variant}"
            if key in results:
                continue
            from beyondvis.sets.probe import run_probe

            cfg = load_sets_config(spec.base, list(spec.overrides))
            splits = splits or read_splits(cfg.data)
            report = run_probe(cfg, splits, views=variant == "views")
            report.pop("_metrics")
            results[key] = {
                **{k: report[k] for k in (*METRIC_KEYS, "p@1")},
                "name": report["model"],
                "best_val_o_f1": report["best_val_o_f1"],
                "C": report["C"],
                "train_seconds": report["train_seconds"],
                "i_f1_by_cardinality": report["i_f1_by_cardinality"],
                "deterministic": True,
            }
            log.info("%s: test O-F1 %.4f", key, report["o_f1"])
            _save(results_path, spec, results)
    for name in chosen:
        # ``seeds``: only these seeds of the spec (several processes can split one table).
        for seed in [s for s in spec.seeds if seeds is None or s in seeds]:
            key = f"{name}/seed{seed}"
            if key in results:
                continue
            overrides = [
                *spec.overrides,
                *spec.models[name],
                f"model.name={name}",
                f"train.seed={seed}",
                f"train.out_dir={out / name / f'seed{seed}'}",
            ]
            if device:
                overrides.append(f"train.device={device}")
            cfg = load_sets_config(spec.configs.get(name, spec.base), overrides)
            splits = splits or read_splits(cfg.data)
            start = time.perf_counter()
            result = train(cfg, prepare(cfg, splits))
            seconds = time.perf_counter() - start
            checkpoint = result.best_checkpoint or result.last_checkpoint
            report = test_report(load_trained(checkpoint, splits))
            metrics = report.pop("_metrics")
            results[key] = {
                **{k: report[k] for k in (*METRIC_KEYS, "p@1")},
                "best_val_o_f1": result.best_metric,
                "epochs": result.epochs,
                "train_seconds": seconds,
                "checkpoint": str(checkpoint),
                "overrides": overrides,
                "i_f1_by_cardinality": {
                    str(k): list(v) for k, v in metrics.f1_by_cardinality().items()
                },
                "warning": report.get("warning"),
            }
            log.info("%s: test O-F1 %.4f", key, report["o_f1"])
            results = _save(results_path, spec, results)
    if results_path.is_file():
        results = {
            **json.loads(results_path.read_text(encoding="utf-8")).get("runs", {}),
            **results,
        }
    table = summarize(results, spec)
    with atomic_write(out / "table.md", "w") as handle:
        handle.write(table)
    _plot(results, spec, out / "f1_by_cardinality.png")
    return {"runs": results, "table": table}


def _save(path: Path, spec: TableSpec, results: dict[str, Any]) -> dict[str, Any]:
    # Merge with what other processes (e.g. one per model family) wrote meanwhile.
    if path.is_file():
        on_disk = json.loads(path.read_text(encoding="utf-8")).get("runs", {})
        results = {**on_disk, **results}
    atomic_write_json(
        path, {"format": TABLE_FORMAT, "spec": dataclasses.asdict(spec), "runs": results}
    )
    return results


def summarize(results: dict[str, Any], spec: TableSpec) -> str:
    """Markdown table: one row per model, mean (std) over seeds of every metric (x100 for F1s),
    rows ordered by mean O-F1 like the thesis' ranking. Linear-probe rows are deterministic
    (one run, std 0)."""
    rows = []
    for variant in spec.probe:
        run = results.get(f"probe/{variant}")
        if run is None:
            continue
        cells = {k: (run[k] * (1.0 if k == "card_err" else 100.0), 0.0) for k in METRIC_KEYS}
        label = f"{run['name']} (C={run['C']:g})"
        rows.append((cells["o_f1"][0], label, cells, "1 (det.)", run["train_seconds"]))
    for name in spec.models:
        runs = [results[f"{name}/seed{s}"] for s in spec.seeds if f"{name}/seed{s}" in results]
        if not runs:
            continue
        cells = {}
        for key in METRIC_KEYS:
            scale = 1.0 if key == "card_err" else 100.0
            values = np.array([r[key] for r in runs], dtype=float) * scale
            cells[key] = (values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0)
        seconds = float(np.mean([r["train_seconds"] for r in runs]))
        note = " (cannot predict {})" if any(r.get("warning") for r in runs) else ""
        rows.append((cells["o_f1"][0], name + note, cells, len(runs), seconds))
    rows.sort(key=lambda r: -r[0])
    header = (
        "| rank | model | " + " | ".join(HEADERS[k] for k in METRIC_KEYS) + " | seeds | train s |"
    )
    lines = [header, "|" + "---|" * (len(METRIC_KEYS) + 4)]
    for rank, (_, name, cells, n, seconds) in enumerate(rows, start=1):
        values = " | ".join(
            f"{cells[k][0]:.3f} ({cells[k][1]:.3f})"
            if k == "card_err"
            else f"{cells[k][0]:.2f} ({cells[k][1]:.2f})"
            for k in METRIC_KEYS
        )
        lines.append(f"| {rank} | {name} | {values} | {n} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def _plot(results: dict[str, Any], spec: TableSpec, path: Path) -> None:
    """I-F1 vs true cardinality of each model, averaged over its seeds (Figure 5.4)."""
    curves = {}
    for variant in spec.probe:
        run = results.get(f"probe/{variant}")
        if run is not None:
            curves[run["name"]] = {int(c): tuple(v) for c, v in run["i_f1_by_cardinality"].items()}
    for name in spec.models:
        per_card: dict[int, list[float]] = {}
        counts: dict[int, int] = {}
        for seed in spec.seeds:
            run = results.get(f"{name}/seed{seed}")
            if run is None:
                continue
            for card, (mean, _, n) in run["i_f1_by_cardinality"].items():
                per_card.setdefault(int(card), []).append(mean)
                counts[int(card)] = n
        if per_card:
            curves[name] = {
                c: (
                    float(np.mean(v)),
                    float(1.96 * np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0,
                    counts[c],
                )
                for c, v in per_card.items()
            }
    if curves:
        plot_f1_by_cardinality(curves, path, title="I-F1 vs GT cardinality (mean over seeds)")
