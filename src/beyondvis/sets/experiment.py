"""One image-to-set experiment: config -> data -> (cached) features -> trained set predictor.

Fast path (``encoder.finetune: false``, the default): the frozen backbone's last feature map
(EfficientNet-Lite0: 1280 x 7 x 7 at 224 px) is computed once per split with the engine's
feature cache; every set predictor then trains on the cached maps (attention models need the
spatial map). No image augmentation is possible on cached maps. Full path
(``encoder.finetune: true``): the backbone is part of the model, images are augmented as in the
thesis, and the backbone's learning rate is ``lr * encoder.lr_scale``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from beyondvis.data.sets_readers import SetSplits, load_set_dataset
from beyondvis.engine import (
    CachedFeatureDataset,
    TrainConfig,
    Trainer,
    TrainResult,
    cache_features,
    config_to_dict,
    load_checkpoint,
    load_config,
)
from beyondvis.io import ImageListDataset
from beyondvis.sets.data import (
    ImageSetDataset,
    LabelEncoder,
    SetItems,
    cardinality_histogram,
    collate_sets,
    train_transform,
)
from beyondvis.sets.metrics import SetMetrics
from beyondvis.sets.models import SET_MODELS, FeedForwardSet, PredictorConfig, SetPredictor

log = logging.getLogger(__name__)

METRIC_KEYS = ("o_f1", "c_f1", "i_f1", "iou", "card_err")


@dataclasses.dataclass
class DataConfig:
    dataset: str = "miml"  # voc | coco | nuswide | ade20k | miml | jsonl
    root: str | None = None  # None: $BEYONDVIS_DATA/<dataset folder>
    train_file: str | None = None  # jsonl only
    val_file: str | None = None
    test_file: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    max_set_size: int | None = None  # None: the largest training set
    image_size: int = 224
    eval_batch_size: int = 128


@dataclasses.dataclass
class EncoderConfig:
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    weights: str | None = None
    finetune: bool = False  # False: fast path on cached frozen maps; True: fine-tune end to end
    lr_scale: float = 0.1  # finetune: backbone learning rate = lr * lr_scale
    cache_dir: str = "runs/sets/cache"
    cache_dtype: str = "float16"
    cache_batch_size: int = 32


@dataclasses.dataclass
class SetsConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    model: PredictorConfig = dataclasses.field(default_factory=PredictorConfig)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            out_dir="runs/sets/default", monitor="val_o_f1", monitor_mode="max", progress=False
        )
    )


def load_sets_config(source: Any, overrides: list[str] | None = None) -> SetsConfig:
    cfg = load_config(source, SetsConfig, overrides)
    if cfg.model.name not in SET_MODELS:
        raise ValueError(f"unknown set model {cfg.model.name!r}; known: {SET_MODELS.names()}")
    return cfg


class ImageToSet(nn.Module):
    """Optional image encoder (fine-tuning path) + set predictor."""

    def __init__(self, predictor: SetPredictor, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs if self.encoder is None else self.encoder.feature_map(inputs)

    def forward(self, inputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        return self.predictor(self.features(inputs), batch)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predictor.predict(self.features(inputs))


@dataclasses.dataclass
class Prepared:
    """Everything built from a config: splits, label encoder, datasets, model."""

    config: SetsConfig
    splits: SetSplits
    encoder: LabelEncoder
    datasets: dict[str, Any]
    model: ImageToSet
    feature_dim: int


def read_splits(cfg: DataConfig) -> SetSplits:
    kwargs: dict[str, Any] = {}
    if cfg.dataset == "jsonl":
        if not cfg.train_file or not cfg.test_file:
            raise ValueError("dataset jsonl needs data.train_file and data.test_file")
        kwargs = {"train": cfg.train_file, "test": cfg.test_file, "val": cfg.val_file}
    return load_set_dataset(
        cfg.dataset, cfg.root, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, **kwargs
    )


def _backbone(cfg: EncoderConfig):
    from beyondvis.backbones import create_backbone

    return create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights)


def cache_split_features(cfg: SetsConfig, splits: SetSplits, backbone=None) -> dict[str, Any]:
    """Frozen feature maps of every split, cached once under ``encoder.cache_dir``."""
    backbone = backbone or _backbone(cfg.encoder)
    transform = backbone.transform(size=cfg.data.image_size)
    tag = f"{splits.name or cfg.data.dataset}-{cfg.encoder.backbone}-{cfg.data.image_size}px"
    caches = {}
    for split in ("train", "val", "test"):
        paths = [r.image for r in splits.split(split)]
        if not paths:
            caches[split] = None
            continue
        caches[split] = cache_features(
            backbone.feature_map,
            ImageListDataset(paths, transform=transform),
            Path(cfg.encoder.cache_dir) / tag / split,
            name=f"{backbone.name}.feature_map",
            batch_size=cfg.encoder.cache_batch_size,
            dtype=cfg.encoder.cache_dtype,
            item_ids=paths,
            fingerprint_extra={"split": split, "size": cfg.data.image_size},
            progress=False,
        )
        if caches[split].skipped:
            log.warning("%s: %d unreadable image(s) skipped", split, len(caches[split].skipped))
    return caches


def prepare(cfg: SetsConfig, splits: SetSplits | None = None) -> Prepared:
    splits = splits or read_splits(cfg.data)
    if not splits.train:
        raise ValueError("the training split is empty")
    largest = max(len(r.labels) for r in splits.train)
    max_set = cfg.data.max_set_size or max(largest, 1)
    labels = LabelEncoder(splits.vocab, max_set)
    factory_name = cfg.model.name
    if cfg.encoder.finetune:
        backbone = _backbone(cfg.encoder)
        pre = backbone.preprocess
        aug = train_transform(cfg.data.image_size, pre.mean, pre.std)
        plain = backbone.transform(size=cfg.data.image_size)
        feature_dim = backbone.num_features
        base = {
            "train": ImageSetDataset(splits.train, labels, aug),
            "val": ImageSetDataset(splits.val, labels, plain),
            "test": ImageSetDataset(splits.test, labels, plain),
        }
        encoder_module: nn.Module | None = backbone
    else:
        caches = cache_split_features(cfg, splits)
        feature_dim = int(caches["train"].feature_shape[0])
        base = {}
        for split, cache in caches.items():
            if cache is None:
                base[split] = []
                continue
            ids = [labels.ids(r.labels) for r in splits.split(split)]
            base[split] = CachedFeatureDataset(cache, targets=ids)
        encoder_module = None
    predictor = SET_MODELS.create(factory_name, labels.num_labels, max_set, feature_dim, cfg.model)
    train_ids = [labels.ids(r.labels) for r in splits.train]
    if isinstance(predictor, FeedForwardSet):
        predictor.set_cardinality_prior(cardinality_histogram(train_ids, max_set))
    datasets = {
        "train": SetItems(base["train"], labels, shuffle_labels=predictor.shuffle_labels),
        "val": SetItems(base["val"], labels),
        "test": SetItems(base["test"], labels),
    }
    model = ImageToSet(predictor, encoder_module)
    return Prepared(cfg, splits, labels, datasets, model, feature_dim)


def evaluate(
    model: ImageToSet,
    dataset: Any,
    num_labels: int,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> SetMetrics:
    """Run the decoding rule over ``dataset`` and accumulate every metric."""
    metrics = SetMetrics(num_labels)
    if len(dataset) == 0:
        return metrics
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_sets)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in loader:
            pred, scores = model.predict(batch["inputs"].to(device))
            metrics.update(pred, batch["targets"], scores)
    model.train(was_training)
    return metrics


def _optimizer_fn(cfg: SetsConfig):
    """Adam(W)/SGD with the backbone at ``lr * lr_scale`` when fine-tuning (the thesis' rule)."""

    def build(model: nn.Module, train_cfg: TrainConfig) -> torch.optim.Optimizer:
        from beyondvis.engine import build_optimizer

        inner = model.module if hasattr(model, "module") else model
        encoder = getattr(inner, "encoder", None)
        if encoder is None:
            return build_optimizer(model, train_cfg)
        enc_ids = {id(p) for p in encoder.parameters()}
        head = [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids]
        groups = [
            {"params": head, "lr": train_cfg.lr},
            {"params": list(encoder.parameters()), "lr": train_cfg.lr * cfg.encoder.lr_scale},
        ]
        kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(train_cfg.optimizer)
        if kind is None:
            return torch.optim.SGD(
                groups,
                lr=train_cfg.lr,
                momentum=train_cfg.momentum,
                weight_decay=train_cfg.weight_decay,
            )
        return kind(groups, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)

    return build


def _step(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    return model(batch["inputs"], batch)


def checkpoint_extra(prepared: Prepared) -> dict[str, Any]:
    return {
        "system": "beyondvis.sets",
        "config": config_to_dict(prepared.config),
        "vocab": list(prepared.encoder.vocab),
        "max_set_size": prepared.encoder.max_set_size,
        "feature_dim": prepared.feature_dim,
        "model_info": prepared.model.predictor.describe(),
    }


def train(cfg: SetsConfig, prepared: Prepared | None = None, resume: Any = "auto") -> TrainResult:
    """Train with the shared engine; best.pt is chosen on validation O-F1."""
    prepared = prepared or prepare(cfg)
    device = _eval_device(cfg)

    def eval_fn(model: nn.Module) -> dict[str, float]:
        scores = evaluate(
            model,
            prepared.datasets["val"],
            prepared.encoder.num_labels,
            cfg.data.eval_batch_size,
            device,
        ).compute()
        return {f"val_{k}": scores[k] for k in METRIC_KEYS}

    trainer = Trainer(
        prepared.model,
        cfg.train,
        prepared.datasets["train"],
        _step,
        eval_fn=eval_fn if len(prepared.datasets["val"]) else None,
        collate_fn=collate_sets,
        checkpoint_extra=checkpoint_extra(prepared),
        optimizer_fn=_optimizer_fn(cfg),
        # ImageToSet.forward leaves the unused encoder/heads alone; nothing else is unused.
        find_unused_parameters=False,
    )
    return trainer.fit(resume=resume)


def _eval_device(cfg: SetsConfig) -> torch.device:
    from beyondvis.device import resolve_device

    return resolve_device(cfg.train.device)


def load_trained(checkpoint: str | Path, splits: SetSplits | None = None) -> Prepared:
    """Rebuild data and model from a checkpoint written by :func:`train`, weights loaded."""
    state = load_checkpoint(checkpoint)
    extra = state.get("extra") or {}
    if extra.get("system") != "beyondvis.sets":
        raise ValueError(f"{checkpoint} is not a beyondvis.sets checkpoint")
    cfg = load_sets_config(extra["config"])
    cfg.data.max_set_size = extra["max_set_size"]
    prepared = prepare(cfg, splits)
    if prepared.encoder.vocab != extra["vocab"]:
        raise ValueError(
            f"{checkpoint}: the dataset's label vocabulary differs from the one it was trained on"
        )
    prepared.model.load_state_dict(state["model"])
    prepared.model.eval()
    return prepared


def test_report(prepared: Prepared, split: str = "test", device: str = "cpu") -> dict[str, Any]:
    """Metrics of a trained model on one split, with the empty-set caveat of ff_td."""
    metrics = evaluate(
        prepared.model,
        prepared.datasets[split],
        prepared.encoder.num_labels,
        prepared.config.data.eval_batch_size,
        device,
    )
    out: dict[str, Any] = {"model": prepared.config.model.name, "split": split}
    out.update(metrics.compute())
    out["i_f1_by_cardinality"] = {
        str(k): {"mean": m, "ci95": h, "images": n}
        for k, (m, h, n) in metrics.f1_by_cardinality().items()
    }
    predictor = prepared.model.predictor
    out["represents_empty_set"] = predictor.represents_empty_set
    empty = sum(1 for r in prepared.splits.split(split) if not r.labels)
    if not predictor.represents_empty_set:
        out["warning"] = (
            f"{predictor.name} cannot predict the empty set (its output is a distribution "
            f"over labels); {empty} image(s) of this split have an empty label set"
        )
    out["_metrics"] = metrics
    return out


def steps_per_epoch(prepared: Prepared, batch_size: int) -> int:
    return max(1, math.ceil(len(prepared.datasets["train"]) / batch_size))
