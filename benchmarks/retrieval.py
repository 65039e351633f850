"""Indexing throughput and search speed/memory of BLCF at the default settings.

Part 1, ``index build`` throughput on real photos (``--photos``, default the 500-768 px photos
of ``$BEYONDVIS_DATA/recipe1m_mini``): the time of every stage per photo run one after the other
(decode, resize + normalise, backbone, PCA + word assignment) and the end-to-end images/s of
``BLCFIndex.add`` with the stages overlapped (decoding threads, assignment thread) next to the
same photos encoded strictly one stage after the other, with the shipped codebook and the
default ``IndexConfig``. One torch and one FAISS thread: the pipeline's gain comes from
overlapping stages on two cores, not from wider thread pools.

Part 2, search speed and memory for 10k / 100k / 1M indexed images: bytes of postings per
image and single-query latency (median, p95) of (a) the BLCF inverted index (the filtering
stage of ``BLCFIndex.search``) and (b) exact inner-product search with FAISS ``IndexFlatIP``
over 512-D float32 descriptors, on ONE core, and their ratio. The dense side is also timed as a
plain BLAS matrix-vector product (numpy), and the speed-up is taken against the faster of the
two dense searches.

Collections larger than what can be extracted here are synthetic, but with the real sparsity
of assignment maps: the index built in part 1 (or ``--index``, any BLCF index) gives the
document frequency of every visual word and the term-frequency histogram. Synthetic posting
lists draw each word's length from Binomial(N, df_w / N_real), so the number of distinct words
per image and the length of the posting lists a query touches are those of the real index.
Queries are the real BoWs of the indexed images: global (GS) and local (LS, a box of a quarter
of the map's area).

    python benchmarks/retrieval.py [--photos DIR] [--encode 60] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

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
    # ids in each list are random, then sorted as in a real index (whose lists are built in
    # image order): the accumulation into the score vector then walks it forwards, which
    # measured 2x faster than in random order. Duplicates (rare) do not change the work done.
    indices = rng.integers(0, n, nnz, dtype=np.int32)
    data = rng.choice(stats["tf_values"], nnz).astype(np.float32)
    post = sp.csr_matrix((data, indices, indptr), shape=(stats["vocab"], n))
    post.sort_indices()
    return post


def timed(fn, queries, repeats: int = 1) -> np.ndarray:
    """CPU ms of this thread per query: on a shared, loaded machine the wall time measures the
    other jobs; with one thread per library the thread's CPU time is the query's cost."""
    fn(queries[0])  # warm caches
    times = []
    for q in queries:
        t0 = time.thread_time()
        for _ in range(repeats):
            fn(q)
        times.append((time.thread_time() - t0) / repeats)
    return np.array(times) * 1000.0


def real_photos(folder: Path, n: int, min_side: int = 500) -> list[Path]:
    """The first ``n`` photos of ``folder`` whose long side is at least ``min_side`` px."""
    from PIL import Image

    from beyondvis.io import iter_image_paths

    out = []
    for p in iter_image_paths(folder):
        with Image.open(p) as im:
            if max(im.size) >= min_side:
                out.append(p)
        if len(out) == n:
            break
    return out


def build_throughput(photos: list[Path], workers: int) -> BLCFIndex:
    """Per-stage times and end-to-end images/s of indexing ``photos`` (shipped codebook)."""
    from PIL import Image

    from beyondvis.io import load_image

    index = BLCFIndex.pretrained()
    extractor = index.extractor
    encoder = index.model.encoder(extractor)
    index.add(photos[:2], workers=0)  # warm up: first-call allocations, lazy imports
    index = BLCFIndex.pretrained()
    index._extractor = extractor
    names = ("decode", "resize + normalise", "backbone", "PCA + assignment")
    wall = {k: [] for k in names}
    cpu = {k: [] for k in names}  # CPU time of this thread: what the stage costs, whatever the load
    sides = []
    clock = (time.perf_counter, time.thread_time)
    t_seq, c_seq = time.perf_counter(), time.process_time()
    for path in photos:
        marks = [(clock[0](), clock[1]())]
        image = load_image(path)
        marks.append((clock[0](), clock[1]()))
        x = extractor.prepare(image)
        marks.append((clock[0](), clock[1]()))
        f = extractor.features(x)
        marks.append((clock[0](), clock[1]()))
        encoder.encode_features(f)
        marks.append((clock[0](), clock[1]()))
        for k, key in enumerate(names):
            wall[key].append((marks[k + 1][0] - marks[k][0]) * 1000)
            cpu[key].append((marks[k + 1][1] - marks[k][1]) * 1000)
        sides.append(max(image.size))
    t_seq, c_seq = time.perf_counter() - t_seq, time.process_time() - c_seq
    t0, c0 = time.perf_counter(), time.process_time()
    index.add(photos, workers=workers)
    t_pipe, c_pipe = time.perf_counter() - t0, time.process_time() - c0
    # the same with two torch threads: the backbone may then use both cores when the decode
    # and assignment threads wait (what `index build` does without --threads on 2 cores)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    wide = BLCFIndex.pretrained()
    wide._extractor = extractor
    t0, c0 = time.perf_counter(), time.process_time()
    wide.add(photos, workers=workers)
    t_wide, c_wide = time.perf_counter() - t0, time.process_time() - c0
    torch.set_num_threads(threads)
    cfg = index.config.features
    with Image.open(photos[0]) as im:
        size_in = extractor.input_size(im.size)
    print(
        f"index build throughput: {len(photos)} real photos (long side {min(sides)}-{max(sides)} px"
        f", median {int(np.median(sides))}), default config: {cfg.backbone} level {cfg.level}, "
        f"long side capped at {cfg.max_side} px (e.g. {size_in[0]}x{size_in[1]}), "
        f"upsample={cfg.upsample}, shipped codebook of {index.model.codebook.size} words, "
        f"assign_nprobe={index.config.assign_nprobe}; 1 torch + 1 FAISS thread; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other jobs share them)"
    )
    print(f"  {'stage':<20} {'CPU ms/img':>10} {'wall ms/img':>11}")
    for key in names:
        print(f"  {key:<20} {np.mean(cpu[key]):>10.1f} {np.mean(wall[key]):>11.1f}")
    print(
        f"  {'sum of stages':<20} {sum(np.mean(v) for v in cpu.values()):>10.1f} "
        f"{sum(np.mean(v) for v in wall.values()):>11.1f}"
    )
    n = len(photos)
    print(
        f"  one stage after the other: {n / t_seq:6.1f} images/s wall, "
        f"{1000 * c_seq / n:6.1f} CPU ms/img"
    )
    print(
        f"  overlapped (BLCFIndex.add, {workers} decode threads + assignment thread): "
        f"{n / t_pipe:6.1f} images/s wall ({t_seq / t_pipe:.2f}x), {1000 * c_pipe / n:6.1f} "
        f"CPU ms/img, {c_pipe / t_pipe:.2f} cores busy on average"
    )
    print(
        f"  overlapped, 2 torch threads: {n / t_wide:6.1f} images/s wall ({t_seq / t_wide:.2f}x), "
        f"{1000 * c_wide / n:6.1f} CPU ms/img, {c_wide / t_wide:.2f} cores busy on average"
    )
    return index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", help="real photos for part 1 (default: recipe1m_mini images)")
    ap.add_argument("--encode", type=int, default=60, help="photos encoded in part 1 (0: skip)")
    ap.add_argument("--workers", type=int, default=2, help="decode threads in part 1")
    ap.add_argument("--index", help="a BLCF index as sparsity source instead of part 1's")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--top", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--max-words", type=int, default=100, help="query words searched (SearchConfig default)"
    )
    args = ap.parse_args(argv)
    faiss.omp_set_num_threads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    index = None
    if args.encode:
        folder = args.photos
        if folder is None:
            from beyondvis.utils import shared_data_root

            root = shared_data_root()
            if root is None:
                print("no --photos and BEYONDVIS_DATA unset: set one of them", file=sys.stderr)
                return 2
            folder = Path(root) / "recipe1m_mini" / "images"
        photos = real_photos(Path(folder), args.encode)
        if not photos:
            print(f"no photo of 500 px or more under {folder}", file=sys.stderr)
            return 2
        index = build_throughput(photos, args.workers)
        print()
    if args.index:
        index = BLCFIndex.load(args.index)
    if index is None:
        print("nothing to measure search on: give --index or --encode > 0", file=sys.stderr)
        return 2
    search_table(index, args)
    return 0


def search_table(index: BLCFIndex, args) -> None:
    stats = measure(index, args.queries, args.seed)
    rng = np.random.default_rng(args.seed)
    q_nnz = {k: np.mean([np.count_nonzero(v) for v in vs]) for k, vs in stats["queries"].items()}
    source = args.index or f"the {stats['n_real']} photos of part 1"
    print(
        f"search: sparsity of {source} ({stats['vocab']} words, "
        f"{stats['cells_per_image'].mean():.0f} cells/map, "
        f"{stats['nnz_per_image'].mean():.0f} distinct words/image, "
        f"query words GS {q_nnz['GS']:.0f} / LS {q_nnz['LS']:.0f}); one core, "
        f"{args.queries} queries, top {args.top}; CPU ms per query (thread time), load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'images':>9} | {'BLCF B/img':>10} | {'in RAM':>6} | {'+maps B/img':>11} | "
        f"{'dense B/img':>11} | "
        f"{'query':>8} | {'BLCF med ms':>11} | {'BLCF p95':>8} | {'flat med ms':>11} | "
        f"{'flat p95':>8} | {'BLAS med ms':>11} | {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for n in [int(s) for s in args.sizes.split(",")]:
        postings = synthetic_postings(stats, n, rng)
        with np.errstate(divide="ignore"):
            idf = np.where(stats["df_frac"] > 0, -np.log(stats["df_frac"]), 0)
        # idf and norms from the real index's statistics, not recomputed from synthetic tf
        inv = InvertedIndex.from_arrays(
            postings.indptr, postings.indices, postings.data, n, idf=idf,
            norms=rng.uniform(5, 50, n),
        )  # fmt: skip
        blcf_bytes = inv.disk_nbytes / n  # uint32 id + float16 tf, as in postings.npz
        ram_bytes = inv.nbytes / n  # int32 id + float32 tf, SciPy CSR
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

        for kind, queries, words in (
            ("GS all", stats["queries"]["GS"], None),
            (f"GS {args.max_words}", stats["queries"]["GS"], args.max_words),
            ("LS all", stats["queries"]["LS"], None),
            (f"LS {args.max_words}", stats["queries"]["LS"], args.max_words),
        ):

            def blcf_search(q, inv=inv, words=words):
                return inv.search(q, args.top, max_words=words)

            t = timed(blcf_search, queries)
            print(
                f"{n:>9,} | {blcf_bytes:>10.0f} | {ram_bytes:>6.0f} | {blcf_bytes + map_bytes:>11.0f} | "
                f"{args.dim * 4:>11} | {kind:>8} | {np.median(t):>11.2f} | "
                f"{np.percentile(t, 95):>8.2f} | {np.median(flat):>11.2f} | "
                f"{np.percentile(flat, 95):>8.2f} | {np.median(blas):>11.2f} | "
                f"{best_dense / np.median(t):>7.1f}x"
            )
        del postings, inv, dense, matrix, flat_search, blas_search, blcf_search
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
