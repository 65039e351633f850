"""MIML natural scenes (Zhou & Zhang 2007): 2,000-ish scenes, labels desert, mountains, sea,
sunset, trees.

Layout (as in ``$BEYONDVIS_DATA/miml_scenes``)::

    miml_labels_1.csv   Filenames,desert,mountains,sea,sunset,trees   (one-hot rows)
    miml_labels_2.csv   Filenames,labels                              ("desert,mountains")
    images/<Filenames>

MIML has no official split. Ours is deterministic: the rows sorted by file name are permuted
with ``split_seed`` (NumPy RandomState); the first ``test_fraction`` (20%) are the test set, the
next ``val_fraction`` (10% of all) the validation set, the rest training. With the 1,599
shared images and seed 0 that is 1,119 / 160 / 320 images.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np

from beyondvis.data.sets_readers import SetDataError, SetRecord, SetSplits, require_file
from beyondvis.utils.paths import is_plain_file_name

log = logging.getLogger(__name__)

MIML_LABELS = ["desert", "mountains", "sea", "sunset", "trees"]


def read_miml_records(root: str | os.PathLike) -> tuple[list[SetRecord], list[str]]:
    """All rows of ``miml_labels_1.csv`` (one-hot) as records, with the label columns."""
    root = Path(root)
    path = require_file(root / "miml_labels_1.csv", "MIML label file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise SetDataError(f"{path} is empty") from None
        if not header or header[0].strip().lower() != "filenames" or len(header) < 2:
            raise SetDataError(f"{path}: expected a header 'Filenames,<label>,...', got {header}")
        vocab = [h.strip() for h in header[1:]]
        records = []
        seen: dict[str, tuple[int, list[str]]] = {}  # file name -> (first line, labels)
        duplicates = 0
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise SetDataError(f"{path}:{line_no}: expected {len(header)} fields, got {row}")
            try:
                flags = [int(v) for v in row[1:]]
            except ValueError:
                raise SetDataError(
                    f"{path}:{line_no}: label flags must be 0/1, got {row}"
                ) from None
            if any(f not in (0, 1) for f in flags):
                raise SetDataError(f"{path}:{line_no}: label flags must be 0/1, got {row}")
            labels = [name for name, flag in zip(vocab, flags) if flag]
            name = row[0].strip()
            if not is_plain_file_name(name):
                raise SetDataError(
                    f"{path}:{line_no}: {name!r} is not a plain file name (images/<name>)"
                )
            if name in seen:
                first, first_labels = seen[name]
                if first_labels != labels:
                    raise SetDataError(
                        f"{path}:{line_no}: {name} is listed again with other labels "
                        f"({labels} here, {first_labels} on line {first})"
                    )
                duplicates += 1  # one photo listed twice must not land in two splits
                continue
            seen[name] = (line_no, labels)
            records.append(SetRecord(str(root / "images" / name), labels))
    if not records:
        raise SetDataError(f"{path} lists no images")
    if duplicates:
        log.warning("%s: %d duplicate row(s) of an already listed image skipped", path, duplicates)
    return records, vocab


def read_miml(
    root: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> SetSplits:
    """MIML with the deterministic train/val/test split described in the module docstring."""
    if val_fraction < 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad fractions val={val_fraction} test={test_fraction}")
    records, vocab = read_miml_records(root)
    records.sort(key=lambda r: _natural_key(Path(r.image).name))
    order = np.random.RandomState(split_seed).permutation(len(records))
    n_test = int(round(len(records) * test_fraction))
    n_val = int(round(len(records) * val_fraction))
    test_ids = set(order[:n_test].tolist())
    val_ids = set(order[n_test : n_test + n_val].tolist())
    split = {i: "test" if i in test_ids else "val" if i in val_ids else "train" for i in order}
    return SetSplits(
        train=[r for i, r in enumerate(records) if split[i] == "train"],
        val=[r for i, r in enumerate(records) if split[i] == "val"],
        test=[r for i, r in enumerate(records) if split[i] == "test"],
        vocab=vocab,
        name="miml",
    )


def _natural_key(name: str) -> tuple[int, str]:
    stem = Path(name).stem
    return (int(stem), name) if stem.isdigit() else (1 << 62, name)
