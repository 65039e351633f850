"""One RSIS experiment: config -> data -> (cached) encoder features -> trained decoder -> metrics.

CPU path (``encoder.finetune: false``, the default): the frozen backbone's five maps of every
view of every image are computed once with the engine's feature cache (``augment.views``
augmented copies per training image, one plain copy of val/test images); the decoder then
trains on the cached maps. Full path (``encoder.finetune: true``): the backbone is part of the
model and trained with its own learning rate (``encoder.lr``, thesis 1e-6 vs 1e-3 decoder),
images are augmented on the fly.

Training follows the thesis: Hungarian-matched losses, terms switched on in stages
(``loss.*_from_epoch``), and curriculum learning (start with ``curriculum.start`` objects, add
``curriculum.increment`` when the validation loss has not improved for ``curriculum.patience``
evaluations, or every ``curriculum.force_every`` epochs on a short CPU budget).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from beyondvis.data.instance_seg import (
    InstanceDataError,
    InstanceRecord,
    InstanceSplits,
    read_instances,
)
from beyondvis.engine import (
    FeatureCache,
    TrainConfig,
    Trainer,
    TrainResult,
    cache_features,
    config_to_dict,
    load_checkpoint,
    load_config,
    seed_everything,
    unwrap_model,
)
from beyondvis.engine.config import PACKAGED_CONFIG_DIR
from beyondvis.io import ImageLoadError
from beyondvis.segmentation.data import (
    AugmentConfig,
    RSISBatch,
    ViewDataset,
    collate_views,
    normalize,
    resize_pair,
)
from beyondvis.segmentation.losses import LossWeights, rsis_loss, training_steps
from beyondvis.segmentation.metrics import SegmentationMetrics
from beyondvis.segmentation.model import RSIS, RSISModelConfig
from beyondvis.utils import atomic_write, shared_data_root
from beyondvis.utils.progress import show_progress

log = logging.getLogger(__name__)

DATASETS = ("cvppp", "pennfudan", "voc_sbd", "cityscapes")
DATA_FOLDERS = {"cvppp": "cvppp_a1", "pennfudan": "PennFudanPed", "voc_sbd": "VOCdevkit",
                "cityscapes": "cityscapes"}  # fmt: skip
# The packaged configs (beyondvis/configs/segmentation, names such as ``cvppp``).
CONFIG_DIR = PACKAGED_CONFIG_DIR / "segmentation"


@dataclasses.dataclass
class DataConfig:
    dataset: str = "cvppp"  # cvppp | pennfudan | voc_sbd | cityscapes
    root: str | None = None  # None: $BEYONDVIS_DATA/<dataset folder>
    sbd_root: str | None = None  # voc_sbd: SBD benchmark_RELEASE (training images)
    image_size: int = 160  # square input and mask size (thesis: 500 CVPPP, 256 VOC); /32
    test_fraction: float = 0.25  # cvppp / pennfudan: deterministic split of the labelled images
    val_fraction: float = 0.1
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.image_size % 32 or self.image_size < 32:
            raise ValueError(f"data.image_size must be a multiple of 32, got {self.image_size}")


@dataclasses.dataclass
class EncoderConfig:
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    weights: str | None = None
    finetune: bool = False  # False: decoder on cached frozen maps (CPU); True: end to end
    lr: float = 1e-6  # finetune: encoder learning rate (decoder: train.lr)
    cache_dir: str = "runs/rsis/cache"
    cache_dtype: str = "float16"
    cache_batch_size: int = 16


@dataclasses.dataclass
class LossConfig(LossWeights):
    """The loss weights (``LossWeights``: mask, box, cls, stop) and the epoch each term starts."""

    box_from_epoch: int = 0
    cls_from_epoch: int = 0  # thesis: after 20 epochs of L_m + alpha L_b
    stop_from_epoch: int = 1  # thesis: once L_m + L_b + L_c converged

    def weights(self, epoch: int) -> LossWeights:
        return LossWeights(
            mask=self.mask,
            box=self.box if epoch >= self.box_from_epoch else 0.0,
            cls=self.cls if epoch >= self.cls_from_epoch else 0.0,
            stop=self.stop if epoch >= self.stop_from_epoch else 0.0,
        )


@dataclasses.dataclass
class CurriculumConfig:
    enabled: bool = True
    start: int = 2  # objects per image at first (thesis: 2)
    increment: int = 1  # objects added at each plateau (thesis: 1)
    patience: int = 1  # evaluations without val-loss improvement that make a plateau
    min_delta: float = 1e-3
    force_every: int | None = None  # also add objects every N epochs (short CPU budgets)


@dataclasses.dataclass
class InferenceConfig:
    stop_threshold: float = 0.3  # thesis: 0.3 CVPPP, 0.5 VOC / Cityscapes
    mask_threshold: float = 0.5
    max_steps: int = 30
    eval_batch_size: int = 8


# what train.monitor may name: train_loss and the keys of train()'s eval_fn
MONITOR_KEYS = ("train_loss", "val_loss", "val_sbd", "val_abs_dic", "val_ap50", "curriculum_k")


@dataclasses.dataclass
class RSISConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    model: RSISModelConfig = dataclasses.field(default_factory=RSISModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    curriculum: CurriculumConfig = dataclasses.field(default_factory=CurriculumConfig)
    inference: InferenceConfig = dataclasses.field(default_factory=InferenceConfig)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            out_dir="runs/rsis/default",
            batch_size=8,
            epochs=20,
            monitor="val_sbd",
            monitor_mode="max",
            progress=True,
            grad_clip=5.0,
        )  # fmt: skip
    )

    def __post_init__(self) -> None:
        # checked on load, not at the first evaluation an epoch into the run
        from beyondvis.validation import check_choice

        check_choice("train.monitor", self.train.monitor, MONITOR_KEYS)


def resolve_config(path: str | Path) -> Path:
    """A config path as given, else a packaged one (``cvppp``, ``cvppp.yaml`` or
    ``segmentation/cvppp``)."""
    from beyondvis.engine.config import resolve_config as resolve

    return resolve(path, system="segmentation")


def load_rsis_config(source: Any, overrides: list[str] | None = None) -> RSISConfig:
    if isinstance(source, str | Path):
        source = resolve_config(source)
    return load_config(source, RSISConfig, overrides)


def list_rsis_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []


def read_splits(cfg: DataConfig) -> InstanceSplits:
    root = Path(cfg.root) if cfg.root else shared_data_root(DATA_FOLDERS[cfg.dataset])
    if root is None:
        raise InstanceDataError(
            f"no data.root for {cfg.dataset} and $BEYONDVIS_DATA/{DATA_FOLDERS[cfg.dataset]} "
            "does not exist (set data.root=PATH or BEYONDVIS_DATA)"
        )
    if cfg.dataset == "cvppp":
        from beyondvis.data.cvppp import read_cvppp

        return read_cvppp(root, cfg.test_fraction, cfg.val_fraction, cfg.split_seed)
    if cfg.dataset == "pennfudan":
        from beyondvis.data.pennfudan import read_pennfudan

        return read_pennfudan(root, cfg.test_fraction, cfg.val_fraction, cfg.split_seed)
    if cfg.dataset == "voc_sbd":
        from beyondvis.data.instance_seg import read_voc_sbd

        return read_voc_sbd(root, cfg.sbd_root, cfg.val_fraction, cfg.split_seed)
    from beyondvis.data.instance_seg import read_cityscapes_instances

    return read_cityscapes_instances(root)


# ---------------------------------------------------------------------- feature cache
class FlatMaps(nn.Module):
    """Backbone -> its five maps flattened into one row (the engine caches one tensor per item)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.flatten(1) for f in self.backbone.forward_features(x)], dim=1)


def map_shapes(backbone: nn.Module, size: int) -> list[tuple[int, int, int]]:
    return [(i.channels, size // i.stride, size // i.stride) for i in backbone.feature_info]


def split_maps(row: torch.Tensor, shapes: list[tuple[int, int, int]]) -> list[torch.Tensor]:
    out, start = [], 0
    for c, h, w in shapes:
        n = c * h * w
        out.append(row[start : start + n].view(c, h, w).float())
        start += n
    return out


class CachedViews(Dataset):
    """Cached feature rows + their label maps: item -> (five maps, labels (S, S), classes)."""

    def __init__(
        self, cache: FeatureCache, views: ViewDataset, shapes: list[tuple[int, int, int]]
    ) -> None:
        self.cache = cache
        self.shapes = shapes
        self.targets: list[tuple[torch.Tensor, torch.Tensor]] = []
        annotations = ViewDataset(
            views.records, views.size, views.augment, views.seed, images=False
        )
        for row in cache.rows:
            _, lab, cls = annotations[int(row)]
            small = lab.numel() == 0 or int(lab.max()) < 256
            self.targets.append((lab.to(torch.uint8 if small else torch.int32), cls))

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        lab, cls = self.targets[i]
        return split_maps(self.cache[i], self.shapes), lab.long(), cls


def cache_views(
    cfg: RSISConfig, records: list[InstanceRecord], split: str, backbone: nn.Module, augment: bool
) -> CachedViews:
    views = ViewDataset(
        records,
        cfg.data.image_size,
        cfg.augment if augment else None,
        seed=cfg.train.seed,
        mean=backbone.preprocess.mean,
        std=backbone.preprocess.std,
    )
    tag = f"{cfg.data.dataset}-{cfg.encoder.backbone}-{cfg.data.image_size}px"
    # One folder per view setting, so changing the augmentation never clashes with a cache.
    key = hashlib.sha1(views.transform.encode()).hexdigest()[:8]
    folder = Path(cfg.encoder.cache_dir) / tag / f"{split}-{key}"
    cache = cache_features(
        FlatMaps(backbone),
        views,
        folder,
        name=f"rsis-{cfg.encoder.backbone}-maps",
        batch_size=cfg.encoder.cache_batch_size,
        dtype=cfg.encoder.cache_dtype,
        device=cfg.train.device,
        item_ids=views.item_ids,
        input_fn=lambda item: item[0],
        fingerprint_extra={"size": cfg.data.image_size, "views": views.transform},
        progress=cfg.train.progress,
    )
    for item, reason in _skipped(cache):
        log.warning("skipped %s: %s", item, reason)
    return CachedViews(cache, views, map_shapes(backbone, cfg.data.image_size))


def _skipped(cache: FeatureCache) -> list[tuple[str, str]]:
    out = []
    for entry in getattr(cache, "skipped", []) or []:
        if isinstance(entry, dict):
            out.append((str(entry.get("id", entry.get("item", "?"))), str(entry.get("reason", ""))))
    return out


# ---------------------------------------------------------------------- model + training
def build_backbone(cfg: EncoderConfig) -> nn.Module:
    from beyondvis.backbones import create_backbone

    return create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights)


def build_model(cfg: RSISConfig, num_classes: int, backbone: nn.Module | None) -> RSIS:
    channels = [i.channels for i in backbone.feature_info] if backbone is not None else None
    mcfg = dataclasses.replace(
        cfg.model, num_classes=num_classes, **({"feature_channels": channels} if channels else {})
    )
    encoder = backbone if cfg.encoder.finetune else None
    model = RSIS(mcfg, encoder)
    if encoder is not None:
        for p in encoder.parameters():
            p.requires_grad_(True)
    return model


@dataclasses.dataclass
class Prepared:
    config: RSISConfig
    splits: InstanceSplits
    model: RSIS
    backbone: nn.Module
    train_data: Dataset
    val_data: Dataset | None


def prepare(cfg: RSISConfig, splits: InstanceSplits | None = None) -> Prepared:
    """Read the splits, build the backbone and model, cache (or wrap) the training data."""
    splits = splits or read_splits(cfg.data)
    if not splits.train:
        raise InstanceDataError(f"{splits.name}: the training split is empty")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun: one process group for the feature caches and the Trainer (each cache
        # call would otherwise create and destroy its own, and re-creating one can hang).
        from beyondvis.engine import init_distributed

        init_distributed(cfg.train.device)
    backbone = build_backbone(cfg.encoder)
    # seeded here, not only when the Trainer's fit() starts: the same command twice must build
    # the same decoder whatever the process did before (e.g. cached features or reused them)
    seed_everything(cfg.train.seed)
    model = build_model(cfg, len(splits.classes), backbone)
    if cfg.curriculum.enabled:
        model.schedule[0] = float(cfg.curriculum.start)
    if cfg.encoder.finetune:
        mean, std = backbone.preprocess.mean, backbone.preprocess.std
        train_data: Dataset = _SafeViews(
            ViewDataset(
                splits.train, cfg.data.image_size, cfg.augment, cfg.train.seed, mean=mean, std=std
            ),
            online=True,
        )
        val_data = (
            _SafeViews(ViewDataset(splits.val, cfg.data.image_size, None, mean=mean, std=std))
            if splits.val
            else None
        )
    else:
        train_data = cache_views(cfg, splits.train, "train", backbone, augment=True)
        val_data = (
            cache_views(cfg, splits.val, "val", backbone, augment=False) if splits.val else None
        )
    return Prepared(cfg, splits, model, backbone, train_data, val_data)


class _SafeViews(Dataset):
    """Online views (fine-tuning path); ``online`` draws a fresh random view per fetch."""

    def __init__(self, views: ViewDataset, online: bool = False) -> None:
        self.views = views
        self.online = online

    def __len__(self) -> int:
        return len(self.views.records)

    def __getitem__(self, i: int) -> Any:
        if self.online and self.views.views > 1:
            # The Trainer seeds each fetch from (seed, epoch, index): a different view per epoch.
            v = int(np.random.randint(1, self.views.views))
            return self.views[i * self.views.views + v]
        return self.views[i * self.views.views]


def _step_fn(cfg: RSISConfig):
    def step(model: nn.Module, batch: RSISBatch) -> dict[str, Any]:
        core = unwrap_model(model)
        k = int(core.schedule[0].item())
        epoch = int(core.schedule[1].item())
        steps = training_steps(batch.counts, k if cfg.curriculum.enabled else None)
        out = model(batch.inputs, steps=int(steps.max()))
        losses = rsis_loss(
            out,
            batch.masks,
            batch.counts,
            batch.boxes,
            batch.labels,
            cfg.loss.weights(epoch),
            steps,
        )
        return {
            "loss": losses["loss"],
            "l_mask": losses["mask"],
            "l_box": losses["box"],
            "l_cls": losses["cls"],
            "l_stop": losses["stop"],
        }

    return step


def _optimizer_fn(cfg: RSISConfig):
    def build(model: nn.Module, train_cfg: TrainConfig) -> torch.optim.Optimizer:
        enc = [
            p for n, p in model.named_parameters() if n.startswith("encoder.") and p.requires_grad
        ]
        dec = [
            p
            for n, p in model.named_parameters()
            if not n.startswith("encoder.") and p.requires_grad
        ]
        groups = [{"params": dec, "lr": train_cfg.lr}]
        if enc:
            groups.append({"params": enc, "lr": cfg.encoder.lr})
        if train_cfg.optimizer == "sgd":
            return torch.optim.SGD(
                groups, momentum=train_cfg.momentum, weight_decay=train_cfg.weight_decay
            )
        opt = torch.optim.AdamW if train_cfg.optimizer == "adamw" else torch.optim.Adam
        return opt(groups, weight_decay=train_cfg.weight_decay)

    return build


def validation_loss(cfg: RSISConfig, model: RSIS, data: Dataset, device: torch.device) -> float:
    """Mean training objective on ``data`` with the current curriculum and loss stage."""
    step = _step_fn(cfg)
    total, n = 0.0, 0
    loader = DataLoader(data, batch_size=cfg.inference.eval_batch_size, collate_fn=collate_views)
    from beyondvis.engine import move_to_device

    for batch in loader:
        batch = move_to_device(batch, device)
        total += float(step(model, batch)["loss"]) * len(batch.counts)
        n += len(batch.counts)
    return total / max(n, 1)


def evaluate_dataset(
    cfg: RSISConfig, model: RSIS, data: Dataset, device: torch.device, class_names: list[str]
) -> SegmentationMetrics:
    """Metrics at the model's input resolution on a (cached or image) dataset."""
    metrics = SegmentationMetrics(len(class_names), class_names)
    loader = DataLoader(data, batch_size=cfg.inference.eval_batch_size, collate_fn=collate_views)
    from beyondvis.engine import move_to_device

    for batch in loader:
        batch = move_to_device(batch, device)
        preds = model.predict(
            batch.inputs,
            max_steps=cfg.inference.max_steps,
            stop_threshold=cfg.inference.stop_threshold,
            mask_threshold=cfg.inference.mask_threshold,
        )
        for b, pred in enumerate(preds):
            n = int(batch.counts[b])
            gt = batch.masks[b, :n].cpu().numpy() > 0.5
            metrics.add(
                pred["masks"].numpy(),
                (pred["stop_scores"] * pred["class_scores"]).numpy(),
                pred["labels"].numpy(),
                gt,
                batch.labels[b, :n].cpu().numpy(),
            )
    return metrics


def stop_threshold_sweep(
    cfg: RSISConfig,
    model: RSIS,
    data: Dataset,
    device: torch.device,
    thresholds: list[float],
) -> list[dict[str, float]]:
    """SBD and DiC on ``data`` for every stop threshold, from one decoding pass per batch.

    Each image is decoded for ``inference.max_steps`` steps once; a threshold keeps the steps
    before the first stop score below it (the rule of :meth:`RSIS.predict`).
    """
    from beyondvis.engine import move_to_device
    from beyondvis.segmentation.metrics import symmetric_best_dice

    per_image: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    loader = DataLoader(data, batch_size=cfg.inference.eval_batch_size, collate_fn=collate_views)
    model.eval()
    with torch.no_grad():
        for batch in loader:
            batch = move_to_device(batch, device)
            out = model(batch.inputs, steps=cfg.inference.max_steps)
            probs = torch.sigmoid(out["mask_logits"])
            masks = (probs >= cfg.inference.mask_threshold).cpu().numpy()
            stops = torch.sigmoid(out["stop_logits"]).cpu().numpy()
            for b in range(len(batch.counts)):
                n = int(batch.counts[b])
                per_image.append((masks[b], stops[b], batch.masks[b, :n].cpu().numpy() > 0.5))
    rows = []
    for thr in thresholds:
        sbd, dic = [], []
        for masks, stops, gt in per_image:
            below = np.nonzero(stops < thr)[0]
            k = int(below[0]) if len(below) else len(stops)
            sbd.append(symmetric_best_dice(masks[:k], gt))
            dic.append(k - len(gt))
        rows.append(
            {
                "stop_threshold": float(thr),
                "sbd": float(np.mean(sbd)),
                "dic": float(np.mean(dic)),
                "abs_dic": float(np.mean(np.abs(dic))),
            }
        )
    return rows


def checkpoint_extra(prepared: Prepared) -> dict[str, Any]:
    return {
        "rsis_config": config_to_dict(prepared.config),
        "model_config": config_to_dict(prepared.model.config),
        "classes": list(prepared.splits.classes),
        "dataset": prepared.splits.name,
    }


def _advance_schedule(cfg: RSISConfig, model: RSIS, val_loss: float) -> None:
    sched = model.schedule
    sched[1] += 1  # finished epochs
    if not cfg.curriculum.enabled:
        return
    cur = cfg.curriculum
    if val_loss < float(sched[3]) - cur.min_delta:
        sched[3] = val_loss
        sched[2] = 0
    else:
        sched[2] += 1
    forced = cur.force_every is not None and int(sched[1]) % cur.force_every == 0
    if sched[2] >= cur.patience or forced:
        sched[0] += cur.increment
        sched[2] = 0
        sched[3] = float("inf")  # a new curriculum stage has a new loss scale
        log.info("curriculum: now %d objects per image", int(sched[0]))


def train(cfg: RSISConfig, prepared: Prepared | None = None, resume: Any = "auto") -> TrainResult:
    prepared = prepared or prepare(cfg)
    model = prepared.model

    def eval_fn(m: nn.Module) -> dict[str, float]:
        core = unwrap_model(m)
        device = next(core.parameters()).device
        if prepared.val_data is None:
            _advance_schedule(cfg, core, float("nan"))
            return {"curriculum_k": float(core.schedule[0])}
        vloss = validation_loss(cfg, core, prepared.val_data, device)
        report = evaluate_dataset(
            cfg, core, prepared.val_data, device, prepared.splits.classes
        ).compute()
        _advance_schedule(cfg, core, vloss)
        out = {
            "val_loss": vloss,
            "val_sbd": report["sbd"],
            "val_abs_dic": report["abs_dic"],
            "val_ap50": report["ap50"],
            "curriculum_k": float(core.schedule[0]),
        }
        return {k: (float(v) if v == v else -1.0) for k, v in out.items()}  # NaN -> -1 for best.pt

    trainer = Trainer(
        model,
        cfg.train,
        prepared.train_data,
        _step_fn(cfg),
        eval_fn,
        collate_fn=collate_views,
        checkpoint_extra=checkpoint_extra(prepared),
        optimizer_fn=_optimizer_fn(cfg),
        find_unused_parameters=True,  # the class head gets no gradient before cls_from_epoch
    )
    return trainer.fit(resume=resume)


# ---------------------------------------------------------------------- loading + evaluation
def model_from_checkpoint(checkpoint: str | Path) -> tuple[RSIS, RSISConfig, dict[str, Any]]:
    state = load_checkpoint(checkpoint)
    extra = state.get("extra") or {}
    if "rsis_config" not in extra:
        raise ValueError(f"{checkpoint} is not an RSIS training checkpoint (no rsis_config)")
    cfg = load_config(extra["rsis_config"], RSISConfig)
    mcfg = load_config(extra["model_config"], RSISModelConfig)
    model = RSIS(mcfg)
    weights = {k: v for k, v in state["model"].items() if not k.startswith("encoder.")}
    model.load_state_dict(weights, strict=True)
    if cfg.encoder.finetune:  # the fine-tuned encoder lives in the checkpoint
        backbone = build_backbone(dataclasses.replace(cfg.encoder, pretrained=False))
        enc = {
            k[len("encoder.") :]: v for k, v in state["model"].items() if k.startswith("encoder.")
        }
        backbone.load_state_dict(enc)
        model.encoder = backbone
    return model.eval(), cfg, extra


def evaluate_records(
    model: RSIS,
    records: list[InstanceRecord],
    classes: list[str],
    size: int,
    inference: InferenceConfig,
    device: torch.device | str = "cpu",
    full_resolution: bool = True,
    progress: bool = True,
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Predict every record and score it; masks are upsampled to the original image size.

    Returns ``(report, skipped)`` where ``skipped`` lists unreadable records with reasons.
    """
    from tqdm.auto import tqdm

    if model.encoder is None:
        raise ValueError("evaluate_records needs a model with an encoder (attach the backbone)")
    device = torch.device(device)
    model.to(device).eval()
    pre = getattr(model.encoder, "preprocess", None)
    mean = pre.mean if pre is not None else (0.485, 0.456, 0.406)
    std = pre.std if pre is not None else (0.229, 0.224, 0.225)
    metrics = SegmentationMetrics(len(classes), classes)
    skipped = []
    for record in tqdm(records, desc="rsis eval", disable=not show_progress(progress), leave=False):
        try:
            sample = read_instances(record)
        except (ImageLoadError, InstanceDataError, OSError) as exc:
            skipped.append((record.item_id, str(exc)))
            continue
        img, lab = resize_pair(sample.image, sample.labels_map, size)
        x = normalize(img, mean, std)[None].to(device)
        out_hw = (sample.image.height, sample.image.width) if full_resolution else (size, size)
        pred = predict_full(model, x, inference, out_hw)
        if full_resolution:
            gt = sample.masks()
            gt_cls = sample.classes
        else:
            ids = np.arange(1, sample.num_objects + 1)
            gt = lab.numpy()[None] == ids[:, None, None]
            gt, keep = gt, gt.reshape(len(ids), -1).any(1)
            gt, gt_cls = gt[keep], sample.classes[keep]
        metrics.add(
            pred["masks"].numpy(),
            (pred["stop_scores"] * pred["class_scores"]).numpy(),
            pred["labels"].numpy(),
            gt,
            gt_cls,
        )
    report = metrics.compute()
    report["skipped"] = len(skipped)
    return report, skipped


def predict_full(
    model: RSIS, x: torch.Tensor, inference: InferenceConfig, out_hw: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Predict one normalised (1, 3, S, S) image; masks resized to ``out_hw`` before thresholding."""
    pred = model.predict(
        x,
        max_steps=inference.max_steps,
        stop_threshold=inference.stop_threshold,
        mask_threshold=inference.mask_threshold,
    )[0]
    probs = pred["probs"]
    if probs.shape[-2:] != out_hw and len(probs):
        probs = F.interpolate(
            probs[None].float(), size=out_hw, mode="bilinear", align_corners=False
        )[0]
    elif not len(probs):
        probs = torch.zeros(0, *out_hw)
    pred["probs"] = probs
    pred["masks"] = probs >= inference.mask_threshold
    return pred


def test_report(
    checkpoint: str | Path, split: str = "test", device: str = "cpu", progress: bool = True,
    full_resolution: bool = True, splits: InstanceSplits | None = None,
) -> dict[str, Any]:  # fmt: skip
    model, cfg, extra = model_from_checkpoint(checkpoint)
    splits = splits or read_splits(cfg.data)
    if model.encoder is None:
        model.encoder = build_backbone(cfg.encoder)
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    report, skipped = evaluate_records(
        model, splits.split(split), splits.classes, cfg.data.image_size, cfg.inference,
        device, full_resolution, progress,
    )  # fmt: skip
    return {
        "format": "beyondvis.rsis.eval/1",
        "checkpoint": str(checkpoint),
        "dataset": splits.name,
        "split": split,
        "image_size": cfg.data.image_size,
        "resolution": "original" if full_resolution else f"{cfg.data.image_size}px",
        "stop_threshold": cfg.inference.stop_threshold,
        **report,
        "skipped_items": [{"item": i, "reason": r} for i, r in skipped],
    }


# ---------------------------------------------------------------------- shipping
BUNDLE_FORMAT = 1
BUNDLE_KIND = "beyondvis.rsis.bundle"


def _digest(state: dict[str, torch.Tensor]) -> str:
    import hashlib

    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def export_bundle(
    checkpoint: str | Path,
    out: str | Path,
    extra_info: dict[str, Any] | None = None,
    stop_threshold: float | None = None,
) -> dict[str, Any]:
    """Decoder weights (float16), model config, classes and inference settings in one file.

    The backbone is not included: it is rebuilt from its (packaged) ImageNet weights, which
    is what the frozen-encoder path trained against. Fine-tuned encoders are included.
    """
    model, cfg, extra = model_from_checkpoint(checkpoint)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    state = {k: v for k, v in state.items() if k != "schedule"}
    bundle = {
        "format_version": BUNDLE_FORMAT,
        "kind": BUNDLE_KIND,
        "model_config": config_to_dict(model.config),
        "backbone": cfg.encoder.backbone,
        "finetuned_encoder": bool(cfg.encoder.finetune),
        "classes": list(extra.get("classes", [])),
        "dataset": extra.get("dataset", cfg.data.dataset),
        "image_size": cfg.data.image_size,
        "inference": config_to_dict(
            cfg.inference
            if stop_threshold is None
            else dataclasses.replace(cfg.inference, stop_threshold=stop_threshold)
        ),
        "state": state,
        "sha256": _digest(state),
        "info": dict(extra_info or {}),
    }
    with atomic_write(out, "wb") as handle:
        torch.save(bundle, handle)
    return {k: v for k, v in bundle.items() if k != "state"}


def load_bundle(path: str | Path) -> tuple[RSIS, dict[str, Any]]:
    """Load an exported bundle (``torch.load(weights_only=True)``); checks version and checksum."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RSIS model not found: {path}")
    bundle = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(bundle, dict) or bundle.get("kind") != BUNDLE_KIND:
        raise ValueError(f"{path} is not an RSIS model bundle")
    if int(bundle.get("format_version", 0)) > BUNDLE_FORMAT:
        raise ValueError(
            f"{path} has format version {bundle['format_version']}; this beyondvis reads {BUNDLE_FORMAT}"
        )
    if _digest(bundle["state"]) != bundle.get("sha256"):
        raise ValueError(f"{path} is corrupt (checksum mismatch)")
    mcfg = load_config(bundle["model_config"], RSISModelConfig)
    model = RSIS(mcfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in bundle["state"].items()}
    enc = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    dec = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    dec["schedule"] = model.schedule
    model.load_state_dict(dec, strict=True)
    backbone = build_backbone(EncoderConfig(backbone=bundle["backbone"], pretrained=not enc))
    if enc:
        backbone.load_state_dict(enc)
    for p in backbone.parameters():
        p.requires_grad_(False)
    model.encoder = backbone
    return model.eval(), {k: v for k, v in bundle.items() if k != "state"}


def steps_per_epoch(prepared: Prepared) -> int:
    return math.ceil(len(prepared.train_data) / prepared.config.train.batch_size)
