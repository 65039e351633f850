"""Recipe1M reader: ``layer1.json`` (recipes), ``layer2.json`` (images), ``det_ingrs.json``.

The official files are single JSON arrays of up to ~1 GB, so they are parsed element by element
(``json.JSONDecoder.raw_decode`` over a sliding text buffer) instead of with ``json.load``. A record
that is not valid JSON, or that lacks the fields a recipe needs, is reported (file, element
number, reason) and skipped; the rest of the file is still read.

Images live at ``images/<partition>/a/b/c/d/<image id>`` where ``abcd`` are the first four
characters of the image id (the official Recipe1M layout).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from beyondvis.errors import BeyondvisError
from beyondvis.utils import atomic_write
from beyondvis.utils.paths import is_plain_file_name

PARTITIONS = ("train", "val", "test")
_CHUNK = 1 << 20
# Where to resume after a broken element: the next object that starts like a record.
_RECORD_START = re.compile(r"\{\s*\"id\"\s*:")


class Recipe1MError(BeyondvisError, ValueError):
    """A Recipe1M file cannot be read at all (missing, not a JSON array)."""


@dataclasses.dataclass
class Recipe:
    """One recipe of layer 1 (+ its image ids from layer 2)."""

    id: str
    title: str
    ingredients: list[str]
    instructions: list[str]
    partition: str
    images: list[str] = dataclasses.field(default_factory=list)
    url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclasses.dataclass
class ReadReport:
    """What a read kept and what it skipped (``bad``: ``(where, reason)`` pairs)."""

    ok: int = 0
    bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    duplicates: int = 0  # records skipped because their id was seen before (also in ``bad``)

    def skip(self, where: str, reason: str) -> None:
        self.bad.append((where, reason))

    def summary(self) -> str:
        return f"{self.ok} records read, {len(self.bad)} malformed records skipped"


def iter_json_array(path: str | os.PathLike, report: ReadReport | None = None) -> Iterator[Any]:
    """Yield the elements of the top-level JSON array in ``path`` one at a time.

    Elements that fail to parse are reported in ``report`` (as ``"<file>[<n>]"``) and skipped:
    the reader jumps to the next ``{"id": ...`` object. Raises :class:`Recipe1MError` when the
    file is missing or does not hold a JSON array.
    """
    path = Path(path)
    if not path.is_file():
        raise Recipe1MError(f"{path}: no such file")
    report = report if report is not None else ReadReport()
    try:
        yield from _iter_json_array(path, report)
    except UnicodeDecodeError as exc:
        # errors="replace" would turn a latin-1 file's "crème" into "cr\ufffdme" silently
        raise Recipe1MError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a chunk); Recipe1M "
            f"files are UTF-8: convert it first, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def _iter_json_array(path: Path, report: ReadReport) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as fh:
        buf = fh.read(_CHUNK)
        pos = _skip_ws(buf, 0)
        if pos >= len(buf) or buf[pos] != "[":
            raise Recipe1MError(f"{path}: expected a JSON array ('[' at the start)")
        pos += 1
        eof = False
        index = 0
        while True:
            pos = _skip_ws(buf, pos)
            # Keep at least one chunk ahead so an element is never cut by the buffer end.
            if not eof and len(buf) - pos < _CHUNK:
                more = fh.read(_CHUNK)
                eof = not more
                buf = buf[pos:] + more
                pos = _skip_ws(buf, 0)
            if pos >= len(buf):
                report.skip(f"{path.name}[{index}]", "file ends before the closing ']'")
                return
            if buf[pos] == "]":
                return
            if buf[pos] == ",":
                pos += 1
                continue
            try:
                value, end = decoder.raw_decode(buf, pos)
            except (RecursionError, json.JSONDecodeError) as exc:
                if (
                    isinstance(exc, json.JSONDecodeError)
                    and not eof
                    and len(buf) - pos < 64 * _CHUNK
                ):
                    # The element may simply be longer than the buffer: read more and retry.
                    more = fh.read(_CHUNK * 4)
                    if more:
                        buf = buf[pos:] + more
                        pos = 0
                        continue
                    eof = True
                reason = (
                    f"invalid JSON: {exc.msg}"
                    if isinstance(exc, json.JSONDecodeError)
                    else "JSON nested too deeply"
                )
                report.skip(f"{path.name}[{index}]", reason)
                index += 1
                match = _RECORD_START.search(buf, pos + 1)
                if match is None:
                    return
                pos = match.start()
                continue
            index += 1
            pos = end
            yield value


def _skip_ws(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in " \t\r\n":
        pos += 1
    return pos


def _texts(items: Any, field: str) -> list[str]:
    if not isinstance(items, list):
        raise ValueError(f"'{field}' is not a list")
    out = []
    for item in items:
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise ValueError(f"'{field}' has an entry without text")
        text = text.strip()
        if text:
            out.append(text)
    return out


def parse_recipe(record: Any) -> Recipe:
    """Validate one layer-1 record; raises ValueError naming the problem."""
    if not isinstance(record, dict):
        raise ValueError("record is not an object")
    rid = record.get("id")
    if not isinstance(rid, str) or not rid:
        raise ValueError("missing 'id'")
    partition = record.get("partition")
    if partition not in PARTITIONS:
        raise ValueError(f"bad partition {partition!r}")
    title = record.get("title", "")
    if not isinstance(title, str):
        raise ValueError("'title' is not a string")
    return Recipe(
        id=rid,
        title=title.strip(),
        ingredients=_texts(record.get("ingredients"), "ingredients"),
        instructions=_texts(record.get("instructions"), "instructions"),
        partition=partition,
        url=record.get("url") or "",
    )


def iter_layer1(path: str | os.PathLike, report: ReadReport | None = None) -> Iterator[Recipe]:
    """Stream the valid recipes of a ``layer1.json``; malformed ones go to ``report``."""
    report = report if report is not None else ReadReport()
    first_seen: dict[str, int] = {}
    for n, record in enumerate(iter_json_array(path, report)):
        try:
            recipe = parse_recipe(record)
        except ValueError as exc:
            rid = record.get("id") if isinstance(record, dict) else None
            report.skip(f"layer1[{n}]" + (f" id={rid}" if rid else ""), str(exc))
            continue
        if recipe.id in first_seen:
            # a second record with one id would take the first one's photos (layer 2 is keyed
            # by id) and could sit in another split: the first wins, the rest are reported
            report.skip(
                f"layer1[{n}] id={recipe.id}",
                f"duplicate id (first at layer1[{first_seen[recipe.id]}]); skipped",
            )
            report.duplicates += 1
            continue
        first_seen[recipe.id] = n
        report.ok += 1
        yield recipe


def read_layer2(path: str | os.PathLike, report: ReadReport | None = None) -> dict[str, list[str]]:
    """Map recipe id -> image ids (file names) from a ``layer2.json``."""
    report = report if report is not None else ReadReport()
    images: dict[str, list[str]] = {}
    for n, record in enumerate(iter_json_array(path, report)):
        try:
            rid = record["id"]
            ids = [img["id"] for img in record["images"]]
            if not isinstance(rid, str) or not all(isinstance(i, str) and i for i in ids):
                raise TypeError
        except (KeyError, TypeError):
            report.skip(f"layer2[{n}]", "needs 'id' and 'images': [{'id': ...}]")
            continue
        unsafe = [i for i in ids if not is_plain_file_name(i)]
        if unsafe:
            report.skip(
                f"layer2[{n}] id={rid}",
                f"image id(s) {unsafe[:3]} are not plain file names (would read outside "
                "the dataset root)",
            )
            continue
        report.ok += 1
        images.setdefault(rid, []).extend(ids)
    return images


def read_det_ingrs(
    path: str | os.PathLike, report: ReadReport | None = None
) -> dict[str, list[str]]:
    """Map recipe id -> valid detected ingredient names from a ``det_ingrs.json``."""
    report = report if report is not None else ReadReport()
    out: dict[str, list[str]] = {}
    for n, record in enumerate(iter_json_array(path, report)):
        try:
            names = [i["text"] for i in record["ingredients"]]
            valid = record.get("valid", [True] * len(names))
            out[record["id"]] = [t for t, v in zip(names, valid) if v and t]
        except (KeyError, TypeError):
            report.skip(f"det_ingrs[{n}]", "needs 'id', 'ingredients': [{'text': ...}], 'valid'")
            continue
        report.ok += 1
    return out


def read_provenance(path: str | os.PathLike) -> dict[str, str]:
    """``provenance.jsonl`` (one ``{"id": ..., "source_id": "epi:..."}`` per line) -> id ->
    source id. A malformed line raises :class:`Recipe1MError` naming the file and line."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out[str(row["id"])] = str(row["source_id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise Recipe1MError(
                    f"{path}:{n}: needs a JSON object with 'id' and 'source_id' ({exc})"
                ) from exc
    return out


def source_prefix(source_id: str) -> str:
    """``"epi:lemon-cake"`` -> ``"epi"``: the provenance prefix names the source (and so its
    licence and writing style); ``""`` when the id has none."""
    return source_id.split(":", 1)[0] if ":" in source_id else ""


def image_path(root: str | os.PathLike, partition: str, image_id: str) -> Path:
    """``root/images/<partition>/a/b/c/d/<image_id>`` (the official Recipe1M layout)."""
    if not is_plain_file_name(image_id):
        raise Recipe1MError(f"image id {image_id!r} is not a plain file name")
    if partition not in PARTITIONS:
        raise Recipe1MError(f"partition {partition!r} is not one of {PARTITIONS}")
    return Path(root, "images", partition, *image_id[:4], image_id)


@dataclasses.dataclass
class Recipe1M:
    """All recipes of a Recipe1M-style root, with the read report."""

    root: Path
    recipes: list[Recipe]
    report: ReadReport
    det_ingrs: dict[str, list[str]] | None = None
    missing_images: list[str] = dataclasses.field(default_factory=list)  # "image (recipe id)"

    def by_partition(self, partition: str) -> list[Recipe]:
        return [r for r in self.recipes if r.partition == partition]

    def image_paths(self, recipe: Recipe) -> list[Path]:
        return [image_path(self.root, recipe.partition, i) for i in recipe.images]


def load_recipe1m(root: str | os.PathLike, check_images: bool = True) -> Recipe1M:
    """Read ``layer1.json`` (+ ``layer2.json`` and ``det_ingrs.json`` when present).

    With ``check_images`` an image listed in layer 2 whose file is missing is dropped from its
    recipe and listed in ``missing_images``.
    """
    root = Path(root)
    report = ReadReport()
    recipes = list(iter_layer1(root / "layer1.json", report))
    missing: list[str] = []
    layer2 = root / "layer2.json"
    if layer2.exists():
        images = read_layer2(layer2, report)
        for recipe in recipes:
            recipe.images = list(dict.fromkeys(images.get(recipe.id, [])))
            if check_images:
                present = []
                for img in recipe.images:
                    if image_path(root, recipe.partition, img).is_file():
                        present.append(img)
                    else:
                        missing.append(f"{img} (recipe {recipe.id})")
                recipe.images = present
    det = root / "det_ingrs.json"
    det_ingrs = read_det_ingrs(det, report) if det.exists() else None
    return Recipe1M(root, recipes, report, det_ingrs, missing)


@dataclasses.dataclass
class CleanReport:
    before: int = 0
    too_few_ingredients: int = 0
    too_few_instructions: int = 0
    duplicates: int = 0
    shared_image_across_splits: int = 0
    after: int = 0


def _fingerprint(recipe: Recipe) -> tuple:
    norm = " ".join
    return (
        norm(recipe.title.lower().split()),
        tuple(norm(t.lower().split()) for t in recipe.ingredients),
        tuple(norm(t.lower().split()) for t in recipe.instructions),
    )


def clean_recipes(
    recipes: Iterable[Recipe], min_ingredients: int = 2, min_instructions: int = 2
) -> tuple[list[Recipe], CleanReport]:
    """The thesis' cleaning: drop recipes with < 2 ingredients or < 2 instructions, exact
    duplicates (same title, ingredients and instructions; the first one is kept), and recipes
    that share an image with a recipe of another split (so no photo is in train and test).
    The recipe of the earlier split (train < val < test) keeps a shared image.
    """
    report = CleanReport()
    kept: list[Recipe] = []
    seen: set[tuple] = set()
    for recipe in recipes:
        report.before += 1
        if len(recipe.ingredients) < min_ingredients:
            report.too_few_ingredients += 1
            continue
        if len(recipe.instructions) < min_instructions:
            report.too_few_instructions += 1
            continue
        key = _fingerprint(recipe)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        kept.append(recipe)
    order = {p: i for i, p in enumerate(PARTITIONS)}
    owner: dict[str, str] = {}  # image id -> partition that keeps it
    for recipe in sorted(kept, key=lambda r: order[r.partition]):
        for img in recipe.images:
            owner.setdefault(img, recipe.partition)
    final = []
    for recipe in kept:
        if any(owner[i] != recipe.partition for i in recipe.images):
            report.shared_image_across_splits += 1
            continue
        final.append(recipe)
    report.after = len(final)
    return final, report


def write_recipes_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line, atomically."""

    with atomic_write(path, mode="w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_recipes_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines file written by :func:`write_recipes_jsonl`."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise Recipe1MError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
            except RecursionError:
                raise Recipe1MError(f"{path}:{n}: JSON nested too deeply") from None
    return rows
