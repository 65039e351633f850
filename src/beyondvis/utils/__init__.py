"""Small shared utilities (atomic file writes, seeding, data paths)."""

from beyondvis.utils.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from beyondvis.utils.paths import shared_data_root

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "shared_data_root"]
