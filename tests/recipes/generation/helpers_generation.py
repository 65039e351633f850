"""Tiny decoders shared by the generation tests (kept out of conftest to avoid name clashes)."""

from __future__ import annotations

import torch

from beyondvis.recipes.generation import DecoderConfig, InstructionDecoder, SpecialTokens

SPECIAL = SpecialTokens(pad=0, bos=1, eos=2, eoi=3)
ING_PAD, ING_EOS = 0, 1
IMAGE_CHANNELS = 12


def tiny_config(**overrides) -> DecoderConfig:
    base = dict(
        vocab_size=40,
        special=SPECIAL,
        num_ingredients=25,
        ingredient_pad_id=ING_PAD,
        ingredient_eos_id=ING_EOS,
        image_channels=IMAGE_CHANNELS,
        d_model=32,
        num_layers=2,
        num_heads=4,
        ffn_dim=64,
        dropout=0.1,
        max_len=24,
    )
    base.update(overrides)
    return DecoderConfig(**base)


def tiny_decoder(seed: int = 0, **overrides) -> InstructionDecoder:
    torch.manual_seed(seed)
    return InstructionDecoder(tiny_config(**overrides)).eval()


def tiny_inputs(batch: int = 3, seed: int = 1, h: int = 2, w: int = 3):
    """Image maps, ingredient ids with eos + padding (row 1 empty), and bos-led word ids."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, IMAGE_CHANNELS, h, w, generator=g)
    ingredients = torch.randint(2, 25, (batch, 6), generator=g)
    ingredients[0, 4:] = torch.tensor([ING_EOS, ING_PAD])
    if batch > 1:
        ingredients[1] = ING_PAD  # an empty ingredient set
    words = torch.randint(4, 40, (batch, 9), generator=g)
    words[:, 0] = SPECIAL.bos
    return image, ingredients, words


def inputs_for(decoder: InstructionDecoder, image, ingredients) -> dict:
    conds = decoder.config.conditions
    return {
        "image_features": image if "image" in conds else None,
        "ingredient_ids": ingredients if "ingredients" in conds else None,
    }
