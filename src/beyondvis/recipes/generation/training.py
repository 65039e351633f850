"""Two-stage training of inverse cooking through :class:`beyondvis.engine.Trainer` (thesis 9.2).

Stage 1 (``train_ingredients``): a set predictor of :mod:`beyondvis.sets` (``tf_set`` by default)
on the frozen image feature maps of the recipes that have photos.

Stage 2 (``train_decoder``): the instruction decoder, teacher-forced on ALL training recipes with
their ground-truth ingredients; the image encoder stays frozen (cached maps). Recipes without a
photo still train the text side: their image tokens are given ``valid = False``, so the image
attention is masked out (all-masked attention outputs zero, see ``fusion.py``) and only the
ingredients condition the words. The I2R baseline trains on photo recipes only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from beyondvis.engine import TrainConfig, Trainer, load_checkpoint, seed_everything
from beyondvis.recipes.generation.config import (
    IMAGE,
    INGREDIENTS,
    DecoderConfig,
    DecoderSizes,
    SpecialTokens,
)
from beyondvis.recipes.generation.data import (
    MAX_INGREDIENTS,
    TEXT_START,
    GenData,
    GenRecipe,
    photo_styles,
)
from beyondvis.recipes.generation.decoder import InstructionDecoder, sequence_nll
from beyondvis.recipes.generation.fusion import Condition
from beyondvis.recipes.generation.metrics import IngredientSetMetrics, PerplexityMeter
from beyondvis.recipes.generation.sequences import teacher_forcing_batch
from beyondvis.sets import PredictorConfig, create_set_predictor
from beyondvis.sets.data import LabelEncoder

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ stage 1
class IngredientItems(Dataset):
    """One item per (recipe, photo): feature map + the sets package's target encoding."""

    def __init__(self, recipes: list[GenRecipe], data: GenData, shuffle: bool = False) -> None:
        self.items = [(r, i) for r in recipes for i in r.images]
        self.features = data.features
        self.encoder = LabelEncoder(list(data.ingredient_vocab.names), MAX_INGREDIENTS)
        self.shuffle = shuffle

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        recipe, row = self.items[index]
        return {
            "inputs": self.features[row].float(),
            **self.encoder.encode(recipe.ingredients, shuffle=self.shuffle),
        }


def first_photo_items(recipes: list[GenRecipe], data: GenData) -> IngredientItems:
    """Evaluation items: one photo (the first) per recipe, so every recipe counts once."""
    items = IngredientItems([], data)
    items.items = [(r, r.images[0]) for r in recipes if r.images]
    return items


def _stack(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def build_set_predictor(name: str, num_labels: int, options: dict[str, Any]) -> nn.Module:
    config = PredictorConfig(name=name, **options)
    return create_set_predictor(name, num_labels, MAX_INGREDIENTS, 1280, config)


def evaluate_ingredients(model: nn.Module, items: IngredientItems) -> IngredientSetMetrics:
    metrics = IngredientSetMetrics(items.encoder.num_labels)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), 64):
            batch = _stack([items[i] for i in range(start, min(start + 64, len(items)))])
            pred, scores = model.predict(batch["inputs"])
            metrics.update(pred, batch["targets"], scores)
    return metrics


def cap_weak_items(recipes: list[GenRecipe], per_dish: int | None) -> list[GenRecipe]:
    """At most ``per_dish`` weakly labelled (non-Recipe1M) items per dish title, in order;
    ``None`` keeps all, 0 none. Recipe1M recipes are always kept."""
    if per_dish is None:
        return list(recipes)
    kept: dict[str, int] = {}
    selected = []
    for r in recipes:
        if r.source != "recipe1m":
            if kept.get(r.title, 0) >= per_dish:
                continue
            kept[r.title] = kept.get(r.title, 0) + 1
        selected.append(r)
    return selected


def warm_start(
    model: nn.Module, checkpoint: str | Path, copy_rows: Mapping[int, int] | None = None
) -> list[str]:
    """Load ``checkpoint``'s weights into ``model`` before training starts.

    A tensor whose first dimension grew (word rows of a vocabulary extended with
    :meth:`~beyondvis.recipes.pipeline.text.Vocabulary.extend`, which only appends) gets the old rows
    and keeps its fresh initialisation for the new ones, except the new rows named in
    ``copy_rows`` (new id -> old id), which start as copies of an old row; any other shape
    difference is an error naming the tensor. Returns the names of the partly loaded tensors.
    """
    source = load_checkpoint(checkpoint)["model"]
    stale = [k for k in source if k.startswith("memory.")]
    if stale:  # hidden states of the old weights: training on would leave them stale
        log.info(
            "%s: its in-domain memory is not carried over (rebuild it after training)", checkpoint
        )
        source = {k: v for k, v in source.items() if k not in stale}
    target = model.state_dict()
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint}: not a checkpoint of this model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    grown: list[str] = []
    merged = {}
    for name, dst in target.items():
        src = source[name]
        if src.shape == dst.shape:
            merged[name] = src
        elif (
            src.dim() == dst.dim()
            and src.shape[1:] == dst.shape[1:]
            and src.shape[0] < dst.shape[0]
        ):
            rows = dst.clone()
            rows[: src.shape[0]] = src
            for new_id, old_id in (copy_rows or {}).items():
                if src.shape[0] <= new_id < dst.shape[0] and 0 <= old_id < src.shape[0]:
                    rows[new_id] = src[old_id]
            merged[name] = rows
            grown.append(name)
        else:
            raise ValueError(
                f"{checkpoint}: {name} has shape {tuple(src.shape)}, the model "
                f"{tuple(dst.shape)} (only appended vocabulary rows can differ)"
            )
    model.load_state_dict(merged)
    return grown


def train_ingredients(
    data: GenData,
    name: str,
    options: dict[str, Any],
    train_cfg: TrainConfig,
    weak_per_dish: int | None = None,
    resume: bool | str = "auto",
) -> tuple[nn.Module, dict[str, Any]]:
    """Stage 1; best.pt chosen on validation IoU. Returns (model with best weights, extra).

    ``weak_per_dish`` keeps at most that many weakly labelled (Food-101) photos per dish: 375
    photos per dish with the same dish-level targets outweigh the 147 Recipe1M photos with
    their own recipes' ingredients (``None``: all, 0: none)."""
    seed_everything(train_cfg.seed)
    num_labels = len(data.ingredient_vocab)
    model = build_set_predictor(name, num_labels, options)
    # Weakly labelled photos of dishes no text recipe names have no ingredient targets.
    train_recipes = cap_weak_items(
        [r for r in data.split("train", True) if r.ingredients], weak_per_dish
    )
    train_items = IngredientItems(train_recipes, data, shuffle=model.shuffle_labels)
    val_items = first_photo_items(data.split("val", True), data)

    def step(m: nn.Module, batch: dict[str, Tensor]) -> Any:
        return m(batch["inputs"], batch)

    def eval_fn(m: nn.Module) -> dict[str, float]:
        scores = evaluate_ingredients(m, val_items).compute()
        return {"val_iou": float(scores["iou"]), "val_f1": float(scores["o_f1"])}

    extra = {
        "system": "beyondvis.recipes.generation",
        "stage": "ingredients",
        "name": name,
        "options": dict(options),
        "num_labels": num_labels,
    }
    trainer = Trainer(
        model, train_cfg, train_items, step, eval_fn, collate_fn=_stack, checkpoint_extra=extra
    )
    result = trainer.fit(resume=resume)
    best = result.best_checkpoint or result.last_checkpoint
    model.load_state_dict(load_checkpoint(best)["model"])
    return model.eval(), extra


# ------------------------------------------------------------------------------ stage 2
def decoder_config(
    data: GenData,
    sizes: DecoderSizes | Mapping[str, Any],
    fusion: str,
    conditions: tuple[str, ...],
) -> DecoderConfig:
    """The decoder of a run: ``sizes`` from its config, vocabularies and channels from ``data``."""
    if isinstance(sizes, DecoderSizes):
        sizes = dataclasses.asdict(sizes)
    n = len(data.ingredient_vocab)
    return DecoderConfig(
        vocab_size=len(data.word_vocab),
        special=SpecialTokens.from_vocab(data.word_vocab.stoi),
        num_ingredients=n + 1,  # + pad
        ingredient_pad_id=n,
        image_channels=int(data.features.shape[1]) if data.features is not None else 1280,
        fusion=fusion,
        conditions=tuple(conditions),
        **sizes,
    )


class TextItems(Dataset):
    """(tokens, ingredient ids, image row or -1) per recipe; a photo recipe uses a random photo."""

    def __init__(self, recipes: list[GenRecipe], pick_random_photo: bool = True) -> None:
        self.recipes = recipes
        self.pick_random_photo = pick_random_photo

    def __len__(self) -> int:
        return len(self.recipes)

    def __getitem__(self, index: int) -> tuple[list[int], list[int], int]:
        r = self.recipes[index]
        if not r.images:
            row = -1
        elif self.pick_random_photo:
            row = random.choice(r.images)
        else:
            row = r.images[0]
        return r.tokens, r.ingredients, row


class BucketedTextItems(Dataset):
    """Whole batches of recipes of similar length, one per item (use with a loader batch of 1).

    Padding every batch to its longest recipe wastes most of a step when 150-word recipes sit
    next to 5-word Food-101 titles; grouping by length first (ties and bucket contents
    shuffled with ``seed``) makes a step cost what its recipes need. The engine's sampler then
    shuffles (and under DDP shards) the batches themselves.
    """

    def __init__(self, recipes: list[GenRecipe], batch_size: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        order = sorted(range(len(recipes)), key=lambda i: (len(recipes[i].tokens), rng.random()))
        self.items = TextItems(recipes)
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[tuple[list[int], list[int], int]]:
        return [self.items[i] for i in self.batches[index]]


@dataclasses.dataclass
class TextBatch:
    inputs: Tensor
    targets: Tensor
    ingredients: Tensor
    image_rows: Tensor

    def to(self, device: torch.device) -> TextBatch:
        return TextBatch(*(t.to(device) for t in dataclasses.astuple(self)))


def make_text_collate(
    special: SpecialTokens,
    ingredient_pad: int,
    bucketed: bool = False,
    starts: Collection[int] = (),
):
    """Batches of (tokens, ingredient ids, image row); ``starts``: other start words a
    sequence may begin with (:func:`.sequences.teacher_forcing_batch`)."""

    def collate(items: list[tuple[list[int], list[int], int]]) -> TextBatch:
        if bucketed:  # a loader batch of BucketedTextItems batches
            items = [it for batch in items for it in batch]
        inputs, targets = teacher_forcing_batch([t for t, _, _ in items], special, starts)
        width = max(1, max(len(i) for _, i, _ in items))
        ingr = torch.full((len(items), width), ingredient_pad, dtype=torch.long)
        for row, (_, ids, _) in enumerate(items):
            ingr[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        rows = torch.as_tensor([r for _, _, r in items], dtype=torch.long)
        return TextBatch(inputs, targets, ingr, rows)

    return collate


def batch_conditions(
    decoder: InstructionDecoder, batch: TextBatch, features: Tensor | None
) -> dict[str, Condition]:
    """Embedded conditions; recipes without a photo get their image tokens masked out."""
    inner = decoder.module if hasattr(decoder, "module") else decoder  # DDP-wrapped or not
    cfg = inner.config
    out: dict[str, Condition] = {}
    if INGREDIENTS in cfg.conditions:
        out[INGREDIENTS] = inner.ingredient_embed(batch.ingredients)
    if IMAGE in cfg.conditions:
        has = batch.image_rows >= 0
        if features is None:
            raise ValueError("this decoder is conditioned on images but no features were given")
        maps = features[batch.image_rows.clamp(min=0).cpu()].to(batch.inputs.device).float()
        maps[~has.cpu()] = 0
        cond = inner.image_embed(maps)
        valid = has[:, None].expand(cond.tokens.shape[:2]).to(cond.tokens.device)
        out[IMAGE] = Condition(cond.tokens, valid)
    return out


def text_eval(
    decoder: InstructionDecoder,
    recipes: list[GenRecipe],
    features: Tensor | None,
    batch_size: int = 32,
    starts: Collection[int] = (),
) -> PerplexityMeter:
    collate = make_text_collate(
        decoder.config.special, decoder.config.ingredient_pad_id, starts=starts
    )
    items = TextItems(recipes, pick_random_photo=False)
    meter = PerplexityMeter()
    decoder.eval()
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = collate([items[i] for i in range(start, min(start + batch_size, len(items)))])
            logits = decoder(batch.inputs, conditions=batch_conditions(decoder, batch, features))
            meter.update(logits, batch.targets, decoder.config.special.pad)
    return meter


def same_style_text(
    recipes: list[GenRecipe], styles: Collection[str] | None = None
) -> list[GenRecipe]:
    """The text recipes (Recipe1M, no photo) whose origin is one of ``styles`` (default: the
    training photo recipes' origins among ``recipes``, :func:`.data.photo_styles`), each
    once; none when origins are unknown."""
    styles = photo_styles(recipes) if styles is None else styles
    seen: set[str] = set()
    out = []
    for r in recipes:
        if r.source == "recipe1m" and not r.images and r.origin in styles and r.id not in seen:
            seen.add(r.id)
            out.append(r)
    return out


def train_decoder(
    data: GenData,
    config: DecoderConfig,
    train_cfg: TrainConfig,
    label_smoothing: float = 0.1,
    eval_max_recipes: int | None = 300,
    photo_oversample: int = 1,
    bucket_by_length: bool = False,
    style_oversample: int = 1,
    init_from: str | Path | None = None,
    train_set: str = "all",
    weak_per_dish: int | None = None,
    resume: bool | str = "auto",
) -> tuple[InstructionDecoder, dict[str, Any]]:
    """Stage 2; best.pt chosen on validation perplexity (photo recipes, first photo).

    ``bucket_by_length`` trains on :class:`BucketedTextItems` (``train_cfg.batch_size``
    recipes of similar length per step). ``photo_oversample`` repeats the Recipe1M recipes that have photos in every epoch: they are
    1.7 % of recipe1m_mini's text recipes but the only ones whose steps the image side sees.
    ``style_oversample`` repeats the training text recipes (no photo) written by the same
    sources as the photo recipes (``GenRecipe.origin``): the cards and validation are in
    those sources' style, which the other 95 % of the text does not share.
    Weakly labelled Food-101 photos (``source == "food101"``) train the title only: their
    target sequence stops after the title's ``<eoi>``; ``weak_per_dish`` caps them per dish.

    ``init_from`` starts from another decoder checkpoint (:func:`warm_start`; a resumed run
    loads its own ``last.pt`` instead). ``train_set="photos"`` trains on the recipes with
    photos only: a short in-domain stage after the text-recipe training, since the photo
    recipes (two sources, their own style) are what validation and every card are about.
    ``train_set="style"``: the recipes with photos plus the text recipes of the same sources
    (:func:`same_style_text`), a larger in-domain stage.
    """
    if train_set not in ("all", "photos", "style"):
        raise ValueError(f"train_set must be 'all', 'photos' or 'style', got {train_set!r}")
    seed_everything(train_cfg.seed)
    decoder = InstructionDecoder(config)
    text_start = data.word_vocab.stoi.get(TEXT_START)
    starts = () if text_start is None else (text_start,)
    if init_from:
        # a new <start_text> starts as a copy of <start>: the warm-started decoder's behaviour
        # on every recipe is unchanged at step 0, and the two then diverge
        copy = {} if text_start is None else {text_start: config.special.bos}
        grown = warm_start(decoder, init_from, copy)
        log.info("decoder warm-started from %s (grown: %s)", init_from, grown or "none")
    image_only = config.conditions == (IMAGE,)
    train_recipes = data.split(
        "train",
        with_images=image_only or INGREDIENTS not in config.conditions or train_set == "photos",
    )
    train_recipes = cap_weak_items(train_recipes, weak_per_dish)
    if train_set == "style":
        train_recipes = [r for r in train_recipes if r.images] + same_style_text(train_recipes)
    if photo_oversample > 1:
        extra_photo = [r for r in train_recipes if r.images and r.source == "recipe1m"]
        train_recipes = train_recipes + extra_photo * (photo_oversample - 1)
    if style_oversample > 1:
        extra_style = same_style_text(train_recipes)
        log.info("style_oversample: %d text recipes in the photos' style", len(extra_style))
        if not extra_style:
            log.warning(
                "style_oversample has no effect: no recipe has a known source in the photos' "
                "style (does data_root hold provenance.jsonl?)"
            )
        train_recipes = train_recipes + extra_style * (style_oversample - 1)
    val_recipes = data.split("val", with_images=IMAGE in config.conditions)
    if eval_max_recipes:
        val_recipes = val_recipes[:eval_max_recipes]
    features = data.features
    pad = config.special.pad

    def step(m: nn.Module, batch: TextBatch) -> Tensor:
        logits = m(batch.inputs, conditions=batch_conditions(m, batch, features))
        return sequence_nll(logits, batch.targets, pad, label_smoothing)[0]

    def eval_fn(m: nn.Module) -> dict[str, float]:
        inner = m.module if hasattr(m, "module") else m
        ppl = text_eval(inner, val_recipes, features, starts=starts).compute()["ppl"]
        return {"val_ppl": float(ppl) if math.isfinite(ppl) else 1e9}

    extra = {
        "system": "beyondvis.recipes.generation",
        "stage": "decoder",
        "decoder": config.to_dict(),
    }
    if bucket_by_length:
        items: Dataset = BucketedTextItems(train_recipes, train_cfg.batch_size, train_cfg.seed)
        train_cfg = dataclasses.replace(train_cfg, batch_size=1)
    else:
        items = TextItems(train_recipes)
    trainer = Trainer(
        decoder,
        train_cfg,
        items,
        step,
        eval_fn,
        collate_fn=make_text_collate(
            config.special, config.ingredient_pad_id, bucket_by_length, starts
        ),
        checkpoint_extra=extra,
    )
    result = trainer.fit(resume=resume)
    best = result.best_checkpoint or result.last_checkpoint
    decoder.load_state_dict(load_checkpoint(best)["model"])
    return decoder.eval(), extra


def out_dir(base: str | Path, name: str) -> str:
    return str(Path(base) / name)
