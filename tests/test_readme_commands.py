"""Every ``beyondvis ...`` command in README.md runs as written from a folder that is not the
repository root, through the installed console script, on small data this test builds.

The commands are read from README.md's ``bash`` code blocks, so an edited or added command is
tested as it now reads. Optional parts written as placeholders (``[--json]``, ``--box
x0,y0,x1,y1``) are mapped to concrete text in PLACEHOLDERS; names the README uses for inputs
(``dish.jpg``, ``PHOTOS``, ``IMAGES``, ``plant.png``) are real files of the work folder, and
``$BEYONDVIS_DATA`` points at tiny copies of the dataset layouts. Slow commands are made quick
only with their documented flags (CHEAP). A command the tables below do not know fails the test,
so a new README command cannot go untested.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
CONSOLE = Path(sys.executable).with_name("beyondvis")
GROUPS = {"data", "features", "generation", "index", "recipes", "rsis", "sets"}

# README text -> what this test runs instead (the README's own words for an optional part).
PLACEHOLDERS = {
    "[more.jpg ...] [--json] [--retrieve K]": "more.jpg --json --retrieve 2",
    "[--index INDEX]": "--index INDEX",
    "--box x0,y0,x1,y1": "--box 8,8,160,120",
    "--root DIR": "--root $BEYONDVIS_DATA/miml_scenes",
    "--bundle DIR": "--bundle BUNDLE",  # built by _bundle() with the docs' recipes commands
}
# Documented flags that keep each command cheap on a shared CPU (one thread, fewer photos,
# one epoch). Every command the README shows must have an entry here, even an empty one.
CHEAP: dict[str, list[str]] = {
    "--help": [],
    "classify": [],
    "cook": ["--threads", "1"],
    "demo": ["--device", "cpu"],
    "features cache": ["--batch-size", "4", "--device", "cpu"],
    "generation evaluate": ["--limit", "2", "--decode", "greedy", "--threads", "1"],
    "index build": ["--threads", "1", "--workers", "0", "--device", "cpu"],
    "index search": ["--threads", "1", "--device", "cpu"],
    "recipes prepare": ["--tagger-epochs", "1"],
    "recipes search": ["--device", "cpu"],
    "rsis predict": ["--threads", "1", "--device", "cpu"],
    "serve": ["--threads", "1", "--device", "cpu"],
    "sets eval": ["--threads", "1"],
    # overrides before the options: argparse takes no positionals after --threads N
    "sets train": ["train.epochs=1", "train.device=cpu", "--threads", "1"],
}
# Commands that read what an earlier README command writes.
NEEDS = {"serve": "index build", "sets eval": "sets train", "recipes search": "recipes prepare"}
TIMEOUT = 900  # seconds per command: generous, the CPU is shared with other jobs


def readme_commands(text: str) -> list[str]:
    """The ``beyondvis`` lines of the README's bash blocks, continuations joined, comments cut."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = " ".join(shlex.split(line, comments=True))
            if words.startswith("beyondvis "):
                commands.append(line.split(" #")[0].strip())
    return commands


def command_key(argv: list[str]) -> str:
    """``beyondvis index build ...`` -> ``index build``; ``beyondvis cook ...`` -> ``cook``."""
    if len(argv) > 2 and argv[1] in GROUPS:
        return f"{argv[1]} {argv[2]}"
    return argv[1]


def parts(command: str) -> list[list[str]]:
    """The ``&&``-joined steps of a README line, placeholders mapped, as argv lists."""
    for written, concrete in PLACEHOLDERS.items():
        command = command.replace(written, concrete)
    steps, step = [], []
    for word in shlex.split(command):
        if word == "&&":
            steps.append(step)
            step = []
        else:
            step.append(word)
    return [*steps, step]


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def _photo(path: Path, seed: int, size: tuple[int, int] = (160, 120)) -> Path:
    """A smooth colour field (JPEG or PNG by the suffix): real image content, no test fixture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    small = np.clip(rng.integers(30, 225, 3) + rng.integers(-60, 60, (6, 8, 3)), 0, 255)
    Image.fromarray(small.astype(np.uint8)).resize(size, Image.BICUBIC).save(path)
    return path


def _food101(root: Path) -> None:
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("apple_pie\nbibimbap\n")
    (root / "meta" / "labels.txt").write_text("Apple pie\nBibimbap\n")
    (root / "meta" / "test.txt").write_text("apple_pie/1\nbibimbap/2\nbibimbap/3\n")
    for name, seed in (("apple_pie/1", 1), ("bibimbap/2", 2), ("bibimbap/3", 3)):
        _photo(root / "images" / f"{name}.jpg", seed)


def _recipe1m(root: Path) -> None:
    """Layer 1/2 and photos of 96 recipes of four dishes: 12 training recipes a dish, so every
    ingredient and word clears the default minimum counts of ``recipes prepare`` (10)."""
    dishes = {
        "tomato soup": ["tomato", "onion", "garlic", "olive oil"],
        "chicken curry": ["chicken", "onion", "curry powder", "rice"],
        "apple pie": ["apple", "sugar", "butter", "flour"],
        "green salad": ["lettuce", "cucumber", "olive oil", "lemon juice"],
    }
    layer1, layer2 = [], []
    for i in range(96):
        dish = list(dishes)[i % 4]
        names = dishes[dish]
        # blocks of four recipes, one per dish: every split holds every dish, and half the
        # blocks list bare names (the ingredient tagger learns its names from those lines)
        partition = ["train", "train", "val", "test"][(i // 4) % 4] if i >= 8 else "train"
        bare = (i // 4) % 2 == 0
        lines = [n.title() if bare else f"{1 + i % 3} cups chopped {n}" for n in names]
        image_id = f"{i:04d}abcd.jpg"
        _photo(root / "images" / partition / Path(*image_id[:4]) / image_id, 40 + i % 4)
        layer1.append(
            {
                "id": f"r{i:03d}",
                "title": f"Easy {dish}",
                "partition": partition,
                "url": "",
                "ingredients": [{"text": line} for line in lines],
                "instructions": [
                    {"text": f"Prepare the {names[0]} and the {names[1]}."},
                    {"text": f"Cook the {dish} for {5 + i} minutes."},  # no duplicates
                    {"text": "Serve warm."},
                ],
            }
        )
        layer2.append({"id": f"r{i:03d}", "images": [{"id": image_id}]})
    (root / "layer1.json").write_text(json.dumps(layer1))
    (root / "layer2.json").write_text(json.dumps(layer2))


def _miml(root: Path) -> None:
    labels = ["desert", "mountains", "sea", "sunset", "trees"]
    rows = []
    for i in range(30):
        flags = [((i + 1) >> k) & 1 for k in range(5)]  # never an empty set
        rows.append(f"{i}.jpg," + ",".join(map(str, flags)))
        _photo(root / "images" / f"{i}.jpg", 100 + i, (120, 90))
    (root / "miml_labels_1.csv").write_text("\n".join(["Filenames," + ",".join(labels), *rows]))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    """A work folder away from the repository with the README's input names in it."""
    root = tmp_path_factory.mktemp("readme")
    from beyondvis.recipes.generation import DEMO_PHOTO

    for name in ("dish.jpg", "photo.jpg", "query.jpg"):
        shutil.copyfile(DEMO_PHOTO, root / name)
    _photo(root / "more.jpg", 1)
    for i in range(6):
        _photo(root / "PHOTOS" / f"p{i}.jpg", 10 + i)
    shutil.copyfile(DEMO_PHOTO, root / "PHOTOS" / "food.jpg")
    for i in range(3):
        _photo(root / "IMAGES" / f"i{i}.png", 20 + i)
    _photo(root / "plant.png", 30, (128, 128))
    data = root / "data"
    _food101(data / "food101_mini")
    _recipe1m(data / "recipe1m_mini")
    _miml(data / "miml_scenes")
    env = {**os.environ, "BEYONDVIS_DATA": str(data), "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{CONSOLE.parent}{os.pathsep}{env.get('PATH', '')}"
    return {"root": root, "env": env, "done": set()}


def _expand(word: str, env: dict) -> str:
    """``$NAME`` / ``${NAME}`` from the commands' environment, as the shell would."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], word)


def _run(argv: list[str], work: dict) -> subprocess.CompletedProcess:
    argv = [_expand(w, work["env"]) for w in argv]
    argv = [str(CONSOLE), *argv[1:], *CHEAP[command_key(argv)]]
    return subprocess.run(
        argv, cwd=work["root"], env=work["env"], capture_output=True, text=True, timeout=TIMEOUT
    )


def _check(result: subprocess.CompletedProcess, shown: str) -> None:
    assert result.returncode == 0, f"{shown}\nexit {result.returncode}\n{result.stderr[-3000:]}"


def _run_readme(key: str, work: dict) -> None:
    """Run the README command whose first step is ``key`` (what a later command reads)."""
    if key in work["done"]:
        return
    [command] = [c for c in COMMANDS if command_key(shlex.split(c)) == key]
    for argv in parts(command):
        _check(_run(argv, work), command)
    work["done"].add(key)


def _bundle(work: dict) -> None:
    """A photo -> recipe search bundle from the prepared tiny Recipe1M (work/recipes), built
    with the commands of docs/recipes-retrieval.md, each as small as its flags allow."""
    steps = [
        "recipes text-features --data work/recipes --w2v-dim 8 --skip-steps 3 --threads 1",
        "recipes image-features --data work/recipes --root $BEYONDVIS_DATA/recipe1m_mini",
        "recipes train --data work/recipes --out work/run --threads 1 --set stage1_epochs=1"
        " --set stage2_epochs=1 --set repeats=1 --set emb_dim=16 --set ingr_hidden=8"
        " --set instr_hidden=8 --set adapter_hidden=8",
        "recipes index --data work/recipes --model work/run/model.pt --out BUNDLE",
    ]
    for step in steps:
        argv = [str(CONSOLE), *(_expand(w, work["env"]) for w in shlex.split(step))]
        result = subprocess.run(
            argv, cwd=work["root"], env=work["env"], capture_output=True, text=True,
            timeout=TIMEOUT,
        )  # fmt: skip
        _check(result, f"beyondvis {step}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(argv: list[str], work: dict, shown: str) -> None:
    """Start the server, wait for its Cook page, stop it with Ctrl-C: a clean exit is 0."""
    port = _free_port()
    argv = [str(CONSOLE), *argv[1:], *CHEAP["serve"], "--port", str(port)]
    proc = subprocess.Popen(
        argv, cwd=work["root"], env=work["env"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline, page = time.monotonic() + TIMEOUT, None
        while page is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/cook", timeout=5) as r:
                    page = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None, f"{shown}: no page on port {port}"
        assert "<html" in page.lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/search", timeout=30) as r:
            assert r.status == 200  # the --index page is served too
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # Ctrl-C is how the README stops it: 130 (the shell's code for SIGINT) after a clean
    # shutdown of the app, which uvicorn logs.
    assert proc.returncode in (0, 130), f"{shown}\nexit {proc.returncode}\n{out[-3000:]}"
    assert "Application shutdown complete" in out, out[-3000:]


def test_readme_commands_are_found_and_known():
    keys = [command_key(argv) for c in COMMANDS for argv in parts(c)]
    assert len(COMMANDS) >= 10, COMMANDS
    assert set(keys) == set(CHEAP), "README commands and this test's tables disagree"
    text = README.read_text(encoding="utf-8")
    assert all(written in text for written in PLACEHOLDERS), "a placeholder left the README"


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c.split()[1:3]) for c in COMMANDS])
def test_readme_command_runs_from_another_folder(command, work):
    steps = parts(command)
    key = command_key(steps[0])
    if key in work["done"]:
        return  # already run as written (and checked) for a later command that reads it
    if key in NEEDS:
        _run_readme(NEEDS[key], work)
    if key == "recipes search":
        _bundle(work)
    if key == "serve":
        _serve(steps[0], work, command)
        return
    for argv in steps:
        _check(_run(argv, work), command)
    work["done"].add(key)


def test_readme_python_example_runs_from_another_folder(work):
    [example] = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=work["root"], env=work["env"],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    _check(result, example)
    assert "efficientnet_lite0" in result.stdout
