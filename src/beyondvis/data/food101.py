"""Food-101 reader (the official layout of Bossard et al. 2014).

::

    root/images/<class>/<id>.jpg
    root/meta/classes.txt      one class name per line (``apple_pie``)
    root/meta/labels.txt       the human label of each class, same order (``Apple pie``)
    root/meta/train.txt        ``<class>/<id>`` lines (no extension); same for ``test.txt``
    root/meta/train.json       ``{"<class>": ["<class>/<id>", ...]}``; same for ``test.json``

The split is read from ``meta/<split>.txt``, or from ``meta/<split>.json`` when the text file is
absent. A line that is not ``<class>/<id>`` of a known class, an entry whose image file is
missing, and a repeated entry are reported in :class:`Food101Report` and skipped: a batch job
keeps the rest. Only files that cannot be read at all (no ``classes.txt``, no split list, broken
JSON) raise :class:`Food101Error`. Every image path stays inside ``root/images`` (entries that
would leave it, e.g. through ``..`` or a symlink, are reported as bad).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from beyondvis.errors import BeyondvisError

SPLITS = ("train", "test")
# Official class names and ids are [a-z_] and digits; allow a little more (user-made folders)
# but never a path separator or "..", so an entry cannot point outside images/.
_NAME = re.compile(r"^[\w\-][\w\-. ]*$")


class Food101Error(BeyondvisError, ValueError):
    """A Food-101 folder cannot be read at all (missing or unreadable meta files)."""


@dataclasses.dataclass(frozen=True)
class Food101Item:
    """One photo: ``path`` to the JPEG, its class (index into ``classes``), name and label."""

    path: Path
    class_index: int
    class_name: str  # "apple_pie"
    label: str  # "apple pie" (labels.txt text, lower-cased)
    id: str  # "apple_pie/1005649", the entry as written in the split list


@dataclasses.dataclass
class Food101Report:
    """What a read kept and what it skipped; ``where`` is ``"<file>:<line>"`` or ``"<file>[<class>]"``."""

    ok: int = 0
    bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (where, reason)
    missing: list[str] = dataclasses.field(default_factory=list)  # entries without an image file
    duplicates: list[str] = dataclasses.field(default_factory=list)  # repeated entries (kept once)

    @property
    def skipped(self) -> int:
        return len(self.bad) + len(self.missing) + len(self.duplicates)

    def summary(self) -> str:
        return (
            f"{self.ok} photos, skipped {len(self.bad)} bad entries, "
            f"{len(self.missing)} missing files, {len(self.duplicates)} duplicates"
        )


@dataclasses.dataclass
class Food101Split:
    """The photos of one split with the class list and the read report."""

    root: Path
    split: str
    classes: list[str]  # class names, index = class index
    labels: list[str]  # human labels ("apple pie"), same order
    items: list[Food101Item]
    report: Food101Report
    source: Path  # the split list that was read (meta/<split>.txt or .json)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, index: int) -> Food101Item:
        return self.items[index]

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for item in self.items:
            counts[item.class_name] += 1
        return counts


def _read_lines(path: Path) -> list[str]:
    try:
        # utf-8-sig: a BOM written by a Windows editor must not become part of the first name.
        with open(path, encoding="utf-8-sig") as fh:
            return [line.rstrip("\r\n") for line in fh]
    except UnicodeDecodeError as exc:
        raise Food101Error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise Food101Error(f"{path}: cannot read ({exc.strerror or exc})") from exc


def read_classes(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(class names, human labels)`` from ``meta/classes.txt`` and ``meta/labels.txt``.

    Labels are lower-cased ("apple pie"). Without ``labels.txt`` (or when its length does not
    match) a label is made from the class name (``apple_pie`` -> ``apple pie``).
    """
    meta = Path(root, "meta")
    path = meta / "classes.txt"
    if not path.is_file():
        raise Food101Error(f"{path}: no such file (is {root} a Food-101 folder?)")
    classes: list[str] = []
    for n, raw in enumerate(_read_lines(path), 1):
        name = raw.strip()
        if not name:
            continue
        if not _NAME.match(name) or ".." in name:
            raise Food101Error(f"{path}:{n}: bad class name {name!r}")
        if name in classes:
            raise Food101Error(f"{path}:{n}: class {name!r} listed twice")
        classes.append(name)
    if not classes:
        raise Food101Error(f"{path}: no classes")
    labels = [c.replace("_", " ").lower() for c in classes]
    label_path = meta / "labels.txt"
    if label_path.is_file():
        given = [line.strip() for line in _read_lines(label_path) if line.strip()]
        if len(given) == len(classes):
            labels = [" ".join(label.lower().split()) for label in given]
    return classes, labels


def _read_split_entries(meta: Path, split: str) -> tuple[Path, list[tuple[str, object]]]:
    """``(source file, [(where, entry)])``; entries are raw (validated by the caller)."""
    txt = meta / f"{split}.txt"
    if txt.is_file():
        return txt, [
            (f"{txt.name}:{n}", line.strip()) for n, line in enumerate(_read_lines(txt), 1)
        ]
    js = meta / f"{split}.json"
    if not js.is_file():
        raise Food101Error(f"{meta}: neither {txt.name} nor {js.name} found")
    try:
        with open(js, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except UnicodeDecodeError as exc:
        raise Food101Error(f"{js}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise Food101Error(f"{js}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    except RecursionError:
        raise Food101Error(f"{js}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise Food101Error(f'{js}: expected an object {{class: ["class/id", ...]}}')
    entries: list[tuple[str, object]] = []
    for cls, values in data.items():
        if not isinstance(values, list):
            entries.append((f"{js.name}[{cls}]", values))
            continue
        entries.extend((f"{js.name}[{cls}][{i}]", v) for i, v in enumerate(values))
    return js, entries


def load_food101(
    root: str | os.PathLike, split: str = "train", check_images: bool = True
) -> Food101Split:
    """Read one split (``"train"`` or ``"test"``) of a Food-101 folder.

    With ``check_images`` an entry whose ``images/<class>/<id>.jpg`` is not a file is reported in
    ``report.missing`` and skipped. Raises :class:`Food101Error` when the folder cannot be read.
    """
    if split not in SPLITS:
        raise Food101Error(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    root = Path(root)
    if not root.is_dir():
        raise Food101Error(f"{root}: no such folder")
    classes, labels = read_classes(root)
    index = {c: i for i, c in enumerate(classes)}
    source, entries = _read_split_entries(root / "meta", split)
    images = (root / "images").resolve()
    report = Food101Report()
    items: list[Food101Item] = []
    seen: set[str] = set()
    for where, entry in entries:
        if entry == "":
            continue  # blank lines (e.g. a trailing newline) are not entries
        if not isinstance(entry, str):
            report.bad.append((where, f"expected a 'class/id' string, got {type(entry).__name__}"))
            continue
        if entry.lower().endswith(".jpg"):
            entry = entry[:-4]  # some user-made lists carry the extension
        parts = entry.split("/")
        if len(parts) != 2 or not all(_NAME.match(p) and ".." not in p for p in parts):
            report.bad.append((where, f"expected 'class/id', got {entry!r}"))
            continue
        cls, _ = parts
        if cls not in index:
            report.bad.append((where, f"class {cls!r} is not in classes.txt"))
            continue
        if entry in seen:
            report.duplicates.append(entry)
            continue
        seen.add(entry)
        path = root / "images" / f"{entry}.jpg"
        if check_images:
            if not path.is_file():
                report.missing.append(entry)
                continue
            if not path.resolve().is_relative_to(images):
                report.bad.append((where, f"{entry} points outside {root / 'images'}"))
                continue
        ci = index[cls]
        items.append(Food101Item(path, ci, cls, labels[ci], entry))
    report.ok = len(items)
    return Food101Split(root, split, classes, labels, items, report, source)
