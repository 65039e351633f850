"""Helpers shared by the CLI modules."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


class CLIError(Exception):
    """A user-facing error: printed as ``error: ...`` without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="where to run: auto (CUDA when present, else CPU), cpu, cuda, cuda:N",
    )


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
