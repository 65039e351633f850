"""The one reader of versioned project files: kind, version range, malformed and foreign files."""

from __future__ import annotations

import json

import pytest

from beyondvis.errors import BeyondvisError, FormatError
from beyondvis.utils.versioned import VersionedFileError, check_format_version, read_versioned_json


class ThingError(FormatError, RuntimeError):
    pass


def _write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_reads_older_and_current_versions_and_refuses_newer(tmp_path):
    for version in (1, 2):
        path = _write(tmp_path / f"v{version}.json", {"kind": "thing", "format_version": version})
        assert read_versioned_json(path, "thing", 2, ThingError)["format_version"] == version
    newer = _write(tmp_path / "v3.json", {"kind": "thing", "format_version": 3})
    with pytest.raises(ThingError, match=r"v3.json has thing format version 3.*up to 2; upgrade"):
        read_versioned_json(newer, "thing", 2, ThingError, what="thing")


def test_exact_versions_foreign_kinds_and_bad_files(tmp_path):
    old = _write(tmp_path / "old.json", {"format": "idx", "format_version": 1})
    with pytest.raises(ThingError, match="reads version 2; rebuild it"):
        read_versioned_json(old, "idx", 2, ThingError, kind_key="format", exact=True,
                            fix="rebuild it")  # fmt: skip
    with pytest.raises(ThingError, match="does not describe a beyondvis index"):
        read_versioned_json(old, "other", 1, ThingError, kind_key="format", what="index")
    with pytest.raises(VersionedFileError, match="malformed JSON"):
        read_versioned_json(_write(tmp_path / "bad.json", "{nope"), None, 1)
    with pytest.raises(VersionedFileError, match="not a JSON object"):
        read_versioned_json(_write(tmp_path / "list.json", [1, 2]), None, 1)
    with pytest.raises(FileNotFoundError):
        read_versioned_json(tmp_path / "absent.json", None, 1)
    for version in (None, 0, "1", True, 1.0):
        with pytest.raises(VersionedFileError, match="invalid"):
            check_format_version(version, 1, "f.json")
    # one base class for the CLI's one-line errors, and ValueError for older except clauses
    assert issubclass(VersionedFileError, FormatError) and issubclass(FormatError, BeyondvisError)
    assert issubclass(VersionedFileError, ValueError)
