"""Detector features (thesis ch. 3) vs BLCF (ch. 2) on one Oxford-format benchmark.

Prints the Tables 3.1-3.3 analogues (sum vs max, CA-SR vs CS-SR, FT_fc vs FT_all, with and
without QE) and a cost table side by side with BLCF: mAP, index bytes per photo, median query
latency (query photo encoded, then searched) and build time, all measured here.

    export BEYONDVIS_DATA=/path/to/shared/data
    beyondvis data make-instances --out runs/instances
    OMP_NUM_THREADS=1 python benchmarks/detector_search.py runs/instances --max-side 320 \
        --json-out runs/detector_search.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from beyondvis.utils.tables import markdown_table


def blcf_row(root: Path, photos: list[Path], queries, gt, max_side: int) -> dict:
    """BLCF at `index build` defaults (shipped codebook), LS + R, measured the same way."""
    from beyondvis.retrieval import BLCFIndex, IndexConfig, SearchConfig
    from beyondvis.retrieval.evaluate import mean_average_precision
    from beyondvis.retrieval.features import FeatureConfig

    out = Path(tempfile.mkdtemp(prefix="blcf-bench-"))
    try:
        t0 = time.perf_counter()
        cfg = IndexConfig(features=FeatureConfig(max_side=max_side))
        index = BLCFIndex.pretrained(config=cfg)
        index.add(photos, workers=0)
        index.save(out)
        build = time.perf_counter() - t0
        scfg = SearchConfig(mode="ls", rerank=True, centre_prior=index.config.centre_prior)
        rankings, times = {}, []
        for q in queries:
            t0 = time.perf_counter()
            hits = index.search(q.image, box=q.box, k=0, config=scfg, unmatched=True)
            times.append(time.perf_counter() - t0)
            rankings[q.name] = [Path(h.image).stem for h in hits]
        return {
            "method": f"BLCF shipped codebook (LS + R), {max_side} px",
            "map": mean_average_precision(rankings, gt),
            "bytes_per_image": sum(
                (out / f).stat().st_size for f in ("maps.npz", "postings.npz", "images.json")
            )
            / len(index),
            "model_bytes": (out / "model.npz").stat().st_size,
            "query_seconds": float(np.median(times)),
            "build_seconds": build,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path, help="folder with images/, queries/, gt_files/")
    p.add_argument("--max-side", type=int, default=320, help="network input long side (px)")
    p.add_argument("--proposals", type=int, default=300, help="RPN proposals kept per photo")
    p.add_argument("--level", type=int, default=4, help="backbone level (4: stride 32, 1280-D)")
    p.add_argument("--epochs", type=int, default=12, help="fine-tuning passes over the queries")
    p.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (Adam)")
    p.add_argument("--limit", type=int, help="database subset: positives + distractors up to N")
    p.add_argument("--cache", type=Path, default=Path(".cache/retrieval-frcnn"))
    p.add_argument("--networks", default="off-the-shelf,FT_fc,FT_all")
    p.add_argument("--no-blcf", action="store_true", help="skip the BLCF row")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)

    from beyondvis.retrieval.detector.benchmark import (
        DetectorBenchmark,
        cost_rows,
        pooling_rows,
        stage_rows,
    )
    from beyondvis.retrieval.detector.finetune import FinetuneConfig
    from beyondvis.retrieval.detector.model import DetectorConfig

    cfg = DetectorConfig(max_side=args.max_side, proposals=args.proposals, level=args.level)
    bench = DetectorBenchmark(
        args.dataset, cfg, args.cache, finetune=FinetuneConfig(epochs=args.epochs, lr=args.lr),
        limit=args.limit,
    )  # fmt: skip
    networks = tuple(n.strip() for n in args.networks.split(","))
    print(f"{len(bench.photos)} database photos, {len(bench.queries)} queries, "
          f"{args.max_side} px, {args.proposals} proposals, level {args.level}")  # fmt: skip
    for net in networks:
        bench.index(net)
        print(f"{net}: built in {bench.build_seconds[net]:.0f} s", flush=True)
    out = {"format": "beyondvis-frcnn-benchmark", "format_version": 1, "config": cfg.to_dict(),
           "photos": len(bench.photos), "queries": len(bench.queries)}  # fmt: skip
    if "off-the-shelf" in networks:
        out["pooling"] = pooling_rows(bench)
        print("\nSum vs max pooling, off the shelf (Table 3.1, mAP)")
        print(markdown_table(out["pooling"], ["filtering", "reranking", "map"]))
    out["stages"] = stage_rows(bench, networks)
    print("\nReranking and query expansion (Tables 3.2-3.3, mAP; IPA-sum, CA-SR = RPA-max)")
    print(markdown_table(out["stages"], ["stage", *networks]))
    rows = cost_rows(bench, networks)
    if not args.no_blcf:
        rows.append(blcf_row(args.dataset, bench.photos, bench.queries, bench.gt, args.max_side))
    out["cost"] = rows
    print("\nDetector features vs BLCF (same photos, same machine)")
    print(
        markdown_table(
            rows,
            ["method", "map", "bytes_per_image", "model_bytes", "query_seconds", "build_seconds"],
        )
    )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
