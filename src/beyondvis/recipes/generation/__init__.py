"""Recipe generation (thesis chapter 9): the instruction decoder, its decoding and its metrics.

The decoder generates the title and the cooking steps conditioned on image features and/or
ingredient ids, with four selectable attention fusions (``FUSIONS``) and cached decoding.
"""

from beyondvis.recipes.generation.config import (
    CONDITION_NAMES,
    IMAGE,
    INGREDIENTS,
    DecoderConfig,
    SpecialTokens,
)
from beyondvis.recipes.generation.decoder import (
    DecoderState,
    InstructionDecoder,
    sequence_nll,
)
from beyondvis.recipes.generation.decoding import (
    DECODING,
    Generation,
    beam_search,
    generate,
    greedy_decode,
    sample_decode,
)
from beyondvis.recipes.generation.dedup import dedup_ingredient_batch, dedup_ingredients
from beyondvis.recipes.generation.fusion import FUSIONS, Condition
from beyondvis.recipes.generation.metrics import (
    IngredientMatcher,
    IngredientSetMetrics,
    MentionMetrics,
    PerplexityMeter,
    perplexity,
    to_multi_hot,
)
from beyondvis.recipes.generation.sequences import (
    encode_recipe,
    split_recipe,
    teacher_forcing_batch,
)

__all__ = [
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
