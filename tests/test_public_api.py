"""The public API: every system's list_*/create_*/load_* factories, re-exported from ``beyondvis``
lazily, every name in every ``__all__`` resolving, and a CLI that imports only public names."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import beyondvis

SRC = Path(beyondvis.__file__).resolve().parent
PACKAGES = sorted(
    "beyondvis" + ("." + ".".join(p.parent.relative_to(SRC).parts) if p.parent != SRC else "")
    for p in SRC.rglob("__init__.py")
)


# ----------------------------------------------------------------------------- __all__
def test_every_package_has_a_documented_all():
    for name in PACKAGES:
        module = importlib.import_module(name)
        assert module.__doc__ and module.__doc__.strip(), f"{name} has no docstring"
        assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"
        assert len(set(module.__all__)) == len(module.__all__), f"{name}: __all__ repeats names"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_resolves(package):
    module = importlib.import_module(package)
    listed = set(dir(module))
    for name in module.__all__:
        value = getattr(module, name)  # AttributeError / ImportError fails the test
        # a name shadowed by a submodule of the same name would silently give the module
        assert not isinstance(value, types.ModuleType), f"{package}.{name} is a module"
        assert name in listed, f"{package}.{name} is missing from dir()"


def test_unknown_names_raise_attribute_error():
    for package in ("beyondvis", "beyondvis.sets", "beyondvis.retrieval", "beyondvis.data"):
        with pytest.raises(AttributeError, match="no_such_name"):
            _ = importlib.import_module(package).no_such_name


def test_top_level_reexports_are_the_package_objects():
    for name in beyondvis.__all__:
        if name == "__version__":
            continue
        home = importlib.import_module(beyondvis._EXPORTS[name])
        assert name in getattr(home, "__all__", [name]), f"{name} is not public in its package"
        assert getattr(beyondvis, name) is getattr(home, name)


def test_import_beyondvis_is_lazy():
    """``import beyondvis`` and the torch-free parts of the API must not import torch."""
    code = (
        "import sys, beyondvis, beyondvis.data, beyondvis.recipes, beyondvis.retrieval\n"
        "import beyondvis.sets, beyondvis.segmentation, beyondvis.recipes.generation\n"
        "names = beyondvis.list_datasets(), beyondvis.list_recipe_models(), dir(beyondvis)\n"
        "from beyondvis.recipes.generation import PACKAGE_BUNDLE, OrtCookModel, has_onnx\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


# ----------------------------------------------------------------------------- list_*
def test_every_list_function_lists_its_registry():
    from beyondvis.backbones import BACKBONES
    from beyondvis.data.sets_readers import DATASETS as SET_DATASETS
    from beyondvis.retrieval.index import SHIPPED
    from beyondvis.segmentation.experiment import DATASETS as INSTANCE_DATASETS
    from beyondvis.sets.models import SET_MODELS

    lists = {n: getattr(beyondvis, n)() for n in beyondvis.__all__ if n.startswith("list_")}
    for name, names in lists.items():
        assert names and all(isinstance(x, str) for x in names), name
    assert lists["list_backbones"] == BACKBONES.names()
    assert lists["list_set_models"] == SET_MODELS.names()
    assert lists["list_index_methods"] == ["blcf", *(f"blcf.{n}" for n in SHIPPED), "frcnn"]
    assert lists["list_segmentation_models"] == lists["list_rsis_configs"]
    assert "cvppp" in lists["list_segmentation_models"]
    assert "miml" in lists["list_set_configs"]
    assert lists["list_recipe_models"] == ["cook", "recipe_retriever"]
    assert beyondvis.list_datasets("sets") == sorted(SET_DATASETS)
    assert beyondvis.list_datasets("instances") == sorted(INSTANCE_DATASETS)
    assert set(lists["list_datasets"]) == {
        n
        for task in ("sets", "instances", "retrieval", "recipes")
        for n in beyondvis.list_datasets(task)
    }
    with pytest.raises(ValueError, match="unknown task"):
        beyondvis.list_datasets("video")


# ----------------------------------------------------------------------------- create_*
def test_create_backbone_without_weights():
    import torch

    backbone = beyondvis.create_backbone("efficientnet_lite0", pretrained=False)
    maps = backbone.forward_features(torch.zeros(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [i.channels for i in backbone.feature_info]


def test_create_set_model_builds_every_registered_model():
    import torch

    x = torch.randn(2, 16)
    for name in beyondvis.list_set_models():
        model = beyondvis.create_set_model(name, num_labels=5, max_set_size=3, feature_dim=16)
        model.eval()
        multi_hot, scores = model.predict(x)
        assert multi_hot.shape == scores.shape == (2, 5), name
    with pytest.raises(KeyError, match="unknown set model"):
        beyondvis.create_set_model("nope", num_labels=5, max_set_size=3, feature_dim=16)


def test_create_segmentation_model_follows_its_config():
    import torch

    from beyondvis.segmentation import load_rsis_config

    cfg = load_rsis_config("cvppp").model
    model = beyondvis.create_segmentation_model("cvppp", pretrained=False, num_classes=2)
    assert (model.config.hidden, model.config.skip, model.config.num_layers) == (
        cfg.hidden,
        cfg.skip,
        cfg.num_layers,
    )
    assert model.config.num_classes == 2 and model.encoder is not None
    out = model.eval()(torch.zeros(1, 3, 64, 64), steps=2)
    assert out["stop_logits"].shape == (1, 2)
    small = beyondvis.create_segmentation_model("cvppp", pretrained=False, hidden=16)
    assert small.config.hidden == 16


def test_create_index_methods():
    from beyondvis.retrieval import IndexFormatError, shipped_model

    detector = beyondvis.create_index("frcnn", max_side=160)
    assert isinstance(detector, beyondvis.DetectorIndex) and len(detector) == 0
    assert detector.config.max_side == 160

    fitted = beyondvis.create_index("blcf", codebook_size=64, max_side=128, tfidf=False)
    assert not fitted.is_trained and len(fitted) == 0
    assert (fitted.config.codebook_size, fitted.config.features.max_side) == (64, 128)
    assert fitted.config.tfidf is False

    shipped = shipped_model("generic")
    index = beyondvis.create_index("blcf.generic", max_side=256, centre_prior=False)
    assert index.is_trained
    assert index.config.codebook_size == shipped.codebook.size
    assert index.config.features.backbone == shipped.config.features.backbone
    assert (index.config.features.max_side, index.config.centre_prior) == (256, False)
    with pytest.raises(IndexFormatError, match="trained on"):
        beyondvis.create_index("blcf.generic", backbone="resnet50")
    with pytest.raises(TypeError, match="unknown index setting"):
        beyondvis.create_index("blcf", codebok_size=64)
    with pytest.raises(ValueError, match="unknown index method"):
        beyondvis.create_index("ivf")


# ----------------------------------------------------------------------------- load_*
def _png(path: Path, array: np.ndarray, mode: str = "RGB") -> None:
    Image.fromarray(array.astype(np.uint8), mode).save(path)


def test_load_dataset_reads_each_kind(tmp_path, monkeypatch):
    from beyondvis.data import InstanceSplits, OxfordQuery, SetSplits, write_gt_files

    # sets: JSON Lines
    for i in range(4):
        _png(tmp_path / f"{i}.png", np.full((8, 8, 3), 40 * i))
    rows = [{"image": f"{i}.png", "labels": ["a"] if i % 2 else ["a", "b"]} for i in range(4)]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    sets = beyondvis.load_dataset(
        "jsonl", train=tmp_path / "train.jsonl", test=tmp_path / "test.jsonl", val_fraction=0.25
    )
    assert isinstance(sets, SetSplits) and sorted(sets.vocab) == ["a", "b"]
    assert len(sets.train) + len(sets.val) == 4 and len(sets.test) == 4

    # instances: a CVPPP-layout folder of four plants with two leaves each
    cvppp = tmp_path / "cvppp"
    cvppp.mkdir()
    for i in range(1, 5):
        label = np.zeros((16, 16), np.uint8)
        label[2:6, 2:6], label[9:14, 9:14] = 1, 2
        _png(cvppp / f"plant{i:03d}_rgb.png", np.full((16, 16, 3), 90))
        _png(cvppp / f"plant{i:03d}_label.png", label, "L")
    plants = beyondvis.load_dataset("cvppp", cvppp, test_fraction=0.25, val_fraction=0.0)
    assert isinstance(plants, InstanceSplits) and plants.name == "cvppp"
    assert len(plants.train) + len(plants.val) + len(plants.test) == 4

    # retrieval: Oxford gt_files written and read back
    query = OxfordQuery("q_1", "photo_1", (1.0, 2.0, 30.0, 40.0), good=["a"], junk=["b"])
    write_gt_files(tmp_path / "gt", [query])
    assert beyondvis.load_dataset("oxford", tmp_path / "gt") == [query]

    # root=None reads $BEYONDVIS_DATA/<folder> and says which folder is missing
    monkeypatch.setenv("BEYONDVIS_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="cvppp_a1"):
        beyondvis.load_dataset("cvppp")
    with pytest.raises(ValueError, match="unknown dataset"):
        beyondvis.load_dataset("imagenet")


def test_load_recipe_models():
    from beyondvis.recipes import RecipeRetriever
    from beyondvis.recipes.generation import OrtCookModel

    cook = beyondvis.load_cook_model(runtime="onnxruntime")
    assert isinstance(cook, OrtCookModel)
    assert isinstance(beyondvis.load_recipe_model("recipe_retriever"), RecipeRetriever)
    with pytest.raises(ValueError, match="unknown recipe model"):
        beyondvis.load_recipe_model("chef")


# ----------------------------------------------------------------------------- the CLI
def _package_all(module: str) -> set[str] | None:
    """``__all__`` of ``module`` when it is ``beyondvis``, one of its packages or a top-level
    module with an ``__all__`` (``beyondvis.errors``), else None."""
    if not _is_package(module):
        top_level = module.count(".") == 1 and importlib.util.find_spec(module) is not None
        exported = getattr(importlib.import_module(module), "__all__", None) if top_level else None
        return None if exported is None else set(exported)
    return set(importlib.import_module(module).__all__)


def _is_package(module: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a name inside a module (``beyondvis.cli.cook.card_json``)
        return False
    return spec is not None and spec.submodule_search_locations is not None


def private_imports(source: str, own: str) -> list[str]:
    """Imports (and attribute uses of imported packages) of names that no package exports.

    ``own`` is the importing package (``beyondvis.cli``): its own modules are not checked.
    """
    problems = []
    packages: dict[str, str] = {}  # local alias -> the beyondvis package it names

    def check(module: str, name: str, line: int) -> None:
        exported = _package_all(module)
        if exported is None:
            problems.append(f"line {line}: {module} is a module, not a package")
        elif (name.startswith("_") and not name.endswith("__")) or (
            name not in exported and not _is_package(f"{module}.{name}")
        ):
            problems.append(f"line {line}: {module}.{name} is not in {module}.__all__")

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if not module.startswith("beyondvis") or module.startswith(own):
                continue
            for alias in node.names:
                check(module, alias.name, node.lineno)
                if _is_package(f"{module}.{alias.name}"):
                    packages[alias.asname or alias.name] = f"{module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("beyondvis") or alias.name.startswith(own):
                    continue
                if not _is_package(alias.name):
                    problems.append(f"line {node.lineno}: import of module {alias.name}")
                elif alias.asname:
                    packages[alias.asname] = alias.name
                elif alias.name == "beyondvis":
                    packages["beyondvis"] = "beyondvis"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in packages
        ):
            check(packages[node.value.id], node.attr, node.lineno)
    return problems


def test_private_import_checker_flags_what_it_should():
    own = "beyondvis.cli"
    assert private_imports("from beyondvis.retrieval import BLCFIndex", own) == []
    assert private_imports("from beyondvis import segmentation as ex\nex.read_splits", own) == []
    assert private_imports("from beyondvis.cli.common import CLIError", own) == []
    assert private_imports("from beyondvis.retrieval.index import BLCFIndex", own)
    assert private_imports("from beyondvis.sets import _backbone", own)
    assert private_imports("from beyondvis.sets import not_a_name", own)
    assert private_imports("import beyondvis.sets.models", own)
    assert private_imports("from beyondvis import segmentation as ex\nex._SafeViews", own)
    assert private_imports("import beyondvis\nbeyondvis.no_such_name", own)
    assert private_imports("import beyondvis\nbeyondvis.__version__", own) == []
    assert private_imports("from beyondvis.errors import FormatError", own) == []
    assert private_imports("from beyondvis.device import resolve_device", own)  # no __all__


@pytest.mark.parametrize("path", sorted((SRC / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_imports_only_public_names(path):
    assert private_imports(path.read_text(encoding="utf-8"), "beyondvis.cli") == []


@pytest.mark.parametrize("path", sorted((SRC / "web").glob("*.py")), ids=lambda p: p.name)
def test_web_imports_only_public_names(path):
    problems = private_imports(path.read_text(encoding="utf-8"), "beyondvis.web")
    # The web card reuses the CLI's JSON shape of a card (``beyondvis.cli.cook.card_json``)
    # until that moves into the library; nothing else may reach into another package's modules.
    problems = [p for p in problems if "beyondvis.cli.cook is a module" not in p]
    assert problems == []
