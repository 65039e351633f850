"""Metric logging: one CSV file per run (plus TensorBoard when installed and asked for)."""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BASE_COLUMNS = ["step", "epoch", "split"]


class MetricsLogger:
    """Append rows of ``{name: number}`` to ``metrics.csv``.

    The header grows when a new metric name appears (the file is rewritten then, which is rare
    and cheap at these sizes), so train rows and eval rows with different metrics share one table.
    """

    def __init__(self, path: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        self.columns: list[str] = list(BASE_COLUMNS)
        if self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), None)
            if header:
                self.columns = header
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                log.warning("tensorboard requested but not installed; logging to CSV only")
            else:
                self.writer = SummaryWriter(log_dir=str(tensorboard_dir))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run replays them)."""
        rows = self._read()
        kept = [r for r in rows if _as_int(r.get("step")) <= step]
        if len(kept) != len(rows):
            self._rewrite(kept)

    def log(self, step: int, epoch: int, split: str, metrics: dict[str, Any]) -> None:
        values = {k: v for k, v in metrics.items() if k not in BASE_COLUMNS}
        new = [k for k in values if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite(self._read())
        row = {"step": step, "epoch": epoch, "split": split, **values}
        exists = self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            if not exists:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        from beyondvis.utils import atomic_write

        with atomic_write(self.path, "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(rows)


def _as_int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return -1
