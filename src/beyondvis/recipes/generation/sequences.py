"""Recipe <-> word-id sequence: the title is the first "instruction", ``eoi`` separates steps.

``title <eoi> step 1 <eoi> step 2 <eoi> <eos>`` — truncated to ``max_len`` ids (the thesis keeps
150 words) with the end token always last, so a truncated recipe still teaches the decoder to stop.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import Tensor

from beyondvis.recipes.generation.config import SpecialTokens


def encode_recipe(
    title: Sequence[int], steps: Sequence[Sequence[int]], special: SpecialTokens, max_len: int = 150
) -> list[int]:
    """Target ids for one recipe (without the leading ``bos``)."""
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    reserved = {special.pad, special.bos, special.eos, special.eoi}
    ids: list[int] = []
    for part in [title, *steps]:
        if any(i in reserved for i in part):
            raise ValueError("title/step ids must not contain special tokens")
        ids.extend(part)
        ids.append(special.eoi)
    return ids[: max_len - 1] + [special.eos]


def teacher_forcing_batch(
    targets: Sequence[Sequence[int]], special: SpecialTokens, starts: Collection[int] = ()
) -> tuple[Tensor, Tensor]:
    """Pad targets into (inputs, targets) of shape (B, T): inputs = bos + targets[:-1].

    A sequence may also be given whole, starting with ``bos`` (as the Recipes I tokenizer's
    ``recipe_tokens`` writes it); the leading ``bos`` is then dropped from the target. A
    sequence may instead start with one of ``starts`` (another start word, e.g. the text-style
    ``<start_text>``): it is then that row's first input, and never a target.
    """
    if not targets:
        raise ValueError("empty batch")
    leading = {special.bos, *starts}
    firsts = [t[0] if len(t) and t[0] in leading else special.bos for t in targets]
    targets = [list(t)[1:] if len(t) and t[0] in leading else list(t) for t in targets]
    width = max(len(t) for t in targets)
    if width == 0:
        raise ValueError("all target sequences are empty")
    inputs = torch.full((len(targets), width), special.pad, dtype=torch.long)
    out = torch.full((len(targets), width), special.pad, dtype=torch.long)
    for row, seq in enumerate(targets):
        if not seq:
            continue
        seq_t = torch.as_tensor(list(seq), dtype=torch.long)
        out[row, : len(seq)] = seq_t
        inputs[row, 0] = firsts[row]
        inputs[row, 1 : len(seq)] = seq_t[:-1]
    return inputs, out


def split_recipe(
    ids: Sequence[int] | Tensor, special: SpecialTokens
) -> tuple[list[int], list[list[int]]]:
    """Generated ids -> (title ids, list of step ids). Stops at ``eos``; drops empty steps."""
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    parts: list[list[int]] = [[]]
    for i in ids:
        if i == special.eos:
            break
        if i in (special.pad, special.bos):
            continue
        if i == special.eoi:
            parts.append([])
        else:
            parts[-1].append(i)
    title, steps = parts[0], [p for p in parts[1:] if p]
    return title, steps
