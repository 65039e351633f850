"""Folder walkers: list image files and check them, reporting bad files instead of dying."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from beyondvis.io.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageLoadError, load_image


@dataclass(frozen=True)
class BadImage:
    path: str
    reason: str


@dataclass
class ScanReport:
    ok: list[Path] = field(default_factory=list)
    bad: list[BadImage] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.ok)} image(s) readable, {len(self.bad)} skipped"]
        lines += [f"  skipped {b.path}: {b.reason}" for b in self.bad]
        return "\n".join(lines)


def iter_image_paths(
    root: str | os.PathLike, *, recursive: bool = True, extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> Iterator[Path]:
    """Yield image files under ``root`` (by extension, case-insensitive) in a stable order.

    A single file is yielded as is. Hidden files and folders are skipped.
    """
    root = Path(root)
    exts = {e.lower() for e in extensions}
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or folder: {root}")
    if not recursive:
        for path in sorted(root.iterdir()):
            if path.is_file() and path.suffix.lower() in exts and not path.name.startswith("."):
                yield path
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in exts:
                yield Path(folder) / name


def scan_images(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    decode: bool = True,
) -> ScanReport:
    """Check every image (fully decoding it when ``decode``) and sort them into ok and bad."""
    if isinstance(paths, str | os.PathLike):
        paths = iter_image_paths(paths)
    report = ScanReport()
    for path in paths:
        path = Path(path)
        try:
            if decode:
                load_image(path, max_pixels=max_pixels)
            elif not path.is_file() or path.stat().st_size == 0:
                raise ImageLoadError(path, "missing or empty file")
        except ImageLoadError as exc:
            report.bad.append(BadImage(str(path), exc.reason))
        else:
            report.ok.append(path)
    return report
