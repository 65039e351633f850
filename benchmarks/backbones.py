"""Images/second and peak memory of every backbone at 224 and 512 px, side by side.

    python benchmarks/backbones.py                       # everything (about 10 min on 2 cores)
    python benchmarks/backbones.py --backbones efficientnet_lite0 --sizes 224

Modes: ``eager`` (inference_mode, contiguous NCHW), ``channels_last`` (same, NHWC memory
format) and ``onnxruntime`` (what ``FeatureExtractor`` uses by default on CPU). EfficientNet-Lite0
runs all three so their ratios come from one run; the other backbones run ``eager`` and
``onnxruntime``. ResNet/VGG use random initialisation when their weight files are absent
(speed does not depend on the values). Inputs are random preprocessed batches: this measures the
network, not JPEG decoding. The pooled vector is the output.

``--check-preprocessing`` instead reruns the measurement behind EfficientNet-Lite0's padding and
normalisation choice (needs $BEYONDVIS_DATA): top-1 in ImageNet food classes on 150 recipe
photos, and top-5 in matching landscape classes on 150 mountain / sea scenes.

Each measurement runs in a fresh subprocess so memory numbers do not leak into each other.
Peak memory = the process's peak RSS (Linux VmHWM, reset via /proc/self/clear_refs after the
model and ONNX session are built) minus its RSS at that moment: the activations and runtime
arenas of inference, not the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BACKBONES = ["efficientnet_lite0", "resnet50", "resnet101", "vgg16"]
ALL_MODES = ["eager", "channels_last", "onnxruntime"]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(name: str, mode: str, size: int, batch: int, min_time: float, threads: int) -> dict:
    """Run in the child process: build, warm up, time; return one result row."""
    import torch

    from beyondvis.backbones import FeatureExtractor, WeightsNotFoundError, create_backbone

    torch.set_num_threads(threads)
    try:
        backbone, weights = create_backbone(name), "pretrained"
    except WeightsNotFoundError:
        backbone, weights = create_backbone(name, pretrained=False), "random init"
    x = torch.randn(batch, 3, size, size)
    if mode == "onnxruntime":
        extractor = FeatureExtractor(backbone, runtime="onnxruntime", device="cpu", cache=False)
        extractor(x[:1])  # export + session + the tolerance check against PyTorch
        if extractor._sessions[(size, size)] is None:
            raise RuntimeError("ONNX Runtime fell back to PyTorch")

        def run():
            return extractor(x)

    else:
        if mode == "channels_last":
            backbone = backbone.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode():
                return backbone(x)

    with open("/proc/self/clear_refs", "w") as handle:  # reset the peak-RSS counter
        handle.write("5")
    base_kib = _status_kib("VmRSS")
    run()  # warm-up: oneDNN / ORT pick kernels and grow their arenas here
    done, start = 0, time.perf_counter()
    while True:
        run()
        done += batch
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and done >= 2 * batch:
            break
    peak_kib = _status_kib("VmHWM")
    return {
        "backbone": name,
        "mode": mode,
        "size": size,
        "batch": batch,
        "weights": weights,
        "images": done,
        "img_per_s": done / elapsed,
        "peak_mib": (peak_kib - base_kib) / 1024,
    }


def run_child(name: str, mode: str, size: int, batch: int, min_time: float, threads: int) -> dict:
    command = [sys.executable, __file__, "--child", name, mode, str(size), str(batch)]
    command += ["--min-time", str(min_time), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["?"]
        return {"backbone": name, "mode": mode, "size": size, "error": tail[0]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def batch_for(name: str, size: int) -> int:
    # Big enough to amortise per-call overhead, small enough to finish on 2 cores.
    if name == "efficientnet_lite0":
        return 16 if size <= 224 else 8
    return 8 if size <= 224 else 2


def table(rows: list[dict], sizes: list[int]) -> str:
    by_key = {(r["backbone"], r["mode"], r["size"]): r for r in rows}
    combos = list(dict.fromkeys((r["backbone"], r["mode"]) for r in rows))
    head = ["backbone", "mode", "weights"]
    head += [f"img/s @{s}" for s in sizes] + [f"x eager @{s}" for s in sizes]
    head += [f"peak MiB @{s}" for s in sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, mode in combos:
        cells = [name, mode]
        cells.append(
            next(
                (
                    by_key[(name, mode, s)].get("weights", "")
                    for s in sizes
                    if (name, mode, s) in by_key
                ),
                "",
            )
        )
        for s in sizes:
            r = by_key.get((name, mode, s), {})
            cells.append(f"{r['img_per_s']:.1f}" if "img_per_s" in r else r.get("error", "-"))
        for s in sizes:
            r, eager = by_key.get((name, mode, s), {}), by_key.get((name, "eager", s), {})
            ok = "img_per_s" in r and "img_per_s" in eager
            cells.append(f"{r['img_per_s'] / eager['img_per_s']:.2f}" if ok else "-")
        for s in sizes:
            r = by_key.get((name, mode, s), {})
            cells.append(f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ImageNet classes that count as "recognised as food" / as the scene's label (proxy accuracy).
FOOD_CLASSES = set(range(923, 970)) | {504, 532, 567, 659, 762, 809, 813, 910}
SCENE_CLASSES = {"mountains": {970, 972, 976, 979, 980}, "sea": {460, 973, 975, 976, 977, 978}}


def check_preprocessing(per_set: int = 150) -> str:
    """Proxy accuracy of the lite0 weights under each padding x normalisation combination."""
    import csv
    from dataclasses import replace

    import timm
    import torch

    from beyondvis.backbones.base import IMAGENET_MEAN, IMAGENET_STD, build_transform
    from beyondvis.backbones.efficientnet import (
        LITE0_PREPROCESS,
        map_lite0_state_dict,
        package_weights_path,
    )
    from beyondvis.backbones.weights import load_state_dict_file
    from beyondvis.io import iter_image_paths, load_image
    from beyondvis.utils import shared_data_root

    recipes, scenes = shared_data_root("recipe1m_mini"), shared_data_root("miml_scenes")
    if recipes is None or scenes is None:
        raise SystemExit(
            "--check-preprocessing needs BEYONDVIS_DATA with recipe1m_mini and miml_scenes"
        )
    food = sorted(iter_image_paths(recipes / "images"))[:per_set]
    with open(scenes / "miml_labels_2.csv", newline="") as handle:
        labelled = [
            (scenes / "images" / r["Filenames"], r["labels"]) for r in csv.DictReader(handle)
        ]
    scene = [(p, label) for p, label in labelled if label in SCENE_CLASSES][: 2 * per_set : 2]
    source = load_state_dict_file(package_weights_path())
    lines = [
        "| timm architecture | normalisation | food top-1 in food classes | scenes top-5 in class |",
        "|---|---|---|---|",
    ]
    for arch in ("efficientnet_lite0", "tf_efficientnet_lite0"):
        model = timm.create_model(arch, pretrained=False).eval()
        model.load_state_dict(map_lite0_state_dict(source, model.state_dict()), strict=True)
        for label, mean, std in (
            ("ImageNet mean/std", IMAGENET_MEAN, IMAGENET_STD),
            ("mean=std=0.5 (TF-Lite)", LITE0_PREPROCESS.mean, LITE0_PREPROCESS.std),
        ):
            transform = build_transform(replace(LITE0_PREPROCESS, mean=mean, std=std))

            def top(path, k, model=model, transform=transform):
                with torch.inference_mode():
                    logits = model(transform(load_image(path)).unsqueeze(0))[0]
                return set(logits.topk(k).indices.tolist())

            food_hits = sum(bool(top(p, 1) & FOOD_CLASSES) for p in food)
            scene_hits = sum(bool(top(p, 5) & SCENE_CLASSES[lab]) for p, lab in scene)
            lines.append(
                f"| {arch} | {label} | {food_hits}/{len(food)} | {scene_hits}/{len(scene)} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", nargs="+", default=BACKBONES, choices=BACKBONES)
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 512])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=None,
        choices=ALL_MODES,
        help="default: all for lite0, eager+onnxruntime for the rest",
    )
    parser.add_argument("--min-time", type=float, default=4.0, help="seconds timed per cell")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--check-preprocessing",
        action="store_true",
        help="compare lite0 padding / normalisation choices on real photos instead",
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("NAME", "MODE", "SIZE", "BATCH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        name, mode, size, batch = args.child
        print(json.dumps(measure(name, mode, int(size), int(batch), args.min_time, args.threads)))
        return 0
    if args.check_preprocessing:
        import torch

        torch.set_num_threads(args.threads)
        print(check_preprocessing())
        return 0
    rows = []
    load = os.getloadavg()[0]
    for name in args.backbones:
        modes = args.modes or (
            ALL_MODES if name == "efficientnet_lite0" else ["eager", "onnxruntime"]
        )
        for mode in modes:
            for size in args.sizes:
                row = run_child(
                    name, mode, size, batch_for(name, size), args.min_time, args.threads
                )
                rows.append(row)
                speed = f"{row['img_per_s']:.1f} img/s" if "img_per_s" in row else row["error"]
                print(f"# {name} {mode} {size}px: {speed}", file=sys.stderr, flush=True)
    print(
        f"threads={args.threads}, cpus={os.cpu_count()}, load average at start={load:.1f}, "
        f"batch: lite0 16@224 / 8@512, others 8@224 / 2@512"
    )
    print(table(rows, args.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
