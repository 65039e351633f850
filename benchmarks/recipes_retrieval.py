"""Recipe retrieval speed: embedding throughput and FAISS search latency for 1k/10k/100k recipes.

    python benchmarks/recipes_retrieval.py [--sizes 1000 10000 100000] [--threads 1]

Embedding uses the default joint model (random weights: speed does not depend on training) on
synthetic recipes shaped like recipe1m_mini (11 ingredients, 8 steps of 128-d skip-instruction
vectors) and on 1280-d pooled image features. Search embeds nothing: it times queries against
indexes of N random 256-d recipe embeddings, exact float32 (``flat``) vs float16 scalar-quantised
(``fp16``, the shipped kind), top 5, one query at a time and in batches of 64.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from beyondvis.recipes.retrieval.index import EmbeddingIndex
from beyondvis.recipes.retrieval.model import JointConfig, JointEmbedding


def _timeit(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


@torch.no_grad()
def embedding_throughput(batch: int = 256) -> dict[str, float]:
    cfg = JointConfig(num_ingredients=321, num_classes=1281)
    model = JointEmbedding(cfg).eval()
    ingr = torch.randint(1, 322, (batch, 20))
    ingr_len = torch.full((batch,), 11)
    steps = torch.randn(batch, 20, cfg.step_dim)
    steps_len = torch.full((batch,), 8)
    images = torch.randn(batch, cfg.image_dim)
    t_rec = _timeit(lambda: model.embed_recipe(ingr, ingr_len, steps, steps_len), 5)
    t_img = _timeit(lambda: model.embed_image(images), 20)
    return {"recipes_per_s": batch / t_rec, "image_heads_per_s": batch / t_img}


def search_latency(n: int, dim: int, kind: str, rng: np.random.Generator) -> dict[str, float]:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    items = [{"id": str(i)} for i in range(n)]
    start = time.perf_counter()
    index = EmbeddingIndex.build(vectors, items, kind)
    build_s = time.perf_counter() - start
    queries = rng.normal(size=(64, dim)).astype(np.float32)
    single = _timeit(lambda: index.search(queries[:1], 5), 20)
    batched = _timeit(lambda: index.search(queries, 5), 5) / len(queries)
    return {"build_s": build_s, "single_ms": single * 1e3, "batched_ms": batched * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    emb = embedding_throughput()
    print(f"threads: {args.threads}")
    print(f"recipe embedding (2 LSTMs + projection): {emb['recipes_per_s']:.0f} recipes/s")
    print(f"image head (adapter + projection, features given): {emb['image_heads_per_s']:.0f} /s")
    print()
    print(
        "| recipes | kind | build (s) | 1 query (ms) | per query, batch 64 (ms) | flat/fp16 (1 query) |"
    )
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in args.sizes:
        res = {kind: search_latency(n, args.dim, kind, rng) for kind in ("flat", "fp16")}
        for kind, r in res.items():
            ratio = res["flat"]["single_ms"] / res["fp16"]["single_ms"] if kind == "fp16" else 1.0
            print(
                f"| {n} | {kind} | {r['build_s']:.3f} | {r['single_ms']:.3f} | "
                f"{r['batched_ms']:.4f} | {ratio:.2f} |"
            )


if __name__ == "__main__":
    main()
