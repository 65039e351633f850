"""End-to-end latency of ``beyondvis cook`` with the shipped model on this CPU.

    python benchmarks/cook.py                  # shipped photo, 3 repeats, 2 threads
    python benchmarks/cook.py --photo X.jpg --repeats 5 --threads 1

Rows: the whole command as a fresh process (Python start, imports, model load, greedy card);
model load (bundle + backbone weights, in process); then one card per decoding method, split
into photo -> feature map, ingredients, decoding and retrieval. Median wall seconds; the last
column is the ratio to greedy. Generated lengths are reported (they set the decoding time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch


def main() -> None:
    from beyondvis.io import load_image
    from beyondvis.recipes.generation.bundle import DEMO_PHOTO, PACKAGE_BUNDLE, CookModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(DEMO_PHOTO))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    cli = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "beyondvis.cli.main",
                "cook",
                args.photo,
                "--json",
                "--device",
                "cpu",
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        cli.append(time.perf_counter() - t0)
    loads = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model = CookModel(PACKAGE_BUNDLE)
        loads.append(time.perf_counter() - t0)
    image = load_image(args.photo)
    rows = [
        ("beyondvis cook --json (fresh process, greedy)", statistics.median(cli), "", ""),
        ("model load (in process)", statistics.median(loads), "", ""),
    ]
    greedy = None
    for method in ("greedy", "beam", "sample"):
        runs = []
        for seed in range(args.repeats):
            opts = {"generator": torch.Generator().manual_seed(seed)} if method == "sample" else {}
            t0 = time.perf_counter()
            result = model.cook(image, method, **opts)
            runs.append((time.perf_counter() - t0, result))
        total = statistics.median(t for t, _ in runs)
        greedy = greedy or total
        r = runs[0][1]
        words = sum(len(s.split()) for s in [r.title, *r.instructions])
        parts = " / ".join(
            f"{statistics.median(x.timings[k] for _, x in runs):.3f}"
            for k in ("features", "ingredients", "decode", "retrieval")
        )
        rows.append(
            (
                f"card, {method} ({words} words; feat/ingr/decode/retr s: {parts})",
                total,
                f"{total / greedy:.2f}",
                "",
            )
        )
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), photo {os.path.basename(args.photo)}"
        f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
        f"median of {args.repeats}"
    )
    print(f"{'what':<90} {'wall s':>8} {'x greedy':>9}")
    for name, seconds, ratio, _ in rows:
        print(f"{name:<90} {seconds:8.3f} {ratio:>9}")


if __name__ == "__main__":
    main()
