"""Configuration of the instruction decoder and the ids of its special tokens.

The word vocabulary itself comes from the Recipes I tokenizer; this module only needs the ids of
the special tokens, so it never hard-codes words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

IMAGE = "image"
INGREDIENTS = "ingredients"
CONDITION_NAMES = (IMAGE, INGREDIENTS)


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the special words of the instruction vocabulary.

    ``eoi`` (end of instruction) separates the title and the steps; ``eos`` ends the recipe.
    """

    pad: int
    bos: int
    eos: int
    eoi: int

    def __post_init__(self) -> None:
        ids = [self.pad, self.bos, self.eos, self.eoi]
        if any(i < 0 for i in ids):
            raise ValueError(f"special token ids must be >= 0, got {self}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"special token ids must be distinct, got {self}")

    @classmethod
    def from_vocab(
        cls,
        stoi: Mapping[str, int],
        *,
        pad: str = "<pad>",
        bos: str = "<start>",
        eos: str = "<end>",
        eoi: str = "<eoi>",
    ) -> SpecialTokens:
        """Look the special words up in a word -> id mapping (the tokenizer's vocabulary)."""
        missing = [w for w in (pad, bos, eos, eoi) if w not in stoi]
        if missing:
            raise KeyError(f"vocabulary lacks special token(s) {missing}")
        return cls(pad=stoi[pad], bos=stoi[bos], eos=stoi[eos], eoi=stoi[eoi])


@dataclass
class DecoderSizes:
    """The sizes a run config sets for the decoder (``decoder:`` in configs/generation/*.yaml);
    the vocabulary, special ids and image channels come from the data (``decoder_config``)."""

    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 8
    ffn_dim: int = 1024
    dropout: float = 0.3
    max_len: int = 150
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("d_model", "num_layers", "num_heads", "ffn_dim", "max_len"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"decoder.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"decoder.d_model ({self.d_model}) must be a multiple of decoder.num_heads "
                f"({self.num_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"decoder.dropout must be in [0, 1), got {self.dropout}")
        if self.max_len < 2:
            raise ValueError(f"decoder.max_len must be >= 2, got {self.max_len}")


@dataclass
class DecoderConfig:
    """Sizes of the instruction decoder. Defaults are the thesis setting (Section 9.2.2).

    ``d_model`` = heads x head dim (16 x 32 = 512). ``conditions`` selects what the decoder
    attends to: both for the full model, ``("image",)`` for the I2R baseline and
    ``("ingredients",)`` for L2R. ``max_len`` bounds the generated sequence (title, steps, their
    separators and the end token), matching the thesis' 150-word truncation.
    """

    vocab_size: int
    special: SpecialTokens
    num_ingredients: int = 0  # ingredient vocabulary size incl. pad/eos; needed with ingredients
    ingredient_pad_id: int = 0
    ingredient_eos_id: int | None = None
    image_channels: int = 1280  # channels of the backbone's last feature map
    d_model: int = 512
    num_layers: int = 8
    num_heads: int = 16
    ffn_dim: int = 2048
    dropout: float = 0.3
    fusion: str = "concat"
    conditions: tuple[str, ...] = field(default=CONDITION_NAMES)
    max_len: int = 150
    tie_embeddings: bool = True
    # in-domain kNN memory (:class:`.memory.MemorySettings` as a dict); None: no memory
    memory: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.conditions = tuple(self.conditions)
        if isinstance(self.special, Mapping):
            self.special = SpecialTokens(**self.special)
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} not divisible by num_heads {self.num_heads}")
        unknown = set(self.conditions) - set(CONDITION_NAMES)
        if not self.conditions or unknown:
            raise ValueError(f"conditions must be a non-empty subset of {CONDITION_NAMES}")
        if len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"repeated condition in {self.conditions}")
        if INGREDIENTS in self.conditions and self.num_ingredients <= 0:
            raise ValueError("num_ingredients must be > 0 when conditioning on ingredients")
        if max(self.special.pad, self.special.bos, self.special.eos, self.special.eoi) >= (
            self.vocab_size
        ):
            raise ValueError(f"special token ids {self.special} exceed vocab_size")
        if self.max_len < 1:
            raise ValueError("max_len must be >= 1")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for checkpoint metadata (rebuild with :meth:`from_dict`)."""
        out = asdict(self)
        out["conditions"] = list(self.conditions)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown DecoderConfig field(s): {sorted(unknown)}")
        return cls(**dict(data))
