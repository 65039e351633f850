"""Fit the shipped generic BLCF codebook (PCA-whitening + visual words) on varied real photos.

The photos are every recipe, MIML scene, Penn-Fudan street, CVPPP plant and Food-101 photo of
``$BEYONDVIS_DATA`` **except the ones the instance benchmark of ``beyondvis data
make-instances`` is made of** (its object sources and the scene photos it pastes them into or
keeps as distractors, recomputed here with the same seed and selection code), so the benchmark
measures a codebook that never saw its photos, as the thesis fits Oxford's codebook on Paris.

Local features are extracted with the default ``FeatureConfig`` of ``index build`` (384 px,
stride-16 map, no upsampling), ``--per-image`` random cells of each photo (all of a small one),
at most ``--max-photos`` photos per source, and cached in ``OUT/work/`` so that refitting another size costs only the k-means.
Then PCA-whitening and FAISS k-means are fitted on at most ``--features`` of them, and the
model is written in float16 to ``OUT`` (``model.npz`` + ``model.json``).

    python benchmarks/retrieval_codebook.py --out src/beyondvis/assets/retrieval/generic \
        [--words 8192] [--features 600000] [--per-image 200] [--max-photos 600] [--threads 1]

``--evaluate DATASET`` instead compares codebooks on an instance benchmark (``beyondvis data
make-instances``) at the default settings of ``index build`` (GS, LS, GS + R, LS + R mAP, the
whole ranking): ``--models generic,fitted,FOLDER,...`` (the shipped codebook, PCA + k-means
fitted on the benchmark's own database as ``index evaluate --codebook fitted`` does, or any
model folder written by this script or ``index train``), features cached under ``--cache``:

    python benchmarks/retrieval_codebook.py --evaluate runs/instances --cache runs/cache \
        --models generic,fitted
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def benchmark_photos(root: Path) -> set[Path]:
    """The photos ``make_instances(root)`` uses with its default config: objects and scenes."""
    from beyondvis.data.instances import (
        InstanceConfig,
        pedestrian_objects,
        plant_objects,
        scene_paths,
    )

    cfg = InstanceConfig()
    rng = np.random.default_rng(cfg.seed)  # the same draws, in the same order, as make_instances
    objects = pedestrian_objects(root / "PennFudanPed", cfg.pedestrians, rng)
    objects += plant_objects(root / "cvppp_a1", cfg.plants, rng)
    scenes = scene_paths(root, {o.photo for o in objects})
    needed = len(objects) * cfg.pastes_per_object + cfg.distractors
    used = [scenes[i] for i in rng.permutation(len(scenes))[:needed]]
    return {o.photo for o in objects} | set(used)


def training_photos(root: Path) -> dict[str, list[Path]]:
    """Every photo of the five sources, minus the benchmark's, by source."""
    exclude = benchmark_photos(root)
    sources = {
        "recipe1m_mini": sorted((root / "recipe1m_mini" / "images").rglob("*.jpg")),
        "miml_scenes": sorted((root / "miml_scenes" / "images").rglob("*.jp*g")),
        "PennFudanPed": sorted((root / "PennFudanPed" / "PNGImages").glob("*.png")),
        "cvppp_a1": sorted((root / "cvppp_a1").glob("plant*_rgb.png")),
        "food101_mini": sorted((root / "food101_mini" / "images").rglob("*.jpg")),
    }
    return {k: [p for p in v if p not in exclude] for k, v in sources.items()}


def extract(photos: dict[str, list[Path]], per_image: int, seed: int, cache: Path) -> dict:
    """Raw local features (float16) of ``per_image`` random cells of every photo, by source;
    each source is cached as ``cache/<source>.npz`` once extracted (a rerun resumes)."""
    from tqdm import tqdm

    from beyondvis.io import ImageLoadError, load_image
    from beyondvis.retrieval.features import FeatureConfig, LocalFeatureExtractor

    extractor = LocalFeatureExtractor(FeatureConfig())
    rng = np.random.default_rng(seed)
    out = {}
    cache.mkdir(parents=True, exist_ok=True)
    for source, paths in photos.items():
        path = cache / f"{source}.npz"
        if path.exists():
            with np.load(path) as d:
                out[source] = d["features"]
            continue
        feats = []
        for p in tqdm(paths, desc=source, unit="img", mininterval=5):
            try:
                f = extractor(load_image(p))
            except ImageLoadError as exc:
                print(f"skipped {p}: {exc.reason}", file=sys.stderr)
                continue
            f = f.reshape(-1, f.shape[-1])
            if f.shape[0] > per_image:
                f = f[rng.choice(f.shape[0], per_image, replace=False)]
            feats.append(f.astype(np.float16))
        out[source] = np.concatenate(feats)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, features=out[source])
        os.replace(tmp, path)
    return out


STAGES = ("GS", "LS", "GS + R", "LS + R")


def evaluate(
    dataset: Path, cache: Path, models: list[str], exact: bool, max_words: int = 100
) -> None:
    """One row per codebook: mAP of the four stages at the defaults of ``index build``."""
    from beyondvis.retrieval import InstanceBenchmark, RerankConfig, shipped_model, stage_table
    from beyondvis.retrieval.index import IndexConfig, load_model_only

    config = IndexConfig(assign_nprobe=None) if exact else IndexConfig()
    bench = InstanceBenchmark(dataset, config, cache)
    print(
        f"codebooks on {dataset} ({'exact' if exact else 'IVF nprobe 8'} word assignment, "
        f"default index build settings, {max_words or 'all'} query words looked up; mAP over "
        "the whole ranking)"
    )
    print("| codebook | words | " + " | ".join(STAGES) + " | +Qaug: " + " / ".join(STAGES) + " |")
    print("|---|---|" + "---|" * (len(STAGES) + 1))
    for name in models:
        if name == "fitted":
            model = None
        elif name == "generic":
            model = shipped_model("generic")
        else:
            model = load_model_only(Path(name))
        bench.fit_bow(model)
        rows = {
            r["stage"]: r
            for r in stage_table(bench, RerankConfig(), 10, list(STAGES), max_words or None)
        }
        plain = " | ".join(f"{rows[s]['map']:.3f}" for s in STAGES)
        aug = " / ".join(f"{rows[s]['map_qaug']:.3f}" for s in STAGES)
        print(f"| {name} | {bench.model.codebook.size} | {plain} | {aug} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="model folder to write")
    ap.add_argument("--evaluate", type=Path, help="instead: compare codebooks on this benchmark")
    ap.add_argument("--models", default="generic,fitted", help="with --evaluate: comma list")
    ap.add_argument(
        "--cache", type=Path, default=Path(".cache/retrieval"), help="with --evaluate: features"
    )
    ap.add_argument("--exact", action="store_true", help="with --evaluate: exact assignment")
    ap.add_argument(
        "--max-words", type=int, default=100, help="with --evaluate: query words (0 = all; 100)"
    )
    ap.add_argument("--words", type=int, default=8192, help="visual words (default: 8192)")
    ap.add_argument(
        "--features", type=int, default=600_000, help="features k-means is fitted on (600000)"
    )
    ap.add_argument("--per-image", type=int, default=200, help="cells kept per photo (200)")
    ap.add_argument(
        "--max-photos",
        type=int,
        default=600,
        help="photos per source at most, a random choice (600; 0 = all)",
    )
    ap.add_argument("--iterations", type=int, default=10, help="k-means iterations (10)")
    ap.add_argument("--threads", type=int, default=1, help="torch and FAISS threads (1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import faiss
    import torch

    from beyondvis.retrieval.index import BLCFIndex, IndexConfig, save_model_only
    from beyondvis.utils import shared_data_root

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    if args.evaluate is not None:
        evaluate(args.evaluate, args.cache, args.models.split(","), args.exact, args.max_words)
        return 0
    if args.out is None:
        ap.error("--out is required to fit a codebook")
    root = shared_data_root()
    if root is None:
        print("BEYONDVIS_DATA is not set (the shared data folder)", file=sys.stderr)
        return 2
    root = Path(root)
    photos = training_photos(root)
    if args.max_photos:
        pick = np.random.default_rng(args.seed)
        photos = {
            k: sorted(v[i] for i in pick.permutation(len(v))[: args.max_photos])
            for k, v in photos.items()
        }
    t0 = time.perf_counter()
    feats = extract(photos, args.per_image, args.seed, args.out / "work")
    t_feat = time.perf_counter() - t0
    counts = {k: int(v.shape[0]) for k, v in feats.items()}
    print(f"photos per source: { {k: len(v) for k, v in photos.items()} }")
    print(f"features per source: {counts} ({t_feat:.0f} s)")
    # Every feature of the small sources, Food-101 (most of the pool) filling the rest: the
    # words should cover scenes, streets, people and plants, not only dishes.
    rng = np.random.default_rng(args.seed)
    others = np.concatenate([v for k, v in feats.items() if k != "food101_mini"])
    food = feats["food101_mini"]
    room = max(0, args.features - others.shape[0])
    if room < food.shape[0]:
        food = food[rng.choice(food.shape[0], room, replace=False)]
    x = np.concatenate([others, food]).astype(np.float32)
    if x.shape[0] > args.features:
        x = x[rng.choice(x.shape[0], args.features, replace=False)]
    config = replace(
        IndexConfig(),
        codebook_size=args.words,
        kmeans_iterations=args.iterations,
        sample_features=x.shape[0],
        seed=args.seed,
    )
    t0 = time.perf_counter()
    model = BLCFIndex(config).train(x, progress=True).model.to_half()
    t_fit = time.perf_counter() - t0
    save_model_only(args.out, model)
    summary = {
        "photos": {k: len(v) for k, v in photos.items()},
        "features_per_source": counts,
        "features_fitted": int(x.shape[0]),
        "words": model.codebook.size,
        "extract_seconds": round(t_feat, 1),
        "fit_seconds": round(t_fit, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
