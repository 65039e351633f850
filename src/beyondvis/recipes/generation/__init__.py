"""Recipe generation (thesis chapter 9): the instruction decoder, its decoding and its metrics.

The decoder generates the title and the cooking steps conditioned on image features and/or
ingredient ids, with four selectable attention fusions (``FUSIONS``) and cached decoding.
"""

from __future__ import annotations

import importlib
from typing import Any

# Submodule -> the names re-exported from it. They load on first use: most of them import
# torch, and the ONNX Runtime ``cook`` path (``onnx_cook``, ``constraints``) must not pay ~4 s
# of torch/torchvision/timm imports just for living in this package.
_EXPORTS = {
    "config": ["CONDITION_NAMES", "IMAGE", "INGREDIENTS", "DecoderConfig", "SpecialTokens"],
    "decoder": ["DecoderState", "InstructionDecoder", "sequence_nll"],
    "decoding": [
        "DECODING",
        "Generation",
        "beam_search",
        "generate",
        "greedy_decode",
        "sample_decode",
    ],
    "dedup": ["dedup_ingredient_batch", "dedup_ingredients"],
    "fusion": ["FUSIONS", "Condition"],
    "metrics": [
        "IngredientMatcher",
        "IngredientSetMetrics",
        "MentionMetrics",
        "PerplexityMeter",
        "perplexity",
        "to_multi_hot",
    ],
    "sequences": ["encode_recipe", "split_recipe", "teacher_forcing_batch"],
    # the cook model (PyTorch and ONNX Runtime), its export, training runs and evaluations
    "bundle": ["DEMO_PHOTO", "BundleError", "CookModel", "CookResult"],
    "card": ["COOK_JSON_FORMAT", "PACKAGE_BUNDLE", "card_error_json", "card_json", "format_card"],
    "onnx_cook": ["OnnxBundleError", "OrtCookModel", "has_onnx"],
    "onnx_export": ["export_onnx_bundle"],
    "curves": ["plot_perplexity"],
    "memory": ["KnnMemory", "MemorySettings", "attach_memory", "tune_memory"],
    "experiment": [
        "GenerationConfig",
        "build_decoder_memory",
        "export_from_checkpoints",
        "load_data",
        "load_generation_config",
        "load_model",
        "run_training",
    ],
    "evaluate": ["EvaluateError", "evaluate_folder", "format_report", "write_cards"],
    "runtime": ["RUNTIMES", "CookModelError", "load_model"],
    "tables": [
        "INGREDIENT_MODELS",
        "TABLES",
        "fusion_table",
        "generation_table",
        "ingredient_table",
        "retrieval_table",
        "write_table",
    ],
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DEMO_PHOTO",
    "INGREDIENT_MODELS",
    "PACKAGE_BUNDLE",
    "BundleError",
    "CookModel",
    "CookResult",
    "COOK_JSON_FORMAT",
    "CookModelError",
    "EvaluateError",
    "GenerationConfig",
    "RUNTIMES",
    "OnnxBundleError",
    "OrtCookModel",
    "KnnMemory",
    "MemorySettings",
    "attach_memory",
    "build_decoder_memory",
    "card_error_json",
    "card_json",
    "evaluate_folder",
    "export_from_checkpoints",
    "export_onnx_bundle",
    "format_card",
    "format_report",
    "fusion_table",
    "generation_table",
    "write_cards",
    "write_table",
    "TABLES",
    "has_onnx",
    "ingredient_table",
    "load_data",
    "load_generation_config",
    "load_model",
    "plot_perplexity",
    "tune_memory",
    "retrieval_table",
    "run_training",
    "CONDITION_NAMES",
    "DECODING",
    "FUSIONS",
    "IMAGE",
    "INGREDIENTS",
    "Condition",
    "DecoderConfig",
    "DecoderState",
    "Generation",
    "IngredientMatcher",
    "IngredientSetMetrics",
    "InstructionDecoder",
    "MentionMetrics",
    "PerplexityMeter",
    "SpecialTokens",
    "beam_search",
    "dedup_ingredient_batch",
    "dedup_ingredients",
    "encode_recipe",
    "generate",
    "greedy_decode",
    "perplexity",
    "sample_decode",
    "sequence_nll",
    "split_recipe",
    "teacher_forcing_batch",
    "to_multi_hot",
]
