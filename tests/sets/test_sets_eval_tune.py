"""Scoring a checkpoint on folders it never saw (without its training data), multi-crop feature
caching, fine-tuning with augmentation, the linear probe, and the resumable Hyperband study.
Real EfficientNet-Lite0 at 64 px on a few synthetic images, so it stays fast."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from beyondvis.cli.main import main

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _image(labels, path):
    """Vertical stripes of the colours present: the label set is the colours."""
    image = np.full((48, 48, 3), 128, np.uint8)
    for k, label in enumerate(labels):
        if label in COLORS:
            image[:, k * 16 : (k + 1) * 16] = COLORS[label]
    Image.fromarray(image).save(path)


def _jsonl_data(root, n=24, n_test=4):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    names = list(COLORS)
    lines = {"train": [], "test": []}
    for i in range(n):
        labels = [names[j] for j in range(3) if rng.rand() < 0.5] or ["red"]
        _image(labels, root / f"{i}.png")
        lines["test" if i >= n - n_test else "train"].append(
            {"image": f"{i}.png", "labels": labels}
        )
    for split, items in lines.items():
        (root / f"{split}.jsonl").write_text("\n".join(json.dumps(x) for x in items) + "\n")


def _config(tmp_path, **sections):
    data = tmp_path / "train_data"
    _jsonl_data(data)
    config = {
        "data": {
            "dataset": "jsonl",
            "train_file": str(data / "train.jsonl"),
            "test_file": str(data / "test.jsonl"),
            "image_size": 64,
            "val_fraction": 0.2,
        },
        "encoder": {
            "cache_dir": str(tmp_path / "cache"),
            "cache_batch_size": 8,
            "cache_dtype": "float32",
        },
        "model": {"embed_dim": 16, "hidden_size": 16, "tf_heads": 2, "tf_layers": 1},
        "train": {
            "out_dir": str(tmp_path / "run"),
            "epochs": 2,
            "batch_size": 8,
            "monitor": "val_o_f1",
            "monitor_mode": "max",
            "progress": False,
            "device": "cpu",
        },
    }
    for section, values in sections.items():
        config[section].update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, data


def _miml_folder(root):
    """A MIML-layout folder (one-hot CSV + images/) the model never saw; 'purple' is a label
    outside the model's vocabulary."""
    (root / "images").mkdir(parents=True)
    sets = [["red"], ["green", "blue"], ["blue"], ["red", "purple"], ["green"], ["red", "blue"]]
    header = ["Filenames", "red", "green", "blue", "purple"]
    rows = [",".join(header)]
    for i, labels in enumerate(sets):
        _image(labels, root / "images" / f"{i + 1}.jpg")
        rows.append(",".join([f"{i + 1}.jpg", *("1" if h in labels else "0" for h in header[1:])]))
    (root / "miml_labels_1.csv").write_text("\n".join(rows) + "\n")
    return len(sets)


def _train(config, *overrides, capsys):
    assert main(["sets", "train", "--config", str(config), *overrides]) == 0
    return json.loads(capsys.readouterr().out)


def _eval(*args, capsys):
    assert main(["sets", "eval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_root_without_training_data_and_multicrop_cache(tmp_path, capsys):
    config, data = _config(
        tmp_path, encoder={"cache_views": 2, "augment": "rrc", "pool_features": True}
    )
    trained = _train(config, "model.name=ff_bce_c", capsys=capsys)
    ckpt = trained["best_checkpoint"]
    views = sorted(p.name for p in (tmp_path / "cache").glob("*/train_rrc*"))
    assert views == ["train_rrc0", "train_rrc1"]  # two augmented views cached

    # Same images through both paths: cached maps (own split) and the backbone (--root).
    own = _eval("--checkpoint", ckpt, capsys=capsys)
    folder = _eval(
        "--checkpoint", ckpt, "--root", str(data), "--dataset", "jsonl", "--split", "test",
        capsys=capsys,
    )  # fmt: skip
    assert own["num_images"] == folder["num_images"] == 4
    for key in ("o_f1", "c_f1", "i_f1", "card_err"):
        assert folder[key] == pytest.approx(own[key], abs=1e-6)

    # Without the training data and its caches, a folder in the MIML layout still scores.
    shutil.rmtree(data)
    shutil.rmtree(tmp_path / "cache")
    unseen = tmp_path / "unseen_miml"
    n_images = _miml_folder(unseen)
    report = _eval("--checkpoint", ckpt, "--root", str(unseen), "--dataset", "miml", capsys=capsys)
    assert report["format"] == "beyondvis.sets.eval/1" and report["split"] == "all"
    assert report["num_images"] == n_images and report["dataset"] == "miml"
    assert any("outside the vocabulary" in note for note in report["notes"])
    assert sum(c["images"] for c in report["i_f1_by_cardinality"].values()) == n_images

    # Clean one-line errors: a missing folder, --split all without --root.
    assert main(["sets", "eval", "--checkpoint", ckpt, "--root", str(tmp_path / "nope")]) == 1
    assert main(["sets", "eval", "--checkpoint", ckpt, "--split", "all"]) == 1
    assert "needs --root" in capsys.readouterr().err


def test_finetune_with_augmentation_then_eval_root(tmp_path, capsys):
    config, _ = _config(tmp_path, encoder={"finetune": True, "augment": "rrc"})
    trained = _train(config, "model.name=ff_bce", "train.epochs=1", capsys=capsys)
    from beyondvis.engine import load_checkpoint

    saved = load_checkpoint(trained["last_checkpoint"])["extra"]["config"]
    assert saved["encoder"]["finetune"] is True and saved["encoder"]["augment"] == "rrc"
    unseen = tmp_path / "unseen_miml"
    n_images = _miml_folder(unseen)
    ckpt = trained["last_checkpoint"]
    # The checkpoint's own layout is jsonl: a MIML folder is read as such only when asked.
    assert main(["sets", "eval", "--checkpoint", ckpt, "--root", str(unseen)]) == 1
    assert "test.jsonl" in capsys.readouterr().err
    report = _eval("--checkpoint", ckpt, "--root", str(unseen), "--dataset", "miml", capsys=capsys)
    assert report["num_images"] == n_images and report["model"] == "ff_bce"


def test_probe_fits_separable_labels():
    from beyondvis.sets.probe import _score, fit_logistic

    rng = np.random.RandomState(0)
    x = torch.from_numpy(rng.randn(200, 8).astype(np.float32))
    y = torch.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0.5], 1).float()
    weight, bias = fit_logistic(x, y, c=100.0)
    assert _score(x, y, weight, bias).compute()["o_f1"] > 0.97
    # Strong regularisation shrinks the weights (C is the sklearn inverse strength).
    small, _ = fit_logistic(x, y, c=1e-4)
    assert small.abs().max() < weight.abs().max() / 10


def test_tune_resumes_and_reports_cpu_time(tmp_path, capsys):
    import optuna

    config, _ = _config(tmp_path)
    out = tmp_path / "tune"
    args = ["sets", "tune", "--config", str(config), "model.name=ff_bce", "--out", str(out)]
    args += ["--max-resource", "3", "--unit-epochs", "1"]
    assert main([*args, "--trials", "2", "--save-config", str(tmp_path / "best.yaml")]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["completed"] + summary["pruned"] == 2 and summary["cpu_seconds_trials"] > 0
    assert "total CPU time" in captured.err
    assert (out / "trials.png").is_file() and (out / "trials.csv").is_file()
    assert len((out / "trials.md").read_text().splitlines()) == 2 + 2  # header, rule, 2 trials
    assert "model.threshold" in summary["best_params"]  # threshold-decoded model
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["train"]["epochs"] == 3 and best["train"]["scheduler"] == "none"
    assert best["train"]["out_dir"] == "runs/sets/tuned/best/seed{train.seed}"  # --save-config
    for key, value in summary["best_params"].items():
        section, field = key.split(".")
        assert best[section][field] == value

    # A trial left running by a killed process is failed and its parameters retried.
    from beyondvis.sets.tune import DEFAULT_SPACE

    study = optuna.load_study(study_name="sets-ff_bce", storage=f"sqlite:///{out / 'study.db'}")
    lr = optuna.distributions.CategoricalDistribution(
        [json.dumps(v) for v in DEFAULT_SPACE["train.lr"]]
    )
    study.enqueue_trial({"train.lr": "0.001"})
    interrupted = study.ask({"train.lr": lr})  # RUNNING, never told: as if killed
    assert interrupted.params["train.lr"] == "0.001"
    assert main([*args, "--trials", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 1 and summary["completed"] + summary["pruned"] == 3
    study = optuna.load_study(study_name="sets-ff_bce", storage=f"sqlite:///{out / 'study.db'}")
    retried = study.trials[-1]
    assert retried.number > interrupted.number and json.loads(retried.params["train.lr"]) == 0.001
    # Nothing left to do: a rerun trains no new trial.
    assert main([*args, "--trials", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"] == summary["trials"]


def test_search_space_adds_backbone_lr_scale_only_when_the_backbone_trains():
    from beyondvis.sets.tune import search_space

    frozen, top = search_space("ff_bce_c"), search_space("ff_bce_c", finetunes=True)
    assert "encoder.lr_scale" not in frozen and top["encoder.lr_scale"] == [0.1, 0.3, 1.0]
    assert "model.lambda_card" in top and "model.threshold" not in top  # the model's family
    assert set(top) - set(frozen) == {"encoder.lr_scale"}


def test_packaged_tuned_configs_load_from_anywhere(tmp_path, monkeypatch, capsys):
    from beyondvis.sets.experiment import load_sets_config, packaged_configs
    from beyondvis.sets.multiseed import load_table_spec

    monkeypatch.chdir(tmp_path)  # packaged names do not depend on the working directory
    spec = load_table_spec("miml_tuned_table")
    names = packaged_configs()
    assert "miml_tuned_table" in names
    for model, config in spec.configs.items():
        assert config in names
        cfg = load_sets_config(config)
        assert cfg.model.name == model and cfg.encoder.cache_views > 0
    assert main(["sets", "configs"]) == 0
    assert "miml/ff_bce_c" in capsys.readouterr().out


def test_finetune_top_blocks_on_cached_trunk_then_eval_root(tmp_path, capsys):
    """encoder.finetune_blocks: the trunk is cached (plain + augmented views), the last stage
    and head conv train, the checkpoint holds the trained top and scores an unseen folder."""
    config, _ = _config(
        tmp_path, encoder={"finetune_blocks": 1, "cache_views": 1, "augment": "rrc"}
    )
    trained = _train(config, "model.name=ff_bce_c", "train.epochs=1", capsys=capsys)
    from beyondvis.backbones import create_backbone
    from beyondvis.engine import load_checkpoint

    state = load_checkpoint(trained["last_checkpoint"])
    top = {k: v for k, v in state["model"].items() if k.startswith("encoder.top.")}
    assert top and not any(k.startswith("encoder._trunk") for k in state["model"])
    # The top trained (it moved away from the pretrained head conv); the cache is the trunk's.
    pretrained = create_backbone("efficientnet_lite0").model.conv_head.weight
    assert not torch.allclose(state["model"]["encoder.top.1.weight"], pretrained)
    caches = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert caches and all(name.endswith("-trunk1") for name in caches)
    trunk_dirs = {p.name for p in (tmp_path / "cache" / caches[0]).iterdir()}
    assert {"train", "val", "test", "train_rrc0"} <= trunk_dirs
    unseen = tmp_path / "unseen_miml"
    n_images = _miml_folder(unseen)
    report = _eval(
        "--checkpoint",
        trained["best_checkpoint"],
        "--root",
        str(unseen),
        "--dataset",
        "miml",
        capsys=capsys,
    )
    assert report["num_images"] == n_images and report["model"] == "ff_bce_c"
    # Scoring images rebuilds the frozen trunk from the pretrained backbone: no cache needed.
    shutil.rmtree(tmp_path / "cache")
    again = _eval(
        "--checkpoint",
        trained["best_checkpoint"],
        "--root",
        str(unseen),
        "--dataset",
        "miml",
        capsys=capsys,
    )
    assert again["o_f1"] == report["o_f1"]


def test_finetune_blocks_rejects_pooled_features(tmp_path):
    from beyondvis.sets.experiment import EncoderConfig

    with pytest.raises(ValueError, match="pool_features false"):
        EncoderConfig(finetune_blocks=1, pool_features=True)
    with pytest.raises(ValueError, match="finetune_blocks must be >= 0"):
        EncoderConfig(finetune_blocks=-1)


def test_table_spec_row_names_and_probe_entries(tmp_path, monkeypatch):
    from beyondvis.sets.experiment import load_sets_config
    from beyondvis.sets.multiseed import load_table_spec

    monkeypatch.chdir(tmp_path)
    spec = load_table_spec("miml_top_table")  # packaged: a row whose name is not its model's
    assert spec.model_name("ff_bce_c_top") == "ff_bce_c"
    cfg = load_sets_config(spec.configs["ff_bce_c_top"])
    assert cfg.model.name == "ff_bce_c" and cfg.encoder.finetune_blocks == 1
    assert spec.probe == ["plain", "views"] and spec.probes["views"]["views"] is True
    specs = tmp_path / "specs"  # a spec's configs are found next to it, not in the cwd
    specs.mkdir()
    (specs / "other.yaml").write_text("model: {name: ff_bce}\n")
    path = specs / "spec.yaml"
    path.write_text(
        "base: other.yaml\nout_dir: out\nseeds: [0]\nmodels: {ff_bce: []}\n"
        "probe: [plain, {name: small, config: other.yaml, views: true, label: small probe}]\n"
    )
    spec = load_table_spec(path)
    assert spec.probe == ["plain", "small"] and spec.probes["small"]["label"] == "small probe"
    assert spec.probes["small"]["config"] == str(specs / "other.yaml")
    path.write_text(path.read_text().replace("{name: small,", "{"))
    with pytest.raises(ValueError, match="needs 'name'"):
        load_table_spec(path)
    path.write_text("base: other.yaml\nout_dir: o\nseeds: [0]\nmodels: {}\nprobe: [bogus]\n")
    with pytest.raises(ValueError, match="probe entries"):
        load_table_spec(path)
