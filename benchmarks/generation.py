"""Generation speed of the instruction decoder on CPU: cached greedy vs beam vs uncached greedy.

Random weights (timing only; no trained model is needed to count the work). Every recipe is
forced to the full length (``min_len = max_len``) so all methods produce the same number of
words. Conditions: a 7x7 image feature map (EfficientNet-Lite0's 1280 channels at 224 px) and
20 ingredients. Batch of 1 (one photo, as `beyondvis cook` runs).

    python benchmarks/generation.py                 # thesis + demo size, 150 words, 1 thread
    python benchmarks/generation.py --sizes demo --repeats 5 --threads 2

Prints one table per model size: wall and CPU seconds per recipe, CPU ms per word and the ratio
to cached greedy (by CPU time),
then a growth table (time at 150 words / time at 50 words: ~3 means linear, ~9 quadratic).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from beyondvis.recipes.generation import (
    DecoderConfig,
    InstructionDecoder,
    SpecialTokens,
    beam_search,
    greedy_decode,
    sample_decode,
)

SPECIAL = SpecialTokens(pad=0, bos=1, eos=2, eoi=3)

# Thesis: 8 blocks, 16 heads x 32 dims, 25 828 words, 1 488 ingredients (Section 9.2).
# Demo: a CPU-friendly size for the packaged model; the vocabulary size is a guess of what
# recipe1m_mini gives (10k words, 1.5k ingredients), it only scales the output projection.
SIZES = {
    "thesis": dict(d_model=512, num_layers=8, num_heads=16, ffn_dim=2048, vocab_size=25828),
    "demo": dict(d_model=256, num_layers=4, num_heads=8, ffn_dim=1024, vocab_size=10000),
}
NUM_INGREDIENTS = 1490  # 1 488 + pad + eos


def build(size: str, max_len: int) -> InstructionDecoder:
    cfg = DecoderConfig(
        special=SPECIAL,
        num_ingredients=NUM_INGREDIENTS,
        ingredient_pad_id=0,
        ingredient_eos_id=1,
        image_channels=1280,
        dropout=0.0,
        max_len=max_len,
        **SIZES[size],
    )
    torch.manual_seed(0)
    return InstructionDecoder(cfg).eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 1280, 7, 7, generator=g), torch.randint(2, NUM_INGREDIENTS, (1, 20))


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median (wall seconds, CPU seconds) over ``repeats`` runs after one warm-up.

    CPU time is reported beside wall time because the development machine is shared: with one
    torch thread, process CPU time is the work done, wall time adds waiting for a core.
    """
    fn()  # warm-up (allocator, kernels)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def methods(dec, image, ingr, n: int) -> dict[str, Callable[[], object]]:
    common = dict(max_len=n, min_len=n)
    gen = torch.Generator().manual_seed(0)
    return {
        "greedy (cached)": lambda: greedy_decode(dec, image, ingr, **common),
        "sample top-k=5 (cached)": lambda: sample_decode(
            dec, image, ingr, top_k=5, generator=gen, **common
        ),
        "beam 3 (cached)": lambda: beam_search(dec, image, ingr, beam_size=3, **common),
        "beam 5 (cached)": lambda: beam_search(dec, image, ingr, beam_size=5, **common),
        "greedy (uncached)": lambda: greedy_decode(dec, image, ingr, use_cache=False, **common),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--max-len", type=int, default=150)
    parser.add_argument("--short-len", type=int, default=50, help="length for the growth table")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image, ingr = inputs()
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch 1, random weights, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    growth_rows = []
    for size in args.sizes:
        dec = build(size, args.max_len)
        params = sum(p.numel() for p in dec.parameters()) / 1e6
        cfg = dec.config
        print(
            f"\n{size}: {cfg.num_layers} blocks, d={cfg.d_model}, {cfg.num_heads} heads, "
            f"vocab {cfg.vocab_size}, {params:.1f}M params, {args.max_len} words per recipe"
        )
        results = {
            name: timed(fn, args.repeats)
            for name, fn in methods(dec, image, ingr, args.max_len).items()
        }
        base = results["greedy (cached)"][1]
        print(f"{'method':<26}{'wall s':>8}{'cpu s':>8}{'cpu ms/word':>13}{'x greedy (cpu)':>16}")
        for name, (wall, cpu) in results.items():
            print(
                f"{name:<26}{wall:>8.3f}{cpu:>8.3f}{1000 * cpu / args.max_len:>13.2f}"
                f"{cpu / base:>16.2f}"
            )
        short = {
            name: timed(fn, args.repeats)
            for name, fn in methods(dec, image, ingr, args.short_len).items()
            if name in ("greedy (cached)", "greedy (uncached)")
        }
        for name, (_, cpu) in short.items():
            growth_rows.append((size, name, cpu, results[name][1]))
    print(f"\ngrowth with length ({args.short_len} -> {args.max_len} words), CPU seconds")
    print(f"{'size':<8}{'method':<20}{'s short':>10}{'s long':>10}{'long/short':>12}")
    for size, name, short_s, long_s in growth_rows:
        print(f"{size:<8}{name:<20}{short_s:>10.3f}{long_s:>10.3f}{long_s / short_s:>12.2f}")


if __name__ == "__main__":
    main()
