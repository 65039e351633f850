"""Config loading: YAML, dicts, nested dataclasses, dotted overrides, clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from beyondvis.engine import ConfigError, TrainConfig, config_to_dict, load_config, save_config


@dataclass
class ModelConfig:
    hidden: int = 64
    layers: list[int] = field(default_factory=lambda: [1, 2])
    name: str = "mlp"


@dataclass
class Experiment:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    note: str | None = None


def test_yaml_with_nested_sections_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  hidden: 32\ntrain:\n  lr: 1e-3\n  epochs: 4\n  grad_clip: 2\n")
    cfg = load_config(path, Experiment, ["train.lr=0.01", "model.layers=[3, 4]", "note=hi"])
    assert cfg.model.hidden == 32 and cfg.model.layers == [3, 4]
    assert cfg.train.lr == 0.01 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 4
    assert cfg.train.grad_clip == 2.0 and isinstance(cfg.train.grad_clip, float)
    assert cfg.note == "hi"
    assert cfg.train.batch_size == TrainConfig().batch_size  # defaults kept


def test_string_scientific_notation_and_null(tmp_path):
    cfg = load_config({"lr": "1e-4", "max_steps": 5}, TrainConfig, ["max_steps=null"])
    assert cfg.lr == pytest.approx(1e-4)
    assert cfg.max_steps is None


def test_roundtrip_through_yaml(tmp_path):
    cfg = load_config(None, Experiment, ["train.epochs=3", "model.name=cnn"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml", Experiment)
    assert again == cfg
    assert load_config(cfg, Experiment, ["train.seed=5"]).train.seed == 5
    assert config_to_dict(again)["train"]["epochs"] == 3


@pytest.mark.parametrize(
    ("source", "overrides", "message"),
    [
        ({"train": {"lrr": 0.1}}, [], "unknown config key 'train.lrr'.*did you mean 'lr'"),
        ({}, ["train.lrr=0.1"], "unknown config key 'train.lrr'"),
        ({}, ["trian.lr=0.1"], "unknown config key 'trian'"),
        ({}, ["note.x=1"], "note is not a nested section"),
        ({"model": {"hidden": "wide"}}, [], "model.hidden must be an integer"),
        ({"train": {"progress": "yes"}}, [], "train.progress must be true or false"),
        ({"train": {"optimizer": "lbfgs"}}, [], "optimizer must be one of"),
        ({"train": {"epochs": 0}}, [], "epochs must be >= 1"),
        ({}, ["train.lr"], "must look like key=value"),
        ({"model": 3}, [], "model must be a mapping"),
    ],
)
def test_errors_name_the_key(source, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(source, Experiment, overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listy)


# --------------------------------------------------------------- names, base:, references, diff
def test_packaged_names_resolve_from_any_folder(tmp_path, monkeypatch):
    from beyondvis.engine.config import (
        PACKAGED_CONFIG_DIR,
        config_name,
        list_configs,
        resolve_config,
    )

    monkeypatch.chdir(tmp_path)  # nothing named like a config here
    names = list_configs()
    for name in ("sets/miml", "retrieval/instances", "segmentation/cvppp", "recipes/joint"):
        assert name in names
    miml = PACKAGED_CONFIG_DIR / "sets" / "miml.yaml"
    assert resolve_config("sets/miml") == miml
    assert resolve_config("sets/miml.yaml") == miml
    assert resolve_config("configs/sets/miml.yaml") == miml  # the repository spelling of the docs
    assert resolve_config("miml", system="sets") == miml
    assert resolve_config("miml/ff_bce_c", system="sets").name == "ff_bce_c.yaml"
    assert config_name(miml) == "sets/miml"
    assert list_configs("segmentation") == [n for n in names if n.startswith("segmentation/")]
    with pytest.raises(ConfigError, match="config file not found: sets/mimll.*sets/miml"):
        resolve_config("sets/mimll")
    with pytest.raises(ConfigError, match="not found"):
        resolve_config("../../../etc/passwd")  # a name cannot leave the packaged folder


def test_a_file_beats_a_packaged_name(tmp_path, monkeypatch):
    from beyondvis.engine.config import resolve_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "miml.yaml").write_text("epochs: 3\n")
    assert resolve_config("sets/miml").resolve() == (tmp_path / "sets" / "miml.yaml").resolve()
    assert load_config("sets/miml", TrainConfig).epochs == 3


def test_base_is_relative_to_the_file_that_names_it(tmp_path, monkeypatch):
    (tmp_path / "cfg" / "deeper").mkdir(parents=True)
    (tmp_path / "cfg" / "common.yaml").write_text(
        "model:\n  hidden: 16\n  name: cnn\ntrain:\n  lr: 0.5\n  epochs: 7\n"
    )
    (tmp_path / "cfg" / "deeper" / "child.yaml").write_text(
        "base: ../common.yaml\nmodel:\n  hidden: 99\ntrain:\n  epochs: 2\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory plays no part
    cfg = load_config(tmp_path / "cfg" / "deeper" / "child.yaml", Experiment, ["train.lr=0.1"])
    assert cfg.model.hidden == 99 and cfg.model.name == "cnn"  # merged section by section
    assert cfg.train.epochs == 2 and cfg.train.lr == 0.1
    (tmp_path / "cfg" / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="refers back to itself"):
        load_config(tmp_path / "cfg" / "loop.yaml", Experiment)
    (tmp_path / "cfg" / "bad.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="config file not found: nowhere.yaml"):
        load_config(tmp_path / "cfg" / "bad.yaml", Experiment)


def test_base_by_packaged_name(tmp_path):
    from beyondvis.sets.experiment import SetsConfig

    (tmp_path / "mine.yaml").write_text("base: sets/miml\nmodel:\n  name: lstm\n")
    cfg = load_config(tmp_path / "mine.yaml", SetsConfig)
    packaged = load_config("sets/miml", SetsConfig)
    assert cfg.model.name == "lstm" and cfg.train.epochs == packaged.train.epochs
    assert cfg.train.out_dir == "runs/sets/miml/lstm/seed0"  # the folder follows the model


def test_folder_settings_name_other_values():
    cfg = load_config(
        {"train": {"out_dir": "runs/{model.name}/h{model.hidden}/seed{seed}"}},
        Experiment,
        ["model.name=gru", "train.seed=3"],
    )
    assert cfg.train.out_dir == "runs/gru/h64/seed3"  # {seed}: the sibling train.seed
    assert load_config({"note": "{model.name}"}, Experiment).note == "{model.name}"  # not a _dir
    with pytest.raises(ConfigError, match=r"train.out_dir: \{model.size\} names no config key"):
        load_config({"train": {"out_dir": "runs/{model.size}"}}, Experiment)


def test_config_diff_names_the_keys():
    from beyondvis.engine.config import config_diff, format_diff

    a = load_config(None, Experiment, ["train.lr=0.001", "model.layers=[1, 2]"])
    b = load_config(None, Experiment, ["train.lr=0.0003", "model.name=lstm", "train.epochs=9"])
    diff = config_diff(config_to_dict(a), config_to_dict(b), ignore=("epochs",))
    assert [key for key, _, _ in diff] == ["model.name", "train.lr"]
    assert format_diff(diff) == "model.name 'mlp' -> 'lstm', train.lr 0.001 -> 0.0003"
    assert config_diff({"x": 1, "y": [1, 2]}, {"x": 1.0, "y": (1, 2)}) == []
    assert config_diff({"x": {"y": 1}}, {"x": {}}) == [
        ("x.y", 1, config_diff.__globals__["_ABSENT"])
    ]
