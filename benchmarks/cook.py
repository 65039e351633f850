"""Latency of ``beyondvis cook`` with the shipped model on this CPU: ONNX Runtime vs PyTorch.

    python benchmarks/cook.py                       # shipped photo, 5 repeats, 2 threads
    python benchmarks/cook.py --photo X.jpg --repeats 9 --threads 1

Rows, each for the ONNX Runtime path (what ``cook`` runs by default) and the PyTorch path
(``--runtime torch``, the reference) side by side:

* the whole command as a fresh process (Python start, imports, model load, one card with the
  bundle's default decoding), and a bare ``python -c pass`` for scale;
* model load in process (the imports are already paid);
* one warm card per decoding method, split into photo -> feature map / ingredients / decoding /
  retrieval.

Median over ``--repeats`` of wall seconds and of CPU seconds (user + system, all threads; for a
fresh process the child's). On a shared machine the wall time grows with the load (printed in
the header) while the CPU time does not, so both are shown. Last: the shipped asset size.
Targets (issue 9): fresh process <= 2 s, warm card <= 0.5 s, shipped assets <= 50 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_FRESH_S = 2.0
TARGET_WARM_S = 0.5
TARGET_ASSETS_MB = 50.0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fresh(argv: list[str], repeats: int, env: dict[str, str]) -> tuple[float, float]:
    """Median wall and CPU seconds of running ``argv`` as a new process."""
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = _children_cpu(), time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env, cwd="/")
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - c0)
    return statistics.median(walls), statistics.median(cpus)


def timed(fn, repeats: int) -> tuple[float, float, object]:
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def asset_mb(folder: Path, suffix: str | None = None) -> float:
    files = [p for p in folder.rglob("*") if p.is_file()]
    if suffix:
        files = [p for p in files if p.name.endswith(suffix)]
    return sum(p.stat().st_size for p in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--photo", default=None, help="food photo (default: the shipped one)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per row (median)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of both runtimes")
    parser.add_argument(
        "--skip-torch-fresh",
        action="store_true",
        help="skip the slow fresh-process PyTorch row",
    )
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")

    import onnxruntime
    import torch

    from beyondvis.io import load_image
    from beyondvis.recipes.generation.bundle import CookModel
    from beyondvis.recipes.generation.onnx_cook import PACKAGE_BUNDLE, OrtCookModel

    photo = args.photo or str(PACKAGE_BUNDLE / "demo_food.jpg")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    cli = [sys.executable, "-m", "beyondvis.cli.main", "cook", photo, "--json"]
    cli += ["--threads", str(args.threads)]
    print(
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, "
        f"{args.threads} thread(s), photo {os.path.basename(photo)}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at start, median of {args.repeats}"
    )
    head = (
        f"{'what':<52} {'ORT wall':>9} {'ORT cpu':>8} {'torch wall':>11} {'torch cpu':>10} "
        f"{'torch/ORT':>10}  target"
    )
    print(head)
    print("-" * len(head), flush=True)
    row("python -c pass (fresh process)", fresh([sys.executable, "-c", "pass"], args.repeats, env))
    ort_fresh = fresh([*cli, "--runtime", "onnxruntime"], args.repeats, env)
    torch_fresh = None
    if not args.skip_torch_fresh:
        torch_fresh = fresh([*cli, "--runtime", "torch"], args.repeats, env)
    row("beyondvis cook --json (fresh process)", ort_fresh, torch_fresh, TARGET_FRESH_S)

    torch.set_num_threads(args.threads)
    ort_load = timed(lambda: OrtCookModel(PACKAGE_BUNDLE, threads=args.threads), args.repeats)
    torch_load = timed(lambda: CookModel(PACKAGE_BUNDLE), args.repeats)
    row("model load (in process)", ort_load[:2], torch_load[:2])
    ort_model, torch_model = ort_load[2], torch_load[2]
    image = load_image(photo)
    details = []
    for method in ("greedy", "beam", "sample"):
        seeds = iter(range(10**6))

        def ort_card(method: str = method, seeds=seeds):
            return ort_model.cook(image, method, seed=next(seeds))

        def torch_card(method: str = method, seeds=seeds):
            opts = {}
            if method == "sample":
                opts["generator"] = torch.Generator().manual_seed(next(seeds))
            return torch_model.cook(image, method, **opts)

        ours = timed(ort_card, args.repeats)
        theirs = timed(torch_card, args.repeats)
        card, ref = ours[2], theirs[2]
        words = sum(len(s.split()) for s in [card.title, *card.instructions])
        same = ""
        if method != "sample":
            equal = (card.title, card.instructions) == (ref.title, ref.instructions)
            same = ", same card" if equal else ", CARDS DIFFER"
        row(f"warm card, {method} ({words} words{same})", ours[:2], theirs[:2], TARGET_WARM_S)
        keys = ("features", "ingredients", "decode", "retrieval")
        parts = " / ".join(f"{card.timings[k]:.3f}" for k in keys)
        tparts = " / ".join(f"{ref.timings[k]:.3f}" for k in keys)
        details.append(f"  {method:<7} ORT {parts}   torch {tparts}")

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print("warm card split (s, last run): feature map / ingredients / decoding / retrieval")
    print("\n".join(details))
    assets = ROOT / "src" / "beyondvis" / "assets"
    total = asset_mb(assets)
    verdict = "ok" if total <= TARGET_ASSETS_MB else "MISSED"
    print(
        f"\nshipped assets: {total:.1f} MB in {assets.relative_to(ROOT)} (target <= "
        f"{TARGET_ASSETS_MB:.0f} MB: {verdict}); cook bundle {asset_mb(PACKAGE_BUNDLE):.1f} MB, "
        f"of which ONNX {asset_mb(PACKAGE_BUNDLE, '.onnx'):.1f} MB"
    )


def row(
    name: str,
    ours: tuple[float, float] | None,
    theirs: tuple[float, float] | None = None,
    target: float | None = None,
) -> None:
    o = f"{ours[0]:9.3f} {ours[1]:8.3f}" if ours else f"{'':>9} {'':>8}"
    t = f"{theirs[0]:11.3f} {theirs[1]:10.3f}" if theirs else f"{'':>11} {'':>10}"
    ratio = f"{theirs[0] / ours[0]:10.2f}" if ours and theirs else f"{'':>10}"
    verdict = ""
    if target is not None and ours:
        verdict = f"<= {target} s: " + ("ok" if ours[0] <= target else "MISSED in wall s")
        if ours[0] > target:
            verdict += ", ok in CPU s" if ours[1] <= target else ", MISSED in CPU s"
    print(f"{name:<52} {o} {t} {ratio}  {verdict}", flush=True)


if __name__ == "__main__":
    main()
