"""Bad command-line and config values: a one-line error before any work starts.

Each of these was accepted (and crashed later with a traceback, or ran out of memory) before
the one validation layer (beyondvis.validation: argparse types + config rules by field name).
"""

from __future__ import annotations

import argparse

import pytest

from beyondvis.cli.main import main
from beyondvis.validation import (
    ValidationError,
    check_image_memory,
    check_writable,
    device_choice,
    non_negative_int,
    positive_float,
    positive_int,
)


def _usage_error(capsys, argv, fragment):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["index", "search", "IDX", "q.jpg", "--device", "banana"], "--device: must be one of"),
        (["classify", "q.jpg", "--device", "cuda:x"], "--device: must be one of"),
        (["sets", "eval", "--checkpoint", "x.pt", "--device", "gpu"], "--device: must be one of"),
        (["index", "build", "P", "--out", "O", "--threads", "-1"], "--threads: must be >= 1"),
        (["index", "build", "P", "--out", "O", "--threads", "0"], "--threads: must be >= 1"),
        (["index", "search", "IDX", "q.jpg", "--top", "-1"], "--top: must be >= 0"),
        (["index", "build", "P", "--out", "O", "--scale", "0"], "--scale: must be > 0"),
        (["index", "build", "P", "--out", "O", "--scale", "-1"], "--scale: must be > 0"),
        (["index", "build", "P", "--out", "O", "--scale", "nan"], "--scale: must be a finite"),
        (["index", "build", "P", "--out", "O", "--pca-dim", "0"], "--pca-dim: must be >= 1"),
        (["index", "build", "P", "--out", "O", "--codebook-size", "big"], "must be a whole number"),
        (["index", "build", "P", "--out", "O", "--codebook-size", "-3"], "must be >= 1"),
        (["features", "cache", "I", "O", "--size", "0"], "--size: must be >= 1"),
        (["features", "cache", "I", "O", "--batch-size", "0"], "--batch-size: must be >= 1"),
        (["recipes", "search", "eggs", "--top", "-1"], "--top: must be >= 1"),
        (["rsis", "eval", "--checkpoint", "x.pt", "--stop-threshold", "2"], "between 0 and 1"),
        (["sets", "tune", "--out", "o", "--trials", "0"], "--trials: must be >= 1"),
        (["sets", "tune", "--out", "o", "--unit-epochs", "-1"], "--unit-epochs: must be > 0"),
        (["index", "build", "P", "--out", "O", "--level", "0"], "--level: must be >= 1"),
    ],
)
def test_bad_cli_values_are_usage_errors(capsys, argv, fragment):
    _usage_error(capsys, argv, fragment)


def test_top_zero_still_means_the_whole_ranking():
    assert non_negative_int("0") == 0
    assert device_choice("CUDA:1") == "cuda:1" and device_choice("auto") == "auto"
    assert positive_int("3") == 3 and positive_float("0.5") == 0.5
    for bad in ("inf", "-inf", "nan", "0", "-2", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(bad)


def test_a_huge_image_side_is_refused_with_the_memory_it_needs(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    out = tmp_path / "cache"
    argv = ["features", "cache", str(tmp_path / "imgs"), str(out), "--size", "100000"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --size 100000 with --batch-size 32 needs about")
    assert "available" in err and "or less fits" in err and err.count("\n") == 1
    assert not out.exists()  # refused before anything was written
    # the cap comes from the memory given, not a fixed number
    check_image_memory(224, 32, available=8 * 2**30)
    with pytest.raises(ValidationError, match="--batch-size 2 fits"):
        check_image_memory(1024, 32, available=2 * 2**30)


def test_memory_caps_hold_for_sets_and_index_too(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos = _tiny_photos(tmp_path / "photos")
    argv = ["index", "build", str(photos), "--out", str(tmp_path / "idx"), "--max-side", "100000"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --max-side 100000 needs about") and "or less fits" in err
    assert not (tmp_path / "idx").exists()
    from beyondvis.data.sets_readers import SetRecord
    from beyondvis.sets.experiment import SetSplits, load_sets_config, prepare

    cfg = load_sets_config("sets/miml", ["data.image_size=100000"])
    record = SetRecord(str(photos / "0.png"), ["a"])
    splits = SetSplits([record], [record], [record], ["a"])
    with pytest.raises(ValidationError, match="data.image_size 100000 with encoder.cache_batch"):
        prepare(cfg, splits)
    assert not (tmp_path / "runs").exists()  # nothing cached


def test_unwritable_output_paths_are_refused_up_front(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValidationError, match="is a file, not a folder"):
        check_writable(blocker / "sub" / "out")
    (tmp_path / "imgs").mkdir()
    assert main(["features", "cache", str(tmp_path / "imgs"), str(blocker / "cache")]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    assert check_writable(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"


SETS_CASES = [
    ("model.dropout=2", "model.dropout must be in [0, 1)"),
    ("data.val_fraction=1.5", "data.val_fraction must be in [0, 1)"),
    ("data.image_size=-1", "data.image_size must be >= 1"),
    ("train.lr=-1", "train.lr must be > 0"),
    ("train.lr=nan", "train.lr must be a finite number"),
    ("train.monitor=val_nothing", "train.monitor must be one of train_loss, val_c_f1"),
    ("train.device=banana", "train.device must be one of auto, cpu, cuda"),
]


@pytest.mark.parametrize("override, message", SETS_CASES)
def test_bad_sets_config_values_fail_before_any_work(
    tmp_path, monkeypatch, capsys, override, message
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BEYONDVIS_DATA", str(tmp_path / "no-data"))  # reached only if accepted
    assert main(["sets", "train", "--config", "sets/miml", "--set", override]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # no run folder, no cache


@pytest.mark.parametrize(
    "override, message",
    [
        ("codebook_size=big", "codebook_size must be an integer"),
        ("codebook_size=0", "codebook_size must be >= 1"),
        ("codebook_size=-3", "codebook_size must be >= 1"),
        ("features.max_side=0", "features.max_side must be >= 1"),
        ("pca_dim=0", "pca_dim must be >= 1"),
    ],
)
def test_bad_index_config_values(override, message):
    from beyondvis.engine import ConfigError, load_config
    from beyondvis.retrieval import IndexConfig

    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config("retrieval/instances", IndexConfig, [override])


@pytest.mark.parametrize(
    "system, cls_path, override, message",
    [
        ("segmentation/cvppp", "segmentation", "model.dropout=2", "model.dropout must be in"),
        ("segmentation/cvppp", "segmentation", "data.val_fraction=1.5", "val_fraction must be"),
        ("segmentation/cvppp", "segmentation", "data.image_size=-1", "image_size must be a mult"),
        ("segmentation/cvppp", "segmentation", "train.lr=.nan", "train.lr must be a finite"),
        ("recipes/joint", "recipes", "train.lr=-1", "train.lr must be > 0"),
    ],
)
def test_the_same_rules_hold_in_every_system(system, cls_path, override, message):
    from beyondvis.engine import ConfigError, load_config

    if cls_path == "segmentation":
        from beyondvis.segmentation.experiment import RSISConfig as cls
    else:
        from beyondvis.recipes.retrieval.train import JointTrainConfig as cls
    # ValueError: the segmentation dataclass's own stricter check (a multiple of 32) runs first
    with pytest.raises((ConfigError, ValueError), match=message):
        load_config(system, cls, [override])


def test_every_packaged_config_passes_the_rules():
    from beyondvis.engine import list_configs, load_config
    from beyondvis.recipes.generation.experiment import GenerationConfig
    from beyondvis.recipes.retrieval.train import JointTrainConfig
    from beyondvis.retrieval import IndexConfig
    from beyondvis.segmentation.experiment import RSISConfig
    from beyondvis.sets.experiment import SetsConfig

    classes = {
        "sets": SetsConfig,
        "segmentation": RSISConfig,
        "recipes": JointTrainConfig,
        "generation": GenerationConfig,
        "retrieval": IndexConfig,
    }
    names = [n for n in list_configs() if "table" not in n]
    assert len(names) >= 15
    for name in names:
        load_config(name, classes[name.split("/")[0]])


def _tiny_photos(folder, n=2):
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_pca_dim_above_the_feature_size_is_refused_before_reading_photos(tmp_path, capsys):
    photos = _tiny_photos(tmp_path / "photos")
    argv = ["index", "build", str(photos), "--out", str(tmp_path / "idx"), "--fit-codebook"]
    argv += ["--pca-dim", "5000", "--max-side", "64", "--threads", "1", "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "pca_dim 5000 is above the feature size 112 of efficientnet_lite0" in err
    assert err.count("\n") == 1 and not (tmp_path / "idx" / "manifest.json").exists()


def test_outputs_under_a_file_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    photos = _tiny_photos(tmp_path / "photos")
    assert main(["index", "build", str(photos), "--out", str(blocker / "idx")]) == 1
    assert "cannot write index folder" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BEYONDVIS_DATA", str(tmp_path / "no-data"))  # reached only if accepted
    argv = ["sets", "train", "--config", "sets/miml", "--set", f"train.out_dir={blocker}/run"]
    assert main(argv) == 1
    assert "cannot write run folder" in capsys.readouterr().err


def test_an_empty_image_folder_for_sets_train_is_one_line(tmp_path, capsys):
    import json

    import yaml

    (tmp_path / "images").mkdir()  # the labels name photos that are not there
    lines = [{"image": f"images/{i}.jpg", "labels": ["a"] if i % 2 else ["b"]} for i in range(8)]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    config = {
        "data": {
            "dataset": "jsonl",
            "train_file": str(tmp_path / "train.jsonl"),
            "test_file": str(tmp_path / "test.jsonl"),
        },
        "encoder": {"cache_dir": str(tmp_path / "cache")},
        "train": {"out_dir": str(tmp_path / "run"), "device": "cpu"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["sets", "train", "--config", str(tmp_path / "c.yaml")]) == 1
    err = capsys.readouterr().err
    assert "none of the" in err and "training images exists" in err
    assert "images" in err and err.count("\n") == 1
    assert not (tmp_path / "cache").exists()  # refused before caching started


@pytest.mark.parametrize(
    "name, module, cls",
    [
        ("segmentation/cvppp", "beyondvis.segmentation.experiment", "RSISConfig"),
        ("recipes/joint", "beyondvis.recipes.retrieval.train", "JointTrainConfig"),
    ],
)
def test_monitor_names_are_checked_on_load_in_rsis_and_recipes(name, module, cls):
    import importlib

    from beyondvis.engine import load_config

    config_cls = getattr(importlib.import_module(module), cls)
    with pytest.raises(ValidationError, match="train.monitor must be one of .*val_nothing"):
        load_config(name, config_cls, ["train.monitor=val_nothing"])


def test_a_jsonl_config_without_its_test_file_is_one_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("data:\n  dataset: jsonl\n  train_file: t.jsonl\n")
    assert main(["sets", "train", "--config", str(tmp_path / "c.yaml")]) == 1
    err = capsys.readouterr().err
    assert err == "error: dataset jsonl needs data.train_file and data.test_file\n"
