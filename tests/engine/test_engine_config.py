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
