"""Any image-to-set dataset as JSON Lines: one ``{"image": path, "labels": [...]}`` per line.

Relative image paths are resolved against the JSONL file's folder. Give ``train`` and
``test`` files (and optionally ``val``; without it 10% of train is held out,
deterministically). The vocabulary is every training label (sorted), or ``vocab`` when given;
labels of val/test images outside it are dropped and counted in ``SetSplits.notes``.
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
    restrict_to_vocab,
    split_train_val,
)


def read_jsonl_sets(path: str | os.PathLike) -> list[SetRecord]:
    """Records of one JSONL file; a malformed line raises with its line number."""
    path = require_file(Path(path), "JSONL set file")
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SetDataError(f"{path}:{line_no}: malformed JSON ({exc.msg})") from None
            except RecursionError:
                raise SetDataError(f"{path}:{line_no}: JSON nested too deeply") from None
            if not isinstance(item, dict) or not isinstance(item.get("image"), str):
                raise SetDataError(f"{path}:{line_no}: expected an object with an 'image' path")
            labels = item.get("labels")
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise SetDataError(f"{path}:{line_no}: 'labels' must be a list of strings")
            image = Path(item["image"])
            if not image.is_absolute():
                image = path.parent / image
            records.append(SetRecord(str(image), labels))
    if not records:
        raise SetDataError(f"{path} holds no records")
    return records


def read_jsonl_splits(
    train: str | os.PathLike,
    test: str | os.PathLike,
    val: str | os.PathLike | None = None,
    *,
    root: str | os.PathLike | None = None,
    vocab: list[str] | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> SetSplits:
    """``root`` (optional) is prefixed to relative file names of train/val/test."""

    def resolve(p: str | os.PathLike) -> Path:
        p = Path(p)
        return p if p.is_absolute() or root is None else Path(root) / p

    train_records = read_jsonl_sets(resolve(train))
    if val is None:
        train_records, val_records = split_train_val(train_records, val_fraction, split_seed)
    else:
        val_records = read_jsonl_sets(resolve(val))
    test_records = read_jsonl_sets(resolve(test))
    notes: list[str] = []
    if vocab is None:
        vocab = sorted({label for r in train_records for label in r.labels})
        if not vocab:
            raise SetDataError(f"{train}: the training records have no labels at all")
    else:
        train_records = restrict_to_vocab(train_records, vocab, "train", notes)
    val_records = restrict_to_vocab(val_records, vocab, "val", notes)
    test_records = restrict_to_vocab(test_records, vocab, "test", notes)
    return SetSplits(train_records, val_records, test_records, list(vocab), "jsonl", notes)
