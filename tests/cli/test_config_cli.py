"""One config system from the command line: packaged names, --set, run folders, resume refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from beyondvis.cli.main import build_parser, main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def parse(*words: str):
    return build_parser(words[0]).parse_args(list(words))


def test_configs_lists_and_prints_packaged_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["configs"]) == 0
    names = capsys.readouterr().out.split()
    for system in ("sets", "segmentation", "retrieval", "recipes", "generation"):
        assert any(n.startswith(f"{system}/") for n in names), system
    assert main(["configs", "sets"]) == 0
    assert all(n.startswith("sets/") for n in capsys.readouterr().out.split())
    assert main(["configs", "retrieval/instances"]) == 0
    text = capsys.readouterr().out
    assert "codebook_size: 4096" in text
    assert main(["configs", "sets/nope"]) == 1
    assert "config file not found: sets/nope" in capsys.readouterr().err


def test_set_syntax_is_the_same_in_every_command(tmp_path, monkeypatch):
    from beyondvis.cli import generation, index, recipes, rsis, sets

    monkeypatch.chdir(tmp_path)  # packaged names and the docs' configs/... spelling still work
    args = parse("sets", "train", "--config", "sets/miml", "model.name=lstm",
                 "--set", "train.lr=0.5", "--set", "model.name=tf")  # fmt: skip
    cfg = sets._config(args)
    assert cfg.train.lr == 0.5 and cfg.model.name == "tf"  # --set comes after trailing words
    assert cfg.train.out_dir == "runs/sets/miml/tf/seed0"
    assert sets._config(parse("sets", "data", "--config", "configs/sets/miml.yaml")).model.name
    cfg = rsis._config(parse("rsis", "train", "--config", "cvppp", "--set", "model.hidden=8"))
    assert cfg.model.hidden == 8
    args = parse("index", "train", "photos", "--out", "m", "--config", "retrieval/instances",
                 "--max-side", "200", "--set", "features.scale=0.5")  # fmt: skip
    cfg = index._config(args)
    assert (cfg.features.max_side, cfg.features.scale, cfg.codebook_size) == (200, 0.5, 4096)
    args = parse("index", "train", "p", "--out", "m", "--max-side", "200",
                 "--set", "features.max_side=300")  # fmt: skip
    assert index._config(args).features.max_side == 300  # --set wins over the shorthand flag
    args = parse("recipes", "train", "--data", "d", "--out", "o", "--config", "recipes/joint",
                 "--set", "sem_weight=0")  # fmt: skip
    assert recipes.load_cli_config(args, _joint_config(), "recipes").sem_weight == 0
    cfg = generation._config(parse("generation", "train", "--set", "train_decoder.max_steps=7"))
    assert cfg.train_decoder.max_steps == 7
    assert not cfg.out_dir.startswith("/")  # no machine's absolute folder in the demo config


def _joint_config():
    from beyondvis.recipes import JointTrainConfig

    return JointTrainConfig


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--set", "train.lrr=1"], "unknown config key 'train.lrr'.*did you mean 'lr'"),
        (["--set", "train.lr"], "must look like key=value"),
        (["--set", "train.epochs=many"], "train.epochs must be an integer"),
    ],
)
def test_bad_overrides_are_one_line_errors(tmp_path, monkeypatch, capsys, words, message):
    monkeypatch.chdir(tmp_path)
    assert main(["sets", "data", "--config", "sets/miml", *words]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err), err


def test_threads_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        parse("sets", "train", "--config", "sets/miml", "--threads", "0")
    assert "--threads: must be >= 1, got 0" in capsys.readouterr().err


def _tiny_sets_config(tmp_path):
    rng = np.random.RandomState(0)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    names = list(colours)
    lines = {"train": [], "test": []}
    for i in range(20):
        labels = [names[j] for j in range(3) if rng.rand() < 0.5]
        image = np.full((32, 48, 3), 128, np.uint8)
        for k, label in enumerate(labels):
            image[:, k * 16 : (k + 1) * 16] = colours[label]
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        lines["test" if i >= 16 else "train"].append({"image": f"{i}.png", "labels": labels})
    for split, items in lines.items():
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(x) for x in items) + "\n")
    config = {
        "data": {"dataset": "jsonl", "train_file": str(tmp_path / "train.jsonl"),
                 "test_file": str(tmp_path / "test.jsonl"), "image_size": 64,
                 "val_fraction": 0.25},
        "encoder": {"cache_dir": str(tmp_path / "cache"), "cache_batch_size": 8},
        "model": {"embed_dim": 8, "hidden_size": 8, "tf_heads": 2, "tf_layers": 1},
        "train": {"out_dir": str(tmp_path / "runs" / "{model.name}" / "seed{seed}"),
                  "epochs": 1, "batch_size": 8, "monitor": "val_o_f1", "monitor_mode": "max",
                  "progress": False, "device": "cpu"},
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_run_folders_and_resume_refusal(tmp_path, capsys):
    config = _tiny_sets_config(tmp_path)

    def train(*words: str) -> tuple[int, dict | None, str]:
        rc = main(["sets", "train", "--config", config, *words])
        out, err = capsys.readouterr()
        return rc, (json.loads(out) if rc == 0 else None), err

    rc, first, _ = train()
    assert rc == 0 and first["best_checkpoint"].startswith(str(tmp_path / "runs/ff_bce/seed0"))
    # another model trains into its own folder (it wrote into ff_bce's and then a plain
    # `sets train` crashed loading the lstm's weights)
    rc, other, _ = train("model.name=lstm")
    assert rc == 0 and "/runs/lstm/seed0/" in other["best_checkpoint"]
    rc, again, _ = train()  # same settings: the finished run is reused
    assert rc == 0 and again["steps"] == first["steps"]
    # another learning rate: refused (it returned the old result without training)
    rc, _, err = train("--set", "train.lr=0.01")
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "holds a run with other settings: train.lr 0.001 -> 0.01" in err
    assert "--force" in err and "--new-run" in err
    rc, _, err = train("--set", "model.dropout=0.5", "--set", "train.weight_decay=0.1")
    assert rc == 1 and "model.dropout 0.3 -> 0.5, train.weight_decay 0.0 -> 0.1" in err
    rc, new, _ = train("--new-run", "--set", "train.lr=0.01")
    assert rc == 0 and "/runs/ff_bce/seed0-2/" in new["best_checkpoint"]
    rc, forced, err = train("--force", "--set", "train.lr=0.01", "--set", "train.epochs=2")
    assert rc == 0 and forced["epochs"] == 2 and forced["steps"] > first["steps"]
    assert "/runs/ff_bce/seed0/" in forced["best_checkpoint"]
    rc, seed1, _ = train("train.seed=1")  # the seed names the folder too
    assert rc == 0 and "/runs/ff_bce/seed1/" in seed1["best_checkpoint"]


def test_interrupted_index_build_resumes_only_with_its_settings(tmp_path, capsys, monkeypatch):
    from beyondvis.retrieval import BLCFIndex

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.RandomState(0)
    for i in range(3):
        Image.fromarray(rng.randint(0, 255, (96, 128, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    out = tmp_path / "idx"
    build = ["index", "build", str(photos), "--out", str(out), "--threads", "1", "--device", "cpu"]
    real_add = BLCFIndex.add

    def killed(self, paths, work_dir=None, **kw):
        (work_dir / "chunk_00000.npz").write_bytes(b"partial")  # what a killed build leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(BLCFIndex, "add", killed)
    assert main([*build, "--max-side", "128"]) != 0  # main reports the interrupt
    assert (out / "work" / "build_settings.json").is_file() and not (out / "manifest.json").exists()
    monkeypatch.setattr(BLCFIndex, "add", real_add)
    capsys.readouterr()
    # another --max-side would mix maps of two sizes in one index: refused, naming the key
    assert main([*build, "--max-side", "200"]) == 1
    err = capsys.readouterr().err
    assert (
        "holds an interrupted build with other settings: config.features.max_side 128 -> 200" in err
    )
    assert len(err.strip().splitlines()) == 1
    (out / "work" / "chunk_00000.npz").unlink()  # (the fake chunk is no real one)
    assert main([*build, "--max-side", "128"]) == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["features"]["max_side"] == 128
