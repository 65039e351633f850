"""Dataset readers in the official layouts of the datasets the thesis uses.

``load_dataset(name, root)`` reads any of them; ``list_datasets(task)`` names them by task::

    >>> from beyondvis.data import list_datasets, load_dataset
    >>> list_datasets("instances")
    ['cityscapes', 'cvppp', 'pennfudan', 'voc_sbd']
    >>> splits = load_dataset("miml")       # root=None: $BEYONDVIS_DATA/miml_scenes

* sets: voc, coco, nuswide, ade20k, miml, jsonl, food101 -> :class:`SetSplits`
* instances: cvppp, pennfudan, voc_sbd, cityscapes -> :class:`InstanceSplits`
* retrieval: oxford (a ``gt_files`` folder) -> ``list[OxfordQuery]``, revisited (a
  ``gnd_*.pkl`` file) -> :class:`RevisitedGroundTruth`
* recipes: recipe1m -> :class:`Recipe1M`

Every reader raises its dataset's error class (a ``ValueError`` naming the file) on a missing
or malformed file. The readers only need NumPy and Pillow: importing them never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from beyondvis.utils import lazy_exports, shared_data_root

# Which task each dataset serves. The set readers' names are sets_readers.DATASETS (checked by
# tests/test_public_api.py); the instance names are the RSIS ``data.dataset`` choices.
DATASET_TASKS = {
    **dict.fromkeys(("voc", "coco", "nuswide", "ade20k", "miml", "jsonl", "food101"), "sets"),
    **dict.fromkeys(("cvppp", "pennfudan", "voc_sbd", "cityscapes"), "instances"),
    "oxford": "retrieval",
    "revisited": "retrieval",
    "recipe1m": "recipes",
}
# Folder under $BEYONDVIS_DATA that ``root=None`` reads (the set readers keep their own).
DEFAULT_FOLDERS = {
    "cvppp": "cvppp_a1",
    "pennfudan": "PennFudanPed",
    "voc_sbd": "VOCdevkit",
    "cityscapes": "cityscapes",
    "recipe1m": "recipe1m_mini",
}


def list_datasets(task: str | None = None) -> list[str]:
    """Names :func:`load_dataset` reads, all or those of one task (sets, instances, ...)."""
    tasks = sorted(set(DATASET_TASKS.values()))
    if task is not None and task not in tasks:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(tasks)}")
    return sorted(n for n, t in DATASET_TASKS.items() if task is None or t == task)


def _root(name: str, root: str | os.PathLike | None) -> Path:
    if root is not None:
        return Path(root)
    folder = DEFAULT_FOLDERS.get(name)
    found = shared_data_root(folder) if folder else None
    if found is None:
        where = f"$BEYONDVIS_DATA/{folder} does not exist" if folder else "it has no default"
        raise ValueError(f"no root given for dataset {name!r} and {where}")
    return Path(found)


def load_dataset(name: str, root: str | os.PathLike | None = None, **kwargs: Any) -> Any:
    """Read dataset ``name`` (see :func:`list_datasets`) from ``root`` in its official layout.

    ``root=None`` reads ``$BEYONDVIS_DATA/<its folder>``. ``kwargs`` go to the reader: for set
    datasets ``val_fraction``/``split_seed`` (:func:`load_set_dataset`); for ``cvppp`` and
    ``pennfudan`` ``test_fraction``/``val_fraction``/``seed``; for ``voc_sbd`` ``sbd_root``,
    ``val_fraction``, ``seed``; for ``recipe1m`` ``check_images``.
    """
    task = DATASET_TASKS.get(name)
    if task is None:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    if task == "sets":
        from beyondvis.data.sets_readers import load_set_dataset

        return load_set_dataset(name, root, **kwargs)
    path = _root(name, root)
    if name == "cvppp":
        from beyondvis.data.cvppp import read_cvppp

        return read_cvppp(path, **kwargs)
    if name == "pennfudan":
        from beyondvis.data.pennfudan import read_pennfudan

        return read_pennfudan(path, **kwargs)
    if name == "voc_sbd":
        from beyondvis.data.instance_seg import read_voc_sbd

        return read_voc_sbd(path, **kwargs)
    if name == "cityscapes":
        from beyondvis.data.instance_seg import read_cityscapes_instances

        return read_cityscapes_instances(path, **kwargs)
    if name == "oxford":
        from beyondvis.data.oxford import read_gt_files

        return read_gt_files(path, **kwargs)
    if name == "revisited":
        from beyondvis.data.oxford import read_revisited_gnd

        return read_revisited_gnd(path, **kwargs)
    from beyondvis.data.recipe1m import load_recipe1m

    return load_recipe1m(path, **kwargs)


_EXPORTS = {
    # image-to-set datasets (thesis ch. 5)
    **dict.fromkeys(
        ("SetDataError", "SetRecord", "SetSplits", "load_set_dataset", "read_food101_sets"),
        ".sets_readers",
    ),
    "read_jsonl_sets": ".jsonl_sets",
    # instance segmentation (ch. 6)
    **dict.fromkeys(
        (
            "InstanceDataError",
            "InstanceRecord",
            "InstanceSample",
            "InstanceSplits",
            "read_annotation",
            "read_instances",
        ),
        ".instance_seg",
    ),
    "read_leaf_counts": ".cvppp",
    # instance search (ch. 2-3): Oxford/Paris ground truth and the synthetic-instance benchmark
    **dict.fromkeys(
        (
            "GroundTruthError",
            "OxfordQuery",
            "RevisitedGroundTruth",
            "read_gt_files",
            "read_revisited_gnd",
            "write_gt_files",
        ),
        ".oxford",
    ),
    "InstanceConfig": ".instances",
    "make_instances": ".instances",
    # recipes (ch. 7-9)
    **dict.fromkeys(
        ("Recipe", "Recipe1M", "Recipe1MError", "load_recipe1m", "read_recipes_jsonl"),
        ".recipe1m",
    ),
    **dict.fromkeys(("Food101Error", "Food101Item", "Food101Split", "load_food101"), ".food101"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["DATASET_TASKS", "DEFAULT_FOLDERS", "list_datasets", "load_dataset", *_EXPORTS]
