"""Cache ragged maps under torchrun (run by test_engine_features_ragged.py): each rank writes
its own part, rank 0 joins them. ``--kill-after N`` stops every rank after N batches."""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from test_engine_features_ragged import Maps, Photos  # noqa: E402

from beyondvis.engine import cache_features  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--kill-after", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    source = Maps(fail_after_batches=None if args.kill_after is None else args.kill_after + 1)
    try:
        cache = cache_features(
            source, Photos(broken={5}), args.out, name="maps", ragged=True, batch_size=2,
            device="cpu", progress=False, info_fn=lambda item: item["size"],
        )  # fmt: skip
    except KeyboardInterrupt:
        print(f"rank{os.environ.get('RANK')} killed after {source.seen}", flush=True)
        return 3
    print(f"rank{os.environ.get('RANK')} computed={source.seen} cached={len(cache)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
