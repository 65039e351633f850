"""RSIS speed and memory: training and inference images/s and peak memory against mask size,
and the cost of one more decoding step as the number of objects grows.

    python benchmarks/segmentation.py                     # default sizes 64, 128, 256 (CPU)
    python benchmarks/segmentation.py --sizes 128 256 512 --device cuda

Table 1 (per input/mask size): encoder (frozen EfficientNet-Lite0) images/s, decoder training
images/s (forward + backward + Hungarian matching of ``--objects`` objects, ``--objects`` + 1
steps) and inference images/s (encoder + ``--objects`` steps), with the peak memory of each.
Table 2 (at one size): milliseconds per image for T decoding steps and the marginal cost of the
last step, for T = 1, 2, 4, 8, 16, 32: the decoder is recurrent, so cost grows linearly in the
number of objects while the encoder runs once.

Each measurement runs in a fresh subprocess; peak memory = the process's peak RSS (VmHWM,
reset after building the model, before the first pass) minus its RSS at that moment (CPU), or
``torch.cuda.max_memory_allocated`` (CUDA). Inputs and masks are random: this measures compute.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def measure(kind: str, size: int, steps: int, batch: int, hidden: int, layers: int, device: str,
            threads: int, min_time: float) -> dict:  # fmt: skip
    import torch

    from beyondvis.backbones import create_backbone
    from beyondvis.segmentation.losses import LossWeights, rsis_loss
    from beyondvis.segmentation.model import RSIS, RSISModelConfig

    torch.set_num_threads(threads)
    dev = torch.device(device)
    backbone = create_backbone("efficientnet_lite0").to(dev).eval()
    model = RSIS(RSISModelConfig(hidden=hidden, num_layers=layers, min_channels=16)).to(dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    n = max(steps - 1, 1)
    masks = (torch.rand(batch, n, size, size, device=dev) > 0.9).float()
    boxes = torch.rand(batch, n, 4, device=dev)
    labels = torch.zeros(batch, n, dtype=torch.long, device=dev)
    counts = torch.full((batch,), n)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.no_grad():
        feats = backbone.forward_features(x)

    def run() -> None:
        if kind == "encoder":
            with torch.inference_mode():
                backbone.forward_features(x)
        elif kind == "train":
            out = model(feats, steps=steps)
            loss = rsis_loss(out, masks, counts, boxes, labels, LossWeights())["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        elif kind == "infer":
            with torch.inference_mode():
                model(backbone.forward_features(x), steps=steps)
        elif kind == "decode":
            with torch.inference_mode():
                model(feats, steps=steps)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # Peak memory counts from before the first run, so the allocations of the first pass (which
    # later passes reuse from the allocator) are in it.
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _reset_peak()
    base = _status_kib("VmRSS")
    run()  # warm-up
    runs, start = 0, time.perf_counter()
    while True:
        run()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and runs >= 2:
            break
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = max(_status_kib("VmHWM") - base, 0) / 1024
    return {"kind": kind, "size": size, "steps": steps, "ms_per_image": 1000 * elapsed / (runs * batch),
            "images_per_s": runs * batch / elapsed, "peak_mb": peak_mb}  # fmt: skip


def child(args: argparse.Namespace, kind: str, size: int, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(size), str(steps), "--batch", str(args.batch),
           "--hidden", str(args.hidden), "--layers", str(args.layers), "--device", args.device,
           "--threads", str(args.threads), "--min-time", str(args.min_time)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"measurement {kind} {size}px {steps} steps failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[64, 128, 256],
        help="input = mask sizes (default: %(default)s)",
    )
    p.add_argument(
        "--objects",
        type=int,
        default=8,
        help="objects per image for table 1 (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8, 16, 32],
        help="table 2 step counts (default: %(default)s)",
    )
    p.add_argument(
        "--step-size", type=int, default=128, help="input size of table 2 (default: %(default)s)"
    )
    p.add_argument("--batch", type=int, default=4, help="images per batch (default: %(default)s)")
    p.add_argument("--hidden", type=int, default=32, help="decoder D (default: %(default)s)")
    p.add_argument("--layers", type=int, default=4, help="ConvLSTM layers (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)"
    )
    p.add_argument(
        "--min-time", type=float, default=2.0, help="seconds per measurement (default: %(default)s)"
    )
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, size, steps = args.child
        print(json.dumps(measure(kind, int(size), int(steps), args.batch, args.hidden, args.layers,
                                 args.device, args.threads, args.min_time)))  # fmt: skip
        return

    print(f"RSIS, EfficientNet-Lite0 + D={args.hidden} x {args.layers} ConvLSTM layers, batch {args.batch}, "
          f"{args.device}, {args.threads} thread(s); {args.objects} objects ({args.objects + 1} training steps)")  # fmt: skip
    print()
    print(
        "| size | encoder img/s | train img/s | train peak MB | infer img/s | infer peak MB | train / infer |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        enc = child(args, "encoder", size, 1)
        tr = child(args, "train", size, args.objects + 1)
        inf = child(args, "infer", size, args.objects)
        print(f"| {size} | {enc['images_per_s']:.1f} | {tr['images_per_s']:.2f} | {tr['peak_mb']:.0f} | "
              f"{inf['images_per_s']:.2f} | {inf['peak_mb']:.0f} | {tr['images_per_s'] / inf['images_per_s']:.2f} |",
              flush=True)  # fmt: skip
    print()
    print(f"Decoding steps at {args.step_size} px (decoder only, inference):")
    print()
    print("| steps T | ms / image | ms per step | last steps' ms / step | vs T=1 |")
    print("|---:|---:|---:|---:|---:|")
    prev = None
    first = None
    for steps in args.steps:
        r = child(args, "decode", args.step_size, steps)
        first = first or r["ms_per_image"]
        marginal = (
            "" if prev is None else f"{(r['ms_per_image'] - prev[1]) / (steps - prev[0]):.2f}"
        )
        print(f"| {steps} | {r['ms_per_image']:.1f} | {r['ms_per_image'] / steps:.2f} | {marginal} | "
              f"{r['ms_per_image'] / first:.1f}x |", flush=True)  # fmt: skip
        prev = (steps, r["ms_per_image"])


if __name__ == "__main__":
    main()
