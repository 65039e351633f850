"""Whether a progress bar should be drawn: asked for, on a terminal, and not switched off.

``beyondvis -q`` (and a stderr that is not a terminal) sets tqdm's own ``TQDM_DISABLE``
switch; a bar created with an explicit ``disable=`` ignores that switch, so every bar of the
project takes its ``disable`` from :func:`show_progress`.
"""

from __future__ import annotations

import os
import sys


def show_progress(requested: bool = True, main_process: bool = True) -> bool:
    """True when a bar is ``requested``, this is the main process, stderr is a terminal and
    ``TQDM_DISABLE`` is not set."""
    if not (requested and main_process):
        return False
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false"):
        return False
    return sys.stderr.isatty()


__all__ = ["show_progress"]
