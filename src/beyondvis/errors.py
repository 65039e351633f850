"""The two base classes of the errors a user can cause and fix.

* :class:`BeyondvisError`: bad input, a missing file, a busy folder, a setting that does not
  fit. Its message says what is wrong and what to do; the CLI prints it as one line
  (``error: ...``) instead of a traceback. Library callers can catch every such error at once.
* :class:`FormatError`: a file the project wrote (checkpoint, index, feature cache, model
  bundle) is foreign, from another format version, or fails its checksum.

Each module keeps its own specific class (``CheckpointError``, ``IndexFormatError``, ...) with
its historical builtin base (``ValueError``/``RuntimeError``), so existing ``except`` clauses
keep working.
"""

from __future__ import annotations


class BeyondvisError(Exception):
    """An error the user can fix; its message is the whole story."""


class FormatError(BeyondvisError):
    """A project file is foreign, from another format version, incomplete or corrupt."""


__all__ = ["BeyondvisError", "FormatError"]
