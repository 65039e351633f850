"""The training loop every beyondvis system shares.

A system supplies a model, a dataset and a ``step_fn(model, batch) -> loss``; the Trainer does
the rest: optimizer and LR schedule, seeding, device placement, DDP under torchrun, progress bar,
metrics.csv, periodic/best checkpoints, exact resume after a kill, and early stopping.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from beyondvis.engine.checkpoint import (
    CheckpointError,
    check_plain,
    load_checkpoint,
    save_checkpoint,
    unwrap_model,
)
from beyondvis.engine.config import (
    ResumeConfigError,
    TrainConfig,
    config_diff,
    config_to_dict,
    format_diff,
    save_config,
)
from beyondvis.engine.distributed import DistContext, ResumableSampler, init_distributed
from beyondvis.engine.metrics import MetricsLogger
from beyondvis.engine.seeding import (
    SeededItems,
    get_rng_state,
    seed_everything,
    seed_worker,
    set_rng_state,
)
from beyondvis.utils.locks import folder_lock
from beyondvis.utils.progress import show_progress

log = logging.getLogger(__name__)

RUN_LOCK = ".run.lock"  # in the run folder while a job trains into it

StepFn = Callable[[nn.Module, Any], "torch.Tensor | Mapping[str, Any]"]
EvalFn = Callable[[nn.Module], Mapping[str, float]]
OptimizerFn = Callable[[nn.Module, TrainConfig], torch.optim.Optimizer]
SchedulerFn = Callable[[torch.optim.Optimizer, TrainConfig, int], Any]


@dataclasses.dataclass
class TrainResult:
    best_metric: float | None
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    history: list[dict[str, Any]]  # one dict per finished epoch (train_loss, eval metrics, ...)
    steps: int = 0
    epochs: int = 0  # epochs completed
    stopped_early: bool = False


@dataclasses.dataclass
class _State:
    """Everything about progress that a checkpoint must carry to resume exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    # Training-loss window since the last metrics row, kept so a resume logs identical rows.
    window_loss_sum: float = 0.0
    window_count: int = 0
    window_extras: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # [sum, n]
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class Trainer:
    """Train ``model`` on ``train_data`` with ``step_fn``; see docs/engine.md.

    ``step_fn(model, batch)`` returns the loss tensor, or a dict with ``"loss"`` and optional
    extra scalars to log. It receives the DDP-wrapped model under torchrun, so it must run the
    forward pass through ``model(...)`` (gradients are synchronised by that call).
    ``eval_fn(model)`` returns ``{metric: value}``; it runs on rank 0 only, in eval mode without
    gradients, on the unwrapped model.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_data: Dataset,
        step_fn: StepFn,
        eval_fn: EvalFn | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        sampler_shuffle: bool = True,
        checkpoint_extra: Mapping[str, Any] | None = None,
        *,
        optimizer_fn: OptimizerFn | None = None,
        scheduler_fn: SchedulerFn | None = None,
        per_item_seed: bool = True,
        find_unused_parameters: bool = False,
    ) -> None:
        if len(train_data) == 0:  # type: ignore[arg-type]
            raise ValueError("train_data is empty: nothing to train on")
        check_plain(checkpoint_extra, "checkpoint_extra")
        self.model = model
        self.config = config
        self.train_data = train_data
        self.step_fn = step_fn
        self.eval_fn = eval_fn
        self.collate_fn = collate_fn
        self.sampler_shuffle = sampler_shuffle
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.optimizer_fn = optimizer_fn or build_optimizer
        self.scheduler_fn = scheduler_fn or build_scheduler
        self.per_item_seed = per_item_seed
        self.find_unused_parameters = find_unused_parameters
        self.out_dir = Path(config.out_dir)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.ctx = DistContext()

    # ------------------------------------------------------------------ public
    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def fit(self, resume: bool | str | Path | None = "auto") -> TrainResult:
        """Train; ``resume="auto"`` continues from ``<out_dir>/last.pt`` when it exists.

        A resume first compares the stored run's settings (its TrainConfig and
        ``checkpoint_extra``) with this one's and raises :class:`ResumeConfigError` naming the
        keys that differ (all but :data:`RESUME_FREE_KEYS`, e.g. ``epochs`` to train longer);
        ``resume="force"`` resumes anyway. ``resume`` may also be a checkpoint path, or
        False/None to start afresh (which deletes ``last.pt``, ``best.pt`` and ``metrics.csv``
        of an earlier run in ``out_dir``).
        """
        self.ctx = init_distributed(self.config.device)
        finished = False
        try:
            # one job per run folder: two `sets train` into one folder interleaved
            # metrics.csv and overwrote each other's checkpoints (rank 0 holds it for the job)
            with folder_lock(self.out_dir, RUN_LOCK) if self.ctx.is_main else nullcontext():
                result = self._fit(resume)
            finished = True
            return result
        finally:
            # After an error the other ranks may never reach the closing barrier.
            self.ctx.close(sync=finished)

    # ----------------------------------------------------------------- set-up
    def _fit(self, resume: bool | str | Path | None) -> TrainResult:
        cfg, ctx = self.config, self.ctx
        self.model.to(ctx.device)
        self.optimizer = self.optimizer_fn(self.model, cfg)
        sampler = ResumableSampler(
            len(self.train_data),  # type: ignore[arg-type]
            shuffle=self.sampler_shuffle,
            seed=cfg.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            with_epoch=self.per_item_seed,
        )
        steps_per_epoch = _num_batches(sampler.shard_size, cfg.batch_size, cfg.drop_last)
        if steps_per_epoch == 0:
            raise ValueError(
                f"batch_size {cfg.batch_size} with drop_last leaves no batch from "
                f"{sampler.shard_size} items per process"
            )
        total_steps = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        self.scheduler = self.scheduler_fn(self.optimizer, cfg, total_steps)

        # Different ranks see different data; different dropout masks follow from seed + rank.
        seed_everything(cfg.seed + ctx.rank)
        state = _State()
        checkpoint_path = self._resume_path(resume)
        if checkpoint_path is not None:
            state = self._restore(checkpoint_path, check=resume != "force")
        elif ctx.is_main:
            # A fresh run must not mix with an earlier one's rows, nor report (or later resume
            # from) its checkpoints.
            for stale in (self.out_dir / "metrics.csv", self.last_path, self.best_path):
                stale.unlink(missing_ok=True)
        ctx.barrier()

        train_model: nn.Module = self.model
        if ctx.enabled:
            train_model = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=self.find_unused_parameters,
            )

        logger = None
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
            logger = MetricsLogger(
                self.out_dir / "metrics.csv",
                tensorboard_dir=self.out_dir / "tensorboard" if cfg.tensorboard else None,
            )
            logger.truncate_after(state.step)
        try:
            self._loop(train_model, sampler, state, steps_per_epoch, logger)
        finally:
            if logger is not None:
                logger.close()
        return TrainResult(
            best_metric=state.best_metric,
            best_checkpoint=self.best_path if self.best_path.exists() else None,
            last_checkpoint=self.last_path if self.last_path.exists() else None,
            history=state.history,
            steps=state.step,
            epochs=state.epoch,
            stopped_early=state.stopped_early,
        )

    def _resume_path(self, resume: bool | str | Path | None) -> Path | None:
        if resume is None or resume is False:
            return None
        if resume is True or resume in ("auto", "force"):
            return self.last_path if self.last_path.is_file() else None
        path = Path(resume)
        if not path.is_file():
            raise CheckpointError(f"resume checkpoint not found: {path}")
        return path

    def _restore(self, path: Path, check: bool = True) -> _State:
        ckpt = load_checkpoint(path, map_location="cpu")
        # Before the weights: a run of another model would otherwise fail in load_state_dict
        # with a traceback, and a run with another lr would silently continue (or, finished,
        # return its old result).
        diff = resume_diff(ckpt, self.config, self.checkpoint_extra)
        if diff and check:
            raise ResumeConfigError(
                f"{path.parent} holds a run with other settings: {format_diff(diff)}", diff
            )
        unwrap_model(self.model).load_state_dict(ckpt["model"])
        assert self.optimizer is not None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        state = _State(**{f.name: ckpt["state"][f.name] for f in dataclasses.fields(_State)})
        saved_world = ckpt.get("world_size", 1)
        if saved_world != self.ctx.world_size:
            log.warning(
                "resuming a %d-process run with %d processes: data order within the current "
                "epoch will not match exactly",
                saved_world,
                self.ctx.world_size,
            )
        rng_states = ckpt.get("rng_per_rank") or []
        if self.ctx.rank < len(rng_states) and saved_world == self.ctx.world_size:
            set_rng_state(rng_states[self.ctx.rank])
        else:
            seed_everything(self.config.seed + self.ctx.rank + state.step)
        if diff and self.ctx.is_main:
            log.warning("resuming %s with changed settings: %s", path, format_diff(diff, 20))
        if self.ctx.is_main:
            log.info("resumed from %s at step %d (epoch %d)", path, state.step, state.epoch)
        return state

    # -------------------------------------------------------------- main loop
    def _loop(
        self,
        train_model: nn.Module,
        sampler: ResumableSampler,
        state: _State,
        steps_per_epoch: int,
        logger: MetricsLogger | None,
    ) -> None:
        cfg, ctx = self.config, self.ctx
        assert self.optimizer is not None
        if self._finished(state):
            return
        dataset = SeededItems(self.train_data, cfg.seed) if self.per_item_seed else self.train_data
        train_model.train()
        while state.epoch < cfg.epochs:
            sampler.set_epoch(state.epoch, start=state.batch_in_epoch * cfg.batch_size)
            loader = DataLoader(
                dataset,
                batch_size=cfg.batch_size,
                sampler=sampler,
                collate_fn=self.collate_fn,
                num_workers=cfg.num_workers,
                drop_last=cfg.drop_last,
                worker_init_fn=seed_worker,
                # Worker seeds come from this generator, not the global RNG, so creating the
                # loader does not shift the RNG stream that dropout etc. draw from.
                generator=torch.Generator().manual_seed(cfg.seed + state.epoch),
                pin_memory=ctx.device.type == "cuda",
            )
            bar = tqdm(
                total=steps_per_epoch,
                initial=state.batch_in_epoch,
                desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                disable=not show_progress(cfg.progress, ctx.is_main),
                leave=False,
            )
            hit_max_steps = False
            for batch in loader:
                loss, step_extras = self._train_step(train_model, batch, state.step)
                state.step += 1
                state.batch_in_epoch += 1
                state.epoch_loss_sum += loss
                state.epoch_loss_count += 1
                state.window_loss_sum += loss
                state.window_count += 1
                for key, value in step_extras.items():
                    total = state.window_extras.setdefault(key, [0.0, 0])
                    total[0] += value
                    total[1] += 1
                bar.update(1)
                if state.step % cfg.log_every == 0:
                    mean_loss = ctx.mean(state.window_loss_sum / state.window_count)
                    row = {"loss": mean_loss, "lr": self.optimizer.param_groups[0]["lr"]}
                    row.update({k: v[0] / v[1] for k, v in state.window_extras.items()})
                    if logger is not None:
                        logger.log(state.step, state.epoch + 1, "train", row)
                    bar.set_postfix(loss=f"{mean_loss:.4g}")
                    state.window_loss_sum, state.window_count = 0.0, 0
                    state.window_extras = {}
                if cfg.max_steps is not None and state.step >= cfg.max_steps:
                    hit_max_steps = True
                if cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0:
                    self._save(self.last_path, state)
                if hit_max_steps:
                    break
            bar.close()
            epoch_done = not hit_max_steps or state.batch_in_epoch >= steps_per_epoch
            self._end_epoch(state, epoch_done, logger)
            if self._finished(state):
                break

    def _train_step(
        self, train_model: nn.Module, batch: Any, step: int
    ) -> tuple[float, dict[str, float]]:
        cfg = self.config
        assert self.optimizer is not None
        batch = move_to_device(batch, self.ctx.device)
        out = self.step_fn(train_model, batch)
        if isinstance(out, Mapping):
            if "loss" not in out:
                raise KeyError("step_fn returned a dict without a 'loss' entry")
            loss = out["loss"]
            step_extras = {k: float(v) for k, v in out.items() if k != "loss" and _is_scalar(v)}
        else:
            loss, step_extras = out, {}
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError("step_fn must return a scalar loss tensor (or a dict with 'loss')")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {step + 1}")
        return value, step_extras

    def _end_epoch(self, state: _State, epoch_done: bool, logger: MetricsLogger | None) -> None:
        cfg, ctx = self.config, self.ctx
        count = max(state.epoch_loss_count, 1)
        metrics: dict[str, Any] = {"train_loss": ctx.mean(state.epoch_loss_sum / count)}
        finishing = (state.epoch + 1 >= cfg.epochs) or (
            cfg.max_steps is not None and state.step >= cfg.max_steps
        )
        evaluated = self.eval_fn is None
        if self.eval_fn is not None and (
            (state.epoch + 1) % cfg.eval_every_epochs == 0 or finishing
        ):
            eval_metrics = self._evaluate() if ctx.is_main else None
            metrics.update(ctx.broadcast(eval_metrics))
            evaluated = True
        metrics = {"epoch": state.epoch + 1, "step": state.step, **metrics}
        if logger is not None:
            logger.log(state.step, state.epoch + 1, "epoch", metrics)
        state.history.append(metrics)

        if evaluated:
            if cfg.monitor not in metrics:
                raise KeyError(
                    f"monitored metric {cfg.monitor!r} (config.monitor) is not among the epoch "
                    f"metrics {sorted(metrics)}"
                )
            value = float(metrics[cfg.monitor])
            if _improved(value, state.best_metric, cfg.monitor_mode):
                state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
                improved = True
            else:
                state.bad_evals += 1
                improved = False
            patience = cfg.early_stopping_patience
            if patience is not None and state.bad_evals >= patience:
                state.stopped_early = True
                if ctx.is_main:
                    log.info(
                        "early stopping after epoch %d: %s did not improve for %d evaluation(s)",
                        state.epoch + 1,
                        cfg.monitor,
                        state.bad_evals,
                    )
        else:
            improved = False

        if epoch_done:
            state.epoch += 1
            state.batch_in_epoch = 0
            state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
        if improved:
            self._save(self.best_path, state)
        self._save(self.last_path, state)

    def _evaluate(self) -> dict[str, float]:
        assert self.eval_fn is not None
        model = unwrap_model(self.model)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                result = self.eval_fn(model)
        finally:
            model.train(was_training)
        if not isinstance(result, Mapping):
            raise TypeError(f"eval_fn must return a dict of metrics, got {type(result).__name__}")
        return {str(k): float(v) for k, v in result.items()}

    def _finished(self, state: _State) -> bool:
        cfg = self.config
        return (
            state.stopped_early
            or state.epoch >= cfg.epochs
            or (cfg.max_steps is not None and state.step >= cfg.max_steps)
        )

    # ------------------------------------------------------------ checkpoints
    def _save(self, path: Path, state: _State) -> None:
        ctx = self.ctx
        assert self.optimizer is not None
        # The partial epoch loss differs per rank; store the cross-rank mean on every rank so
        # the final epoch mean is the same with or without a resume in between.
        if ctx.enabled:
            state.epoch_loss_sum = ctx.mean(state.epoch_loss_sum)
            state.window_loss_sum = ctx.mean(state.window_loss_sum)
            rng_per_rank = _gather_objects(ctx, get_rng_state())
        else:
            rng_per_rank = [get_rng_state()]
        if ctx.is_main:
            payload = {
                "model": unwrap_model(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "step": state.step,
                "epoch": state.epoch,
                "batch_in_epoch": state.batch_in_epoch,
                "best_metric": state.best_metric,
                "monitor": self.config.monitor,
                "state": dataclasses.asdict(state),
                "rng_per_rank": rng_per_rank,
                "sampler": {
                    "seed": self.config.seed,
                    "epoch": state.epoch,
                    "start": state.batch_in_epoch * self.config.batch_size,
                    "shuffle": self.sampler_shuffle,
                },
                "world_size": ctx.world_size,
                "config": config_to_dict(self.config),
                "extra": self.checkpoint_extra,
                "torch_version": str(torch.__version__),
            }
            save_checkpoint(path, payload)
        ctx.barrier()


# ------------------------------------------------------------------- helpers
def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Any:
    """Per-step LR schedule (cosine over the whole run, or step decay), after linear warm-up."""
    from torch.optim import lr_scheduler

    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if cfg.scheduler == "none":
        main = None
    elif cfg.scheduler == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps - warmup, 1))
    elif cfg.scheduler == "step":
        main = lr_scheduler.StepLR(
            optimizer, step_size=cfg.scheduler_step_size, gamma=cfg.scheduler_gamma
        )
    else:
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}")
    if warmup == 0:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
    if main is None:
        return ramp
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors inside dicts / lists / tuples / dataclasses to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {
            f.name: move_to_device(getattr(batch, f.name), device)
            for f in dataclasses.fields(batch)
            if f.init
        }
        return dataclasses.replace(batch, **changes)
    return batch


def _num_batches(items: int, batch_size: int, drop_last: bool) -> int:
    return items // batch_size if drop_last else -(-items // batch_size)


def _improved(value: float, best: float | None, mode: str) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def _is_scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, int | float) and not isinstance(value, bool)


def _gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


# Settings a run may change when it resumes: how long it trains, where and how it reports,
# where its data and caches live. Everything else (lr, model, data split, vocabulary, ...)
# must match, or the resumed run is a mix of two experiments.
RESUME_FREE_KEYS = (
    "epochs",
    "max_steps",
    "early_stopping_patience",
    "progress",
    "log_every",
    "tensorboard",
    "checkpoint_every_steps",
    "out_dir",
    "device",
    "num_workers",
    "eval_batch_size",
    "cache_dir",
    "cache_batch_size",
    "root",
    "sbd_root",
    "data_root",
    "prepared_dir",
    "food101_root",
)


def resume_diff(
    ckpt: Mapping[str, Any], config: TrainConfig, extra: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """Settings that differ between checkpoint ``ckpt`` and a run about to resume from it.

    The engine settings are compared as ``train.*``; a system's full config stored in
    ``checkpoint_extra`` under ``config`` / ``*_config`` is compared key by key (``model.name``),
    its other extras by name (``vocab``). Keys one side lacks (an older checkpoint) are skipped.
    """

    def flat(train: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in more.items():
            is_config = key == "config" or key.endswith("_config")
            if is_config and isinstance(value, Mapping) and "train" in value:
                out.update(value)  # the system's full config: model.*, data.*, train.*
            else:
                out[key] = value
        out["train"] = dict(train)
        return out

    stored = flat(ckpt.get("config") or {}, ckpt.get("extra") or {})
    current = flat(config_to_dict(config), dict(extra))
    return config_diff(stored, current, ignore=RESUME_FREE_KEYS, skip_missing=True)
