"""Dataset readers in the official formats. Import readers from their modules (e.g. ``beyondvis.data.miml``)."""

# Re-exported for convenience: the Food-101 reader only needs the standard library.
from beyondvis.data.food101 import Food101Error, Food101Item, Food101Split, load_food101

__all__ = ["Food101Error", "Food101Item", "Food101Split", "load_food101"]
