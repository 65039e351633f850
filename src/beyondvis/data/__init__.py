"""Dataset readers in the official formats. Import readers from their modules (e.g. ``beyondvis.data.miml``)."""
