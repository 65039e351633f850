"""Print a short key for the dependency set, so a cached virtual environment is reused exactly
while pyproject's dependencies and the pins stay the same, and rebuilt when they change."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
try:
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    deps = {
        "dependencies": project.get("dependencies", []),
        "optional": project.get("optional-dependencies", {}),
        "python": project.get("requires-python", ""),
    }
    payload = json.dumps(deps, sort_keys=True)
except ModuleNotFoundError:  # Python 3.10: no tomllib, hash the whole file instead
    payload = (root / "pyproject.toml").read_text()
payload += (root / "requirements" / "constraints.txt").read_text()
payload += f"py{sys.version_info.major}.{sys.version_info.minor}"
print(hashlib.sha256(payload.encode()).hexdigest()[:12])
