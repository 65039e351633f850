"""Training throughput and inference latency of every set predictor (on cached-size features).

Inputs are random feature maps of the fast path's shape (EfficientNet-Lite0 at 224 px:
1280 x 7 x 7), so the numbers measure the set predictors themselves, not the backbone.

    python benchmarks/sets.py                          # MIML-like: 5 labels, sets up to 3
    python benchmarks/sets.py --labels 1488 --max-set 20 --card 8   # recipe ingredients
"""

from __future__ import annotations

import argparse
import time

import torch

from beyondvis.sets import MODEL_NAMES, create_set_predictor


def make_batch(batch: int, labels: int, max_set: int, card: int, gen: torch.Generator):
    sequence = torch.full((batch, max_set), -1)
    targets = torch.zeros(batch, labels)
    for i in range(batch):
        k = int(torch.randint(0, card + 1, (1,), generator=gen))
        ids = torch.randperm(labels, generator=gen)[:k]
        sequence[i, :k] = ids
        targets[i, ids] = 1.0
    return {"targets": targets, "card": targets.sum(1).long(), "sequence": sequence}


def timed(fn, min_time: float, warmup: int = 2) -> float:
    """Seconds per call (mean over as many calls as fit in ``min_time``, at least 3)."""
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < min_time:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, default=5)
    parser.add_argument("--max-set", type=int, default=3)
    parser.add_argument("--card", type=int, default=2, help="sampled set sizes 0..card")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1280)
    parser.add_argument("--size", type=int, default=7, help="feature map side")
    parser.add_argument("--embed", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--models", help="comma list (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(args.batch, args.channels, args.size, args.size, generator=gen)
    batch = make_batch(args.batch, args.labels, args.max_set, args.card, gen)
    names = args.models.split(",") if args.models else MODEL_NAMES
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = create_set_predictor(
            name,
            args.labels,
            args.max_set,
            args.channels,
            embed_dim=args.embed,
            hidden_size=args.hidden,
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train_step(model=model, optimizer=optimizer):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            model(features, batch)["loss"].backward()
            optimizer.step()

        def infer(model=model):
            model.eval()
            model.predict(features)

        train_s = timed(train_step, args.min_time)
        infer_s = timed(infer, args.min_time)
        params = sum(p.numel() for p in model.parameters())
        rows.append(
            (name, params, args.batch / train_s, infer_s * 1000, infer_s * 1000 / args.batch)
        )
    base_train, base_infer = rows[0][2], rows[0][3]
    print(
        f"set predictors on {args.batch}x{args.channels}x{args.size}x{args.size} features, "
        f"{args.labels} labels, max set {args.max_set}, {args.threads} thread(s)"
    )
    print(
        f"{'model':13s} {'params':>9s} {'train samples/s':>16s} {'x ' + rows[0][0]:>10s} "
        f"{'infer ms/batch':>15s} {'ms/image':>9s} {'x ' + rows[0][0]:>10s}"
    )
    for name, params, train_rate, batch_ms, image_ms in rows:
        print(
            f"{name:13s} {params:9d} {train_rate:16.1f} {train_rate / base_train:10.2f} "
            f"{batch_ms:15.2f} {image_ms:9.3f} {batch_ms / base_infer:10.2f}"
        )


if __name__ == "__main__":
    main()
