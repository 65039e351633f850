"""One image-to-set experiment: config -> data -> (cached) features -> trained set predictor.

Fast path (``encoder.finetune: false``, the default): the frozen backbone's last feature map
(EfficientNet-Lite0: 1280 x 7 x 7 at 224 px) is computed once per split with the engine's
feature cache; every set predictor then trains on the cached maps (attention models need the
spatial map). The fast path augments through multi-crop caching: ``encoder.cache_views: K``
caches K augmented views of every training image (``encoder.augment``, each view seeded per
image), and every load of a training image picks one of its 1 + K views. Full path
(``encoder.finetune: true``): the backbone is part of the model, training images are augmented
on the fly with ``encoder.augment``, and the backbone's learning rate is ``lr * encoder.lr_scale``.

A checkpoint stores the label vocabulary, the set-size limit and the config, so
:func:`load_model` rebuilds it without the training data and :func:`evaluate_folder` scores any
folder in one of the readers' layouts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from beyondvis.data.jsonl_sets import read_jsonl_sets
from beyondvis.data.sets_readers import (
    SetDataError,
    SetRecord,
    SetSplits,
    load_set_dataset,
    restrict_to_vocab,
)
from beyondvis.engine import (
    CachedFeatureDataset,
    TrainConfig,
    Trainer,
    TrainResult,
    cache_features,
    config_to_dict,
    load_checkpoint,
    load_config,
    seed_everything,
)
from beyondvis.io import ImageListDataset
from beyondvis.sets.data import (
    AUGMENTATIONS,
    ImageSetDataset,
    LabelEncoder,
    MultiViewDataset,
    SeededImages,
    SetItems,
    augmentation,
    cardinality_histogram,
    collate_sets,
    eval_transform,
)
from beyondvis.sets.metrics import SetMetrics, cardinality_rows
from beyondvis.sets.models import SET_MODELS, FeedForwardSet, PredictorConfig, SetPredictor
from beyondvis.validation import ValidationError

log = logging.getLogger(__name__)

METRIC_KEYS = ("o_f1", "c_f1", "i_f1", "iou", "card_err")
# what train.monitor may name: the epoch rows hold train_loss and eval_fn's val_* scores
MONITOR_KEYS = ("train_loss", *(f"val_{k}" for k in METRIC_KEYS))
RESIZE_MODES = ("crop", "full")
EVAL_FORMAT = "beyondvis.sets.eval/1"


@dataclasses.dataclass
class DataConfig:
    dataset: str = "miml"  # voc | coco | nuswide | ade20k | miml | jsonl | food101
    root: str | None = None  # None: $BEYONDVIS_DATA/<dataset folder>
    train_file: str | None = None  # jsonl only
    val_file: str | None = None
    test_file: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    max_set_size: int | None = None  # None: the largest training set
    image_size: int = 224
    # crop: short side to size/0.875, centre crop (ImageNet protocol; cuts the sides of wide
    # images); full: the whole image resized to size x size (aspect not kept, nothing cut).
    resize: str = "crop"
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"data.resize must be one of {RESIZE_MODES}, got {self.resize!r}")


@dataclasses.dataclass
class EncoderConfig:
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    weights: str | None = None
    finetune: bool = False  # False: fast path on cached frozen maps; True: fine-tune end to end
    lr_scale: float = 0.1  # finetune: backbone learning rate = lr * lr_scale
    # Training-image augmentation (fine-tuning, and the cached views of the fast path):
    # thesis (resize, random crop, flip, +-10% shift, +-10 deg) | rrc (random resized crop,
    # flip, colour jitter) | none.
    augment: str = "thesis"
    cache_views: int = 0  # fast path: augmented views cached per training image (0: none)
    # Fast path: average-pool the cached maps once, in memory, and train on (C,) vectors. For
    # feed-forward heads (the 1x1 conv block then acts on the pooled vector: an FC layer);
    # an epoch costs ~1/50 of the map path, which is what makes a CPU Hyperband study cheap.
    pool_features: bool = False
    # Fast path: fine-tune the backbone's last N stages (+ its head conv) on cached outputs of
    # the frozen rest (its "trunk", cached for the plain and the augmented views); 0: frozen.
    # Needs pool_features false; see beyondvis.sets.partial.
    finetune_blocks: int = 0
    cache_dir: str = "runs/sets/cache"
    cache_dtype: str = "float16"
    cache_batch_size: int = 32

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTATIONS:
            raise ValueError(
                f"encoder.augment must be one of {AUGMENTATIONS}, got {self.augment!r}"
            )
        if self.cache_views < 0:
            raise ValueError(f"encoder.cache_views must be >= 0, got {self.cache_views}")
        if self.finetune_blocks < 0:
            raise ValueError(f"encoder.finetune_blocks must be >= 0, got {self.finetune_blocks}")
        if self.finetune_blocks and (self.finetune or self.pool_features):
            raise ValueError(
                "encoder.finetune_blocks trains the backbone's top on cached trunk maps: it "
                "needs encoder.finetune false and encoder.pool_features false"
            )


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

    def __post_init__(self) -> None:
        # The metric names are known before training: a typo such as val_nothing used to fail
        # only after the first epoch, at the first evaluation.
        from beyondvis.validation import check_choice

        check_choice("train.monitor", self.train.monitor, MONITOR_KEYS)


def resolve_config(source: Any, relative_to: str | os.PathLike | None = None) -> Any:
    """A config path, or a packaged config name (``miml/ff_bce_c`` or ``sets/miml/ff_bce_c`` ->
    ``beyondvis/configs/sets/miml/ff_bce_c.yaml``), so shipped configs work from any folder."""
    if not isinstance(source, str | os.PathLike):
        return source
    from beyondvis.engine.config import resolve_config as resolve

    return resolve(source, system="sets", relative_to=relative_to)


def packaged_configs() -> list[str]:
    """Names of the set configs shipped inside the package (``miml``, ``miml/ff_bce_c``, ...)."""
    from beyondvis.engine.config import list_configs

    return [name.removeprefix("sets/") for name in list_configs("sets")]


def load_sets_config(source: Any, overrides: list[str] | None = None) -> SetsConfig:
    cfg = load_config(resolve_config(source), SetsConfig, overrides)
    if cfg.model.name not in SET_MODELS:
        raise ValueError(f"unknown set model {cfg.model.name!r}; known: {SET_MODELS.names()}")
    return cfg


class ImageToSet(nn.Module):
    """Optional image encoder (fine-tuning path) + set predictor."""

    def __init__(
        self, predictor: SetPredictor, encoder: nn.Module | None = None, pool: bool = False
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.pool = pool  # trained on pooled vectors (encoder.pool_features): pool maps first

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        out = inputs if self.encoder is None else self.encoder.feature_map(inputs)
        return out.mean((2, 3)) if self.pool and out.ndim == 4 else out

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
            raise ValidationError("dataset jsonl needs data.train_file and data.test_file")
        kwargs = {"train": cfg.train_file, "test": cfg.test_file, "val": cfg.val_file}
    return load_set_dataset(
        cfg.dataset, cfg.root, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, **kwargs
    )


def _backbone(cfg: EncoderConfig):
    from beyondvis.backbones import create_backbone

    return create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights)


def cache_tag(cfg: SetsConfig, splits: SetSplits) -> str:
    tag = f"{splits.name or cfg.data.dataset}-{cfg.encoder.backbone}-{cfg.data.image_size}px"
    tag = tag if cfg.data.resize == "crop" else f"{tag}-{cfg.data.resize}"
    # The trunk's output (all but the last N stages) is a different feature than the last map.
    return f"{tag}-trunk{cfg.encoder.finetune_blocks}" if cfg.encoder.finetune_blocks else tag


def cache_split_features(cfg: SetsConfig, splits: SetSplits, backbone=None) -> dict[str, Any]:
    """Frozen feature maps of every split, cached once under ``encoder.cache_dir``.

    Returns ``{"train", "val", "test": cache or None, "train_views": [cache, ...]}``; the
    ``encoder.cache_views`` augmented views of the training images are cached (and reused)
    one view at a time, so a run asking for fewer views reuses the first ones.
    """
    backbone = backbone or _backbone(cfg.encoder)
    pre = backbone.preprocess
    transform = eval_transform(backbone, cfg.data.image_size, cfg.data.resize)
    tag = cache_tag(cfg, splits)
    root = Path(cfg.encoder.cache_dir) / tag
    source: Any = backbone.feature_map
    source_name = f"{backbone.name}.feature_map"
    if cfg.encoder.finetune_blocks:
        from beyondvis.sets.partial import Trunk

        source = Trunk(backbone, cfg.encoder.finetune_blocks)
        source_name = f"{backbone.name}.trunk-{cfg.encoder.finetune_blocks}"

    def run(paths: list[str], dataset: Any, folder: Path, extra: dict[str, Any]):
        cache = cache_features(
            source,
            dataset,
            folder,
            name=source_name,
            batch_size=cfg.encoder.cache_batch_size,
            dtype=cfg.encoder.cache_dtype,
            item_ids=paths,
            fingerprint_extra=extra,
            progress=False,
        )
        if cache.skipped:
            log.warning("%s: %d unreadable image(s) skipped", folder.name, len(cache.skipped))
        return cache

    caches: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        paths = [r.image for r in splits.split(split)]
        extra = {"split": split, "size": cfg.data.image_size, "resize": cfg.data.resize}
        if cfg.data.resize == "crop":
            extra.pop("resize")  # keeps caches written before the option existed valid
        dataset = ImageListDataset(paths, transform=transform)
        caches[split] = run(paths, dataset, root / split, extra) if paths else None
    caches["train_views"] = []
    if cfg.encoder.cache_views and caches["train"] is not None:
        aug = augmentation(
            cfg.encoder.augment, cfg.data.image_size, pre.mean, pre.std, cfg.data.resize
        )
        paths = [r.image for r in splits.train]
        for view in range(cfg.encoder.cache_views):
            log.info("caching augmented training view %d/%d", view + 1, cfg.encoder.cache_views)
            dataset = SeededImages(paths, aug, seed=view)
            folder = root / f"train_{cfg.encoder.augment}{view}"
            extra = {"split": "train", "view": view, "augment": cfg.encoder.augment}
            caches["train_views"].append(run(paths, dataset, folder, extra))
    return caches


class PooledFeatures(torch.utils.data.Dataset):
    """Global-average-pooled cached maps held in memory, paired with targets (dataset index)."""

    def __init__(self, cache: Any, targets: list[Any]) -> None:
        from beyondvis.sets.probe import pooled

        self.features, self.rows = pooled(cache)
        self.targets = targets

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        return self.features[i], self.targets[int(self.rows[i])]


def _cached_dataset(cache: Any, ids: list[Any], pool: bool) -> Any:
    return PooledFeatures(cache, ids) if pool else CachedFeatureDataset(cache, targets=ids)


def prepare(
    cfg: SetsConfig, splits: SetSplits | None = None, reuse: Prepared | None = None
) -> Prepared:
    """Splits, label encoder, datasets and a fresh model for ``cfg``.

    ``reuse``: a fast-path :class:`Prepared` with the same data and encoder settings whose
    (cached, possibly pooled) datasets are shared, so only the model is built (tuning trials).
    """
    splits = splits or (reuse.splits if reuse is not None else read_splits(cfg.data))
    if not splits.train:
        raise ValidationError("the training split is empty")
    _check_images(splits)
    _check_memory(cfg)
    largest = max(len(r.labels) for r in splits.train)
    max_set = cfg.data.max_set_size or max(largest, 1)
    labels = LabelEncoder(splits.vocab, max_set)
    if (
        reuse is not None
        and not cfg.encoder.finetune
        and reuse.config.encoder == cfg.encoder
        and reuse.config.data == cfg.data
        and reuse.splits is splits
    ):
        base = {k: v.base for k, v in reuse.datasets.items()}
        feature_dim = reuse.feature_dim
        encoder_module = _top_blocks(cfg.encoder)  # a fresh top per trial (None: frozen)
    elif cfg.encoder.finetune:
        backbone = _backbone(cfg.encoder)
        pre = backbone.preprocess
        aug = augmentation(
            cfg.encoder.augment, cfg.data.image_size, pre.mean, pre.std, cfg.data.resize
        )
        plain = eval_transform(backbone, cfg.data.image_size, cfg.data.resize)
        feature_dim = backbone.num_features
        base = {
            "train": ImageSetDataset(splits.train, labels, aug),
            "val": ImageSetDataset(splits.val, labels, plain),
            "test": ImageSetDataset(splits.test, labels, plain),
        }
        encoder_module: nn.Module | None = backbone
    else:
        backbone = _backbone(cfg.encoder)
        caches = cache_split_features(cfg, splits, backbone)
        feature_dim = int(caches["train"].feature_shape[0])
        encoder_module = _top_blocks(cfg.encoder, backbone)
        if encoder_module is not None:
            feature_dim = backbone.num_features  # the cache holds the trunk's narrower maps
        base = {}
        for split in ("train", "val", "test"):
            cache = caches[split]
            if cache is None:
                base[split] = []
                continue
            ids = [labels.ids(r.labels) for r in splits.split(split)]
            base[split] = _cached_dataset(cache, ids, cfg.encoder.pool_features)
        if caches["train_views"]:
            ids = [labels.ids(r.labels) for r in splits.train]
            views = [
                _cached_dataset(c, ids, cfg.encoder.pool_features) for c in caches["train_views"]
            ]
            base["train"] = MultiViewDataset([base["train"], *views])
        if cfg.encoder.pool_features and not cfg.model.name.startswith("ff_"):
            log.warning(
                "encoder.pool_features gives %s a single feature token: its attention has "
                "nothing to attend over",
                cfg.model.name,
            )
    # Seed before the model's random init: the Trainer seeds only when fit() starts, so two
    # identical runs started from different RNG states (e.g. feature caching done or reused)
    # built different heads and their losses parted from step 3 on.
    seed_everything(cfg.train.seed)
    predictor = SET_MODELS.create(
        cfg.model.name, labels.num_labels, max_set, feature_dim, cfg.model
    )
    train_ids = [labels.ids(r.labels) for r in splits.train]
    if isinstance(predictor, FeedForwardSet):
        predictor.set_cardinality_prior(cardinality_histogram(train_ids, max_set))
    datasets = {
        "train": SetItems(base["train"], labels, shuffle_labels=predictor.shuffle_labels),
        "val": SetItems(base["val"], labels, full_targets=True),
        "test": SetItems(base["test"], labels, full_targets=True),
    }
    pool = cfg.encoder.pool_features and not cfg.encoder.finetune
    model = ImageToSet(predictor, encoder_module, pool=pool)
    return Prepared(cfg, splits, labels, datasets, model, feature_dim)


def _check_memory(cfg: SetsConfig) -> None:
    """Refuse an image size x batch that cannot fit in this machine's memory, before caching."""
    from beyondvis.validation import check_image_memory

    if cfg.encoder.finetune:  # the backbone runs on training batches (a lower bound: no grads)
        batch, flag = cfg.train.batch_size, "train.batch_size"
    else:
        batch, flag = cfg.encoder.cache_batch_size, "encoder.cache_batch_size"
    check_image_memory(cfg.data.image_size, batch, side_flag="data.image_size", batch_flag=flag)


def _check_images(splits: SetSplits) -> None:
    """Refuse a dataset whose training images are all missing before any caching starts.

    An empty image folder next to a label file gave a traceback deep in feature caching
    ("every item of the dataset failed to load"); single missing files are skipped and
    reported by the cache as before.
    """
    if any(Path(r.image).is_file() for r in splits.train):
        return
    folder = Path(splits.train[0].image).parent
    raise ValidationError(
        f"none of the {len(splits.train)} training images exists (e.g. {splits.train[0].image}); "
        f"is {folder} the dataset's image folder?"
    )


def _top_blocks(cfg: EncoderConfig, backbone: Any = None) -> nn.Module | None:
    """The trainable top of the backbone (``encoder.finetune_blocks``), or None (frozen)."""
    if not cfg.finetune_blocks:
        return None
    from beyondvis.sets.partial import TopBlocks

    return TopBlocks(backbone or _backbone(cfg), cfg.finetune_blocks)


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


def train(
    cfg: SetsConfig,
    prepared: Prepared | None = None,
    resume: Any = "auto",
    on_eval: Any = None,
) -> TrainResult:
    """Train with the shared engine; best.pt is chosen on validation O-F1.

    ``on_eval(metrics)`` is called after every validation pass (the tuner reports to Optuna
    from it; raising there, e.g. ``optuna.TrialPruned``, stops the run).
    """
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
        out = {f"val_{k}": scores[k] for k in METRIC_KEYS}
        if on_eval is not None:
            on_eval(out)
        return out

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
    """Rebuild data and model from a checkpoint written by :func:`train`, weights loaded.

    This reads the checkpoint's own dataset (``splits`` or its config's data); to score a
    checkpoint on any other folder without the training data use :func:`evaluate_folder`.
    """
    state = load_checkpoint(checkpoint)
    extra = _sets_extra(state, checkpoint)
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


@dataclasses.dataclass
class LoadedModel:
    """A trained set predictor rebuilt from its checkpoint alone (no dataset is read)."""

    config: SetsConfig
    encoder: LabelEncoder
    model: ImageToSet  # takes images when it has a backbone (``model.encoder``)
    feature_dim: int
    checkpoint: str


def _sets_extra(state: dict[str, Any], checkpoint: str | Path) -> dict[str, Any]:
    extra = state.get("extra") or {}
    if extra.get("system") != "beyondvis.sets":
        raise ValueError(f"{checkpoint} is not a beyondvis.sets checkpoint")
    missing = [k for k in ("config", "vocab", "max_set_size", "feature_dim") if k not in extra]
    if missing:
        raise ValueError(f"{checkpoint}: the checkpoint lacks {missing}")
    return extra


def load_model(checkpoint: str | Path, with_backbone: bool = True) -> LoadedModel:
    """Rebuild the label map and model of a checkpoint without its training data.

    The label vocabulary, set-size limit and feature size come from the checkpoint. A fast-path
    model (trained on cached maps) gets its frozen backbone put back in front of it when
    ``with_backbone`` is true, so it takes images.
    """
    state = load_checkpoint(checkpoint)
    extra = _sets_extra(state, checkpoint)
    cfg = load_sets_config(extra["config"])
    labels = LabelEncoder(extra["vocab"], int(extra["max_set_size"]))
    predictor = SET_MODELS.create(
        cfg.model.name, labels.num_labels, labels.max_set_size, int(extra["feature_dim"]), cfg.model
    )
    weights = state["model"]
    if cfg.encoder.finetune:
        # The fine-tuned backbone's weights are in the checkpoint: no pretrained file needed.
        enc_cfg = dataclasses.replace(cfg.encoder, pretrained=False, weights=None)
        model = ImageToSet(predictor, _backbone(enc_cfg))
        model.load_state_dict(weights)
    elif cfg.encoder.finetune_blocks:
        # The trained top is in the checkpoint; the frozen trunk is the pretrained backbone's.
        backbone = _backbone(cfg.encoder)
        top = _top_blocks(cfg.encoder, backbone)
        assert top is not None
        model = ImageToSet(predictor, top)
        model.load_state_dict(weights)
        if with_backbone:
            top.attach_trunk(backbone)
    else:
        prefix = "predictor."
        predictor.load_state_dict(
            {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        )
        model = ImageToSet(
            predictor,
            _backbone(cfg.encoder) if with_backbone else None,
            pool=cfg.encoder.pool_features,
        )
    model.eval()
    return LoadedModel(cfg, labels, model, int(extra["feature_dim"]), str(checkpoint))


def read_folder(
    root: str | Path, dataset: str, data: DataConfig | None = None
) -> tuple[SetSplits | None, list[SetRecord] | None]:
    """Read ``root`` with the reader of ``dataset``; a JSONL file is read as one record list."""
    data = data or DataConfig()
    root = Path(root)
    if dataset == "jsonl":
        if root.is_file():
            return None, read_jsonl_sets(root)
        files = {s: root / f"{s}.jsonl" for s in ("train", "val", "test")}
        if not files["test"].is_file() and not files["train"].is_file():
            raise SetDataError(f"{root}: no test.jsonl/train.jsonl (or give a .jsonl file)")
        records = {s: read_jsonl_sets(f) if f.is_file() else [] for s, f in files.items()}
        vocab = sorted({label for rs in records.values() for r in rs for label in r.labels})
        return SetSplits(vocab=vocab, name=root.name, **records), None
    cfg = dataclasses.replace(data, dataset=dataset, root=str(root))
    return read_splits(cfg), None


def evaluate_folder(
    checkpoint: str | Path,
    root: str | Path,
    dataset: str | None = None,
    split: str = "all",
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Score a checkpoint on the images of ``root`` (a folder in ``dataset``'s official layout).

    ``split``: train / val / test of the reader's split, or ``all`` images of the folder.
    Labels outside the checkpoint's vocabulary are dropped and counted in ``notes``; targets
    are the full sets (never truncated to the training set-size limit).
    """
    loaded = load_model(checkpoint, with_backbone=True)
    cfg = loaded.config
    name = dataset or cfg.data.dataset
    splits, records = read_folder(root, name, cfg.data)
    if records is None:
        assert splits is not None
        parts = ("train", "val", "test") if split == "all" else (split,)
        records = [r for part in parts for r in splits.split(part)]
    if not records:
        raise SetDataError(f"{root}: no images in split {split!r}")
    notes: list[str] = []
    records = restrict_to_vocab(records, loaded.encoder.vocab, str(root), notes)
    backbone = loaded.model.encoder
    assert backbone is not None
    transform = eval_transform(backbone, cfg.data.image_size, cfg.data.resize)
    items = SetItems(
        ImageSetDataset(records, loaded.encoder, transform), loaded.encoder, full_targets=True
    )
    model = loaded.model.to(device)
    metrics = evaluate(
        model, items, loaded.encoder.num_labels, batch_size or cfg.data.eval_batch_size, device
    )
    if metrics.num_images == 0:
        raise SetDataError(f"{root}: none of the {len(records)} image(s) could be read")
    out = metrics_report(metrics, model.predictor, cfg.model.name, split, records)
    out.update(
        {
            "root": str(root),
            "dataset": name,
            "checkpoint": str(checkpoint),
            "skipped_images": len(records) - metrics.num_images,
            "notes": notes,
        }
    )
    return out


def metrics_report(
    metrics: SetMetrics,
    predictor: SetPredictor,
    model_name: str,
    split: str,
    records: list[SetRecord],
) -> dict[str, Any]:
    """The eval JSON: every metric, I-F1 per cardinality, the empty-set caveat of ``ff_td``."""
    out: dict[str, Any] = {"format": EVAL_FORMAT, "model": model_name, "split": split}
    out.update(metrics.compute())
    out["i_f1_by_cardinality"] = cardinality_rows(metrics)
    out["represents_empty_set"] = predictor.represents_empty_set
    empty = sum(1 for r in records if not r.labels)
    if not predictor.represents_empty_set:
        out["warning"] = (
            f"{predictor.name} cannot predict the empty set (its output is a distribution "
            f"over labels); {empty} image(s) of this split have an empty label set"
        )
    out["_metrics"] = metrics
    return out


def test_report(prepared: Prepared, split: str = "test", device: str = "cpu") -> dict[str, Any]:
    """Metrics of a trained model on one split, with the empty-set caveat of ff_td."""
    metrics = evaluate(
        prepared.model,
        prepared.datasets[split],
        prepared.encoder.num_labels,
        prepared.config.data.eval_batch_size,
        device,
    )
    return metrics_report(
        metrics,
        prepared.model.predictor,
        prepared.config.model.name,
        split,
        prepared.splits.split(split),
    )


def steps_per_epoch(prepared: Prepared, batch_size: int) -> int:
    return max(1, math.ceil(len(prepared.datasets["train"]) / batch_size))
