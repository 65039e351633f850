"""MS COCO 2014 as label sets: an image's set is the categories of its instance annotations.

Layout::

    annotations/instances_train2014.json   (and instances_val2014.json)
    train2014/<file_name>                   (and val2014/)

Train/val = 90/10 of train2014 (deterministic), test = the whole val2014 (the test server
cannot score sets). Images without any annotation are kept, as empty sets. Labels are category
names in the order their first annotation appears; the vocabulary follows category ids.
The JSON is read directly (pycocotools' COCO class would add a large index we do not need and
prints to stdout, which would corrupt ``--json`` output).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from beyondvis.data.sets_readers import (
    SetDataError,
    SetRecord,
    SetSplits,
    require_file,
    split_train_val,
)


def read_coco_instances(
    annotation_file: str | os.PathLike, image_dir: str | os.PathLike
) -> tuple[list[SetRecord], list[str]]:
    path = require_file(Path(annotation_file), "COCO instances file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SetDataError(f"{path}: malformed JSON ({exc})") from None
    except RecursionError:
        raise SetDataError(f"{path}: JSON nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise SetDataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise SetDataError(f"{path}: no {key!r} list (not a COCO instances file)")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    name_of = {c["id"]: c["name"] for c in categories}
    labels_of: dict[int, list[str]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        image_id, cat = ann.get("image_id"), ann.get("category_id")
        if image_id not in labels_of or cat not in name_of:
            raise SetDataError(
                f"{path}: annotation {ann.get('id')} refers to unknown image {image_id} or "
                f"category {cat}"
            )
        labels_of[image_id].append(name_of[cat])
    image_dir = Path(image_dir)
    records = [
        SetRecord(str(image_dir / img["file_name"]), labels_of[img["id"]])
        for img in sorted(data["images"], key=lambda i: i["id"])
    ]
    return records, [c["name"] for c in categories]


def read_coco2014(
    root: str | os.PathLike, *, val_fraction: float = 0.1, split_seed: int = 0
) -> SetSplits:
    root = Path(root)
    train_all, vocab = read_coco_instances(
        root / "annotations" / "instances_train2014.json", root / "train2014"
    )
    test, test_vocab = read_coco_instances(
        root / "annotations" / "instances_val2014.json", root / "val2014"
    )
    if test_vocab != vocab:
        raise SetDataError("train2014 and val2014 list different categories")
    train, val = split_train_val(train_all, val_fraction, split_seed)
    return SetSplits(train, val, test, vocab, name="coco2014")
