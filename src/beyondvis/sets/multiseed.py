"""Multi-seed runs of several models and the mean (std) table of the thesis' Table 5.3.

A table spec (YAML) names a base experiment config, the models with their own overrides, the
seeds and an output folder::

    base: miml.yaml                         # relative to the spec file, or a packaged name
    out_dir: runs/sets/miml_table
    seeds: [0, 1, 2]
    overrides: ["train.epochs=10"]          # for every model
    models:
      ff_bce: []
      lstm: ["train.lr=0.0003"]
      ff_bce_c: {config: miml/ff_bce_c, overrides: []}   # its own (e.g. tuned) config
      ff_bce_c_ft: {config: miml/ff_bce_c_ft, model: ff_bce_c}  # a row name != model name
    probe:                                  # linear-probe rows (see beyondvis.sets.probe)
      - plain                               # on the base config's cached features
      - views                               # ... and its cached augmented training views
      - {name: px128, config: miml/ff_bce_c_ft, views: true, label: "linear probe, 128 px"}

Configs may be paths relative to the spec file or packaged names (``miml/ff_bce_c`` = the
tuned config shipped in ``beyondvis/configs/sets/``), never relative to the working directory. Each (model, seed) trains into ``<out_dir>/<model>/seed<k>`` (finished runs are reused, so an
interrupted table resumes) and is scored on the test split with its best-on-validation
checkpoint. The linear probe (one-vs-rest logistic regression on the pooled cached features
of the base config; ``views``: also on its augmented training views) is deterministic and runs
once per entry; an entry may name its own config (e.g. the input size of a fine-tuned row, so
the probe sees the same pixels). Results go to ``results.json``, ``table.md`` and
``f1_by_cardinality.png``.
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
from beyondvis.sets.metrics import cardinality_rows, plot_f1_by_cardinality
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
    probe: list[str] = dataclasses.field(default_factory=list)  # probe entry names, in order
    # row name -> set model (``model.name``) when they differ, e.g. ff_bce_c_ft -> ff_bce_c
    model_names: dict[str, str] = dataclasses.field(default_factory=dict)
    # probe entry name -> {"config": str | None (base), "views": bool, "overrides": [...],
    # "label": str | None}
    probes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def model_name(self, row: str) -> str:
        return self.model_names.get(row, row)


PROBE_VARIANTS = ("plain", "views")  # the probe entries that need no mapping


def _probe_entries(path: Any, value: Any) -> dict[str, dict[str, Any]]:
    """``probe:`` of a spec -> {name: settings}. ``true`` = plain; ``plain``/``views`` = the base
    config without/with its augmented views; a mapping names its own config."""
    if value is True:
        value = ["plain"]
    entries: dict[str, dict[str, Any]] = {}
    for item in value or []:
        if isinstance(item, dict):
            unknown = set(item) - {"name", "config", "views", "overrides", "label"}
            if "name" not in item or unknown:
                raise ValueError(
                    f"{path}: a probe mapping needs 'name' and may have config, views, "
                    f"overrides, label (got {sorted(item)})"
                )
            name = str(item["name"])
            settings = {
                "config": None if item.get("config") is None else str(item["config"]),
                "views": bool(item.get("views", False)),
                "overrides": [str(o) for o in item.get("overrides") or []],
                "label": None if item.get("label") is None else str(item["label"]),
            }
        elif str(item) in PROBE_VARIANTS:
            name = str(item)
            settings = {"config": None, "views": name == "views", "overrides": [], "label": None}
        else:
            raise ValueError(
                f"{path}: probe entries must be among {PROBE_VARIANTS} or mappings, got {item!r}"
            )
        if name in entries:
            raise ValueError(f"{path}: probe entry {name!r} appears twice")
        entries[name] = settings
    return entries


def load_table_spec(path: str | Path) -> TableSpec:
    path = resolve_config(path)
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping")
    try:
        models: dict[str, list[str]] = {}
        configs: dict[str, str] = {}
        model_names: dict[str, str] = {}
        for name, value in data["models"].items():
            if isinstance(value, dict):
                if "config" in value:
                    configs[str(name)] = _reference(str(value["config"]), Path(path))
                if "model" in value:
                    model_names[str(name)] = str(value["model"])
                models[str(name)] = list(value.get("overrides") or [])
            else:
                models[str(name)] = list(value or [])
        probes = _probe_entries(path, data.get("probe"))
        for entry in probes.values():
            if entry["config"] is not None:
                entry["config"] = _reference(entry["config"], Path(path))
        spec = TableSpec(
            base=_reference(str(data["base"]), Path(path)),
            out_dir=str(data["out_dir"]),
            seeds=[int(s) for s in data["seeds"]],
            models=models,
            overrides=list(data.get("overrides") or []),
            configs=configs,
            probe=list(probes),
            model_names=model_names,
            probes=probes,
        )
    except KeyError as exc:
        raise ValueError(f"{path}: missing key {exc}") from None
    return spec


def _reference(ref: str, spec_path: Path) -> str:
    """A config the spec names, resolved against the spec's own folder (then packaged names);
    kept as written when that is the packaged name it resolves to (short in results.json)."""
    from beyondvis.engine import ConfigError

    try:
        found = resolve_config(ref, relative_to=spec_path.parent)
    except ConfigError as exc:
        raise ValueError(f"{spec_path}: {exc}") from None
    try:
        if Path(resolve_config(ref)).resolve() == Path(found).resolve():
            return ref
    except ConfigError:
        pass
    return str(found)


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

            entry = spec.probes.get(variant) or _probe_entries("spec", [variant])[variant]
            cfg = load_sets_config(
                entry["config"] or spec.base, [*spec.overrides, *entry["overrides"]]
            )
            splits = splits or read_splits(cfg.data)
            report = run_probe(cfg, splits, views=entry["views"])
            report.pop("_metrics")
            results[key] = {
                **{k: report[k] for k in (*METRIC_KEYS, "p@1")},
                "name": entry["label"] or report["model"],
                "image_size": cfg.data.image_size,
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
                f"model.name={spec.model_name(name)}",
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
                "i_f1_by_cardinality": cardinality_rows(metrics),
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


def _card_entry(entry: Any) -> tuple[float, float, int]:
    """(mean, ci95, images) of one cardinality; results files written before the shapes were
    unified hold ``[mean, ci95, images]`` lists."""
    if isinstance(entry, dict):
        return entry["mean"], entry["ci95"], entry["images"]
    mean, ci95, images = entry
    return mean, ci95, images


def _plot(results: dict[str, Any], spec: TableSpec, path: Path) -> None:
    """I-F1 vs true cardinality of each model, averaged over its seeds (Figure 5.4)."""
    curves = {}
    for variant in spec.probe:
        run = results.get(f"probe/{variant}")
        if run is not None:
            curves[run["name"]] = {
                int(c): _card_entry(v) for c, v in run["i_f1_by_cardinality"].items()
            }
    for name in spec.models:
        per_card: dict[int, list[float]] = {}
        counts: dict[int, int] = {}
        for seed in spec.seeds:
            run = results.get(f"{name}/seed{seed}")
            if run is None:
                continue
            for card, entry in run["i_f1_by_cardinality"].items():
                mean, _, n = _card_entry(entry)
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
