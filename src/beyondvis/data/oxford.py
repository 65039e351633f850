"""Oxford 5k / Paris 6k ground truth (``gt_files``) and revisited ``gnd_*.pkl`` readers.

gt_files: for every query ``<name>`` the files ``<name>_query.txt`` (one line:
``<image id> x0 y0 x1 y1``; Oxford prefixes the id with ``oxc1_``), ``<name>_good.txt``,
``<name>_ok.txt`` and ``<name>_junk.txt`` (one image id per line, no extension).

The revisited pkl is a pickle, and unpickling runs code named in the file. It is read with a
restricted unpickler that only reconstructs builtin containers and numpy arrays and refuses
anything else, so a tampered file raises instead of executing.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from beyondvis.errors import BeyondvisError
from beyondvis.utils import atomic_write

LISTS = ("good", "ok", "junk")


class GroundTruthError(BeyondvisError, ValueError):
    """Malformed or missing ground-truth file."""


@dataclass
class OxfordQuery:
    name: str
    image: str
    box: tuple[float, float, float, float]
    good: list[str] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)

    def as_gt(self) -> dict[str, list[str]]:
        return {"good": self.good, "ok": self.ok, "junk": self.junk}


def _read_list(path: Path) -> list[str]:
    if not path.exists():
        raise GroundTruthError(f"missing ground-truth file {path}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_gt_files(folder: str | os.PathLike) -> list[OxfordQuery]:
    """All queries of a ``gt_files`` folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GroundTruthError(f"no such ground-truth folder: {folder}")
    queries = []
    for qfile in sorted(folder.glob("*_query.txt")):
        name = qfile.name[: -len("_query.txt")]
        lines = _read_list(qfile)
        if len(lines) != 1:
            raise GroundTruthError(f"{qfile}: expected one line, found {len(lines)}")
        parts = lines[0].split()
        if len(parts) != 5:
            raise GroundTruthError(f"{qfile}: expected '<image> x0 y0 x1 y1', got {lines[0]!r}")
        image = parts[0][len("oxc1_") :] if parts[0].startswith("oxc1_") else parts[0]
        try:
            box = tuple(float(v) for v in parts[1:])
        except ValueError:
            raise GroundTruthError(f"{qfile}: box is not numeric: {lines[0]!r}") from None
        lists = {k: _read_list(folder / f"{name}_{k}.txt") for k in LISTS}
        queries.append(OxfordQuery(name, image, box, **lists))  # type: ignore[arg-type]
    if not queries:
        raise GroundTruthError(f"no *_query.txt files in {folder}")
    return queries


def write_gt_files(folder: str | os.PathLike, queries: list[OxfordQuery]) -> None:
    """Write queries in the gt_files layout (atomically, file by file)."""
    folder = Path(folder)
    for q in queries:
        x0, y0, x1, y1 = q.box
        with atomic_write(folder / f"{q.name}_query.txt", "w") as f:
            f.write(f"{q.image} {x0:.1f} {y0:.1f} {x1:.1f} {y1:.1f}\n")
        for k in LISTS:
            with atomic_write(folder / f"{q.name}_{k}.txt", "w") as f:
                f.write("".join(f"{item}\n" for item in getattr(q, k)))


class _RestrictedUnpickler(pickle.Unpickler):
    # Only what the official gnd files need: numpy arrays/dtypes/scalars and plain containers.
    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol-5 pickles of arrays
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "list"),
        ("builtins", "dict"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "int"),
        ("builtins", "float"),
        ("builtins", "str"),
        ("builtins", "bytes"),
        ("_codecs", "encode"),  # how Python 2 era pickles store numpy byte strings
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a ground-truth pickle"
            )
        return super().find_class(module, name)


def safe_load_pickle(data: bytes) -> object:
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


@dataclass
class RevisitedGroundTruth:
    imlist: list[str]
    qimlist: list[str]
    gnd: list[dict]


def read_revisited_gnd(path: str | os.PathLike) -> RevisitedGroundTruth:
    """Read ``gnd_roxford5k.pkl`` / ``gnd_rparis6k.pkl`` (keys imlist, qimlist, gnd)."""
    path = Path(path)
    if not path.exists():
        raise GroundTruthError(f"no such file: {path}")
    try:
        obj = safe_load_pickle(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise GroundTruthError(
            f"{path}: not a valid revisited ground-truth pickle ({exc})"
        ) from None
    if not isinstance(obj, dict) or not {"imlist", "qimlist", "gnd"} <= set(obj):
        raise GroundTruthError(f"{path}: expected a dict with imlist, qimlist and gnd")
    gnd = []
    for i, g in enumerate(obj["gnd"]):
        if not isinstance(g, dict) or not {"easy", "hard", "junk"} <= set(g):
            raise GroundTruthError(f"{path}: gnd[{i}] lacks easy/hard/junk")
        entry = {k: [int(v) for v in g[k]] for k in ("easy", "hard", "junk")}
        if "bbx" in g and g["bbx"] is not None:
            entry["bbx"] = [float(v) for v in g["bbx"]]
        gnd.append(entry)
    if len(gnd) != len(obj["qimlist"]):
        raise GroundTruthError(f"{path}: {len(gnd)} gnd entries for {len(obj['qimlist'])} queries")
    return RevisitedGroundTruth(list(obj["imlist"]), list(obj["qimlist"]), gnd)
