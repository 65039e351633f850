"""Speed and memory of BLCF inverted-index search vs FAISS flat search over dense descriptors.

For 10k / 100k / 1M indexed images it prints index bytes per image and single-query latency
(median, p95) of (a) the BLCF inverted index (``beyondvis.retrieval.inverted.InvertedIndex``)
and (b) exact inner-product search with FAISS ``IndexFlatIP`` over 512-D float32 descriptors,
both on ONE core, and their ratio. The dense side is also timed as a plain BLAS matrix-vector
product (numpy), and the speed-up is taken against the faster of the two dense searches.

Collections larger than what can be extracted here are synthetic, but with the real sparsity
of assignment maps: ``--index`` points at a real BLCF index (``beyondvis index build``) from
which we measure the document frequency of every visual word and the term-frequency
histogram. Synthetic posting lists draw each word's length from Binomial(N, df_w / N_real),
so the number of distinct words per image and the length of the posting lists a query touches
are those of the real index. Queries are the real BoWs of the indexed images: global (GS) and
local (LS, a box of a quarter of the map's area).

    python benchmarks/retrieval.py --index runs/speed-index [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from beyondvis.retrieval.bow import bow, bow_matrix  # noqa: E402
from beyondvis.retrieval.index import BLCFIndex  # noqa: E402
from beyondvis.retrieval.inverted import InvertedIndex  # noqa: E402


def measure(index: BLCFIndex, n_queries: int, seed: int) -> dict:
    vocab = index.model.codebook.size
    bows = bow_matrix(index.maps, vocab, centre=index.config.centre_prior)
    df = np.diff(sp.csc_matrix(bows).indptr)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(index.maps), n_queries, replace=len(index.maps) < n_queries)
    gs, ls = [], []
    for i in picks:
        m = index.maps[i]
        gs.append(bow(m, vocab))
        h, w = m.shape
        bh, bw = max(1, h // 2), max(1, w // 2)
        r, c = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        ls.append(bow(m[r : r + bh, c : c + bw], vocab))
    return {
        "vocab": vocab,
        "n_real": bows.shape[0],
        "df_frac": df / bows.shape[0],
        "tf_values": bows.data,
        "nnz_per_image": bows.getnnz(axis=1),
        "cells_per_image": np.array([m.size for m in index.maps]),
        "map_bytes": index.maps[0].dtype.itemsize,
        "queries": {"GS": gs, "LS": ls},
    }


def synthetic_postings(stats: dict, n: int, rng: np.random.Generator) -> sp.csr_matrix:
    """(vocab, n) word-major postings with the real per-word document frequencies."""
    lengths = rng.binomial(n, np.minimum(stats["df_frac"], 1.0))
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    nnz = int(indptr[-1])
    # ids in each list are random; duplicates (rare) do not change the work done
    indices = rng.integers(0, n, nnz, dtype=np.int32)
    data = rng.choice(stats["tf_values"], nnz).astype(np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(stats["vocab"], n))


def timed(fn, queries, repeats: int = 1) -> np.ndarray:
    fn(queries[0])  # warm caches
    times = []
    for q in queries:
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(q)
        times.append((time.perf_counter() - t0) / repeats)
    return np.array(times) * 1000.0


def encoding_breakdown(index: BLCFIndex, n_photos: int, nprobe: int) -> None:
    """Per-photo time of each indexing step on real photos of the index, one core."""
    from beyondvis.io import load_image
    from beyondvis.retrieval.codebook import Codebook
    from beyondvis.retrieval.features import LocalFeatureExtractor

    extractor = LocalFeatureExtractor(index.config.features)
    exact = Codebook(index.model.codebook.centroids)
    approx = Codebook(index.model.codebook.centroids, nprobe)
    times = {"backbone": [], "pca": [], "assign exact": [], f"assign IVF nprobe={nprobe}": []}
    agree, cells = [], []
    for path in index.paths[:n_photos]:
        image = load_image(path)
        t0 = time.perf_counter()
        f = extractor(image)
        t1 = time.perf_counter()
        x = index.model.pca(f.reshape(-1, f.shape[-1]))
        t2 = time.perf_counter()
        a = exact.assign(x)
        t3 = time.perf_counter()
        b = approx.assign(x)
        t4 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key].append(dt * 1000)
        agree.append(float((a == b).mean()))
        cells.append(f.shape[0] * f.shape[1])
    print(
        f"\nindexing cost per photo ({n_photos} photos, {np.mean(cells):.0f} cells/map, "
        f"{exact.size} words, one core):"
    )
    for key, vals in times.items():
        print(f"  {key:<24} {np.median(vals):8.1f} ms")
    print(f"  IVF assignment agrees with exact on {100 * np.mean(agree):.1f}% of cells")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True, help="a real BLCF index (sparsity source)")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--top", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encode", type=int, default=10, help="photos for the indexing breakdown")
    ap.add_argument("--nprobe", type=int, default=8)
    args = ap.parse_args(argv)
    faiss.omp_set_num_threads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    index = BLCFIndex.load(args.index)
    stats = measure(index, args.queries, args.seed)
    rng = np.random.default_rng(args.seed)
    q_nnz = {k: np.mean([np.count_nonzero(v) for v in vs]) for k, vs in stats["queries"].items()}
    print(
        f"sparsity source: {args.index} ({stats['n_real']} real images, {stats['vocab']} words, "
        f"{stats['cells_per_image'].mean():.0f} cells/map, "
        f"{stats['nnz_per_image'].mean():.0f} distinct words/image, "
        f"query words GS {q_nnz['GS']:.0f} / LS {q_nnz['LS']:.0f}); one core, "
        f"{args.queries} queries, top {args.top}"
    )
    header = (
        f"{'images':>9} | {'BLCF B/img':>10} | {'+maps B/img':>11} | {'dense B/img':>11} | "
        f"{'query':>5} | {'BLCF med ms':>11} | {'BLCF p95':>8} | {'flat med ms':>11} | "
        f"{'flat p95':>8} | {'BLAS med ms':>11} | {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for n in [int(s) for s in args.sizes.split(",")]:
        postings = synthetic_postings(stats, n, rng)
        inv = InvertedIndex.__new__(InvertedIndex)  # skip idf/norm recomputation from real tf
        inv.postings, inv.tfidf = postings, True
        with np.errstate(divide="ignore"):
            inv.idf = np.where(stats["df_frac"] > 0, -np.log(stats["df_frac"]), 0).astype(
                np.float32
            )
        inv.norms = rng.uniform(5, 50, n).astype(np.float32)
        blcf_bytes = postings.nnz * (postings.data.itemsize + postings.indices.itemsize) / n
        map_bytes = stats["cells_per_image"].mean() * stats["map_bytes"]

        dense = faiss.IndexFlatIP(args.dim)
        matrix = np.empty((n, args.dim), np.float32)
        chunk = 100_000
        for s in range(0, n, chunk):
            x = rng.standard_normal((min(chunk, n - s), args.dim), dtype=np.float32)
            faiss.normalize_L2(x)
            dense.add(x)
            matrix[s : s + len(x)] = x
        dq = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        faiss.normalize_L2(dq)

        def flat_search(q, dense=dense):
            return dense.search(q[None], args.top)

        flat = timed(flat_search, list(dq))

        def blas_search(q, matrix=matrix):
            # the same exact search as one BLAS matrix-vector product + partial sort: a check
            # that the FAISS build (generic, without AVX2 kernels, in this venv) is not the
            # weak side of the comparison
            s = matrix @ q
            top = np.argpartition(-s, args.top)[: args.top]
            return top[np.argsort(-s[top])]

        blas = timed(blas_search, list(dq))
        best_dense = min(np.median(flat), np.median(blas))

        def blcf_search(q, inv=inv):
            return inv.search(q, args.top)

        for kind, queries in stats["queries"].items():
            t = timed(blcf_search, queries)
            print(
                f"{n:>9,} | {blcf_bytes:>10.0f} | {blcf_bytes + map_bytes:>11.0f} | "
                f"{args.dim * 4:>11} | {kind:>5} | {np.median(t):>11.2f} | "
                f"{np.percentile(t, 95):>8.2f} | {np.median(flat):>11.2f} | "
                f"{np.percentile(flat, 95):>8.2f} | {np.median(blas):>11.2f} | "
                f"{best_dense / np.median(t):>7.1f}x"
            )
        del postings, inv, dense, matrix, flat_search, blas_search, blcf_search
        sys.stdout.flush()
    if args.encode:
        encoding_breakdown(index, args.encode, args.nprobe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
