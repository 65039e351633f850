"""Seeding and random-state capture, so a run is reproducible and a resumed run is exact.

RNG states are stored as tensors and plain Python types only, because checkpoints are loaded
with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects such as the
tuple of numpy arrays that ``np.random.get_state()`` returns.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

_MAX_SEED = 2**32


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    seed = int(seed) % _MAX_SEED
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoaders: derive numpy/random seeds from the worker's torch seed.

    torch gives each worker ``base_seed + worker_id``, but numpy and ``random`` would otherwise be
    forked copies of the parent's state, so every worker would draw the same "random" numbers.
    """
    seed = torch.initial_seed() % _MAX_SEED
    random.seed(seed)
    np.random.seed(seed)


def get_rng_state() -> dict[str, Any]:
    """All global RNG states as tensors / plain types (safe for ``weights_only`` loading)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate(
        (py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"])
    )
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


@contextlib.contextmanager
def item_rng(seed: int) -> Iterator[None]:
    """Seed all global RNGs to ``seed`` for one dataset item; put torch's stream back afterwards.

    Only torch's state is restored (cheap, and it drives dropout in the training step). Saving
    and restoring numpy's legacy state costs ~150 us each way, too much per item, so numpy and
    ``random`` are left as seeded by the last item: still a deterministic function of the data
    order, so resumed runs reproduce them exactly.
    """
    saved = torch.get_rng_state()
    seed = int(seed) % _MAX_SEED
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)  # CPU only: items load on the CPU
    try:
        yield
    finally:
        torch.set_rng_state(saved)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A seed for one dataset item in one epoch, independent of workers, batching and resume."""
    # Large odd multipliers spread neighbouring (epoch, index) pairs over the seed space.
    return (seed * 1_000_003 + epoch * 7_919_993 + index * 2_654_435_761) % _MAX_SEED


class SeededItems(torch.utils.data.Dataset):
    """Fetch ``dataset[index]`` with RNGs seeded from (seed, epoch, index).

    Random augmentations then depend only on which item in which epoch, not on the worker that
    loads it or on how many batches came before; that is what makes a resumed run (which skips
    the batches it already trained on) see exactly the same augmented inputs. The sampler yields
    ``(epoch, index)`` pairs.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with item_rng(item_seed(self.seed, epoch, index)):
            return self.dataset[index]
