"""Config of a full inverse-cooking run and the train -> export driver (``generation train``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from beyondvis.engine import TrainConfig, load_config
from beyondvis.recipes.generation.bundle import build_retrieval, save_bundle
from beyondvis.recipes.generation.config import DecoderSizes
from beyondvis.recipes.generation.data import GenData, add_dish_words, add_text_start, build_data
from beyondvis.recipes.generation.training import (
    decoder_config,
    train_decoder,
    train_ingredients,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GenerationConfig:
    """Paths, model sizes and both stages' engine settings (see configs/generation/*.yaml)."""

    prepared_dir: str = ""  # output of `beyondvis recipes prepare`
    data_root: str = ""  # Recipe1M-style root (for the photos)
    cache_dir: str = ""  # feature-map cache (default: <out_dir>/features)
    out_dir: str = "runs/generation"
    image_size: int = 224
    ingredient_model: str = "tf_set"
    ingredient_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "embed_dim": 256,
            "hidden_size": 256,
            "tf_layers": 2,
            "tf_heads": 4,
            "dropout": 0.3,
            "label_smoothing": 0.1,
        }
    )
    train_ingredients: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            epochs=30, batch_size=16, lr=1e-3, monitor="val_iou", monitor_mode="max"
        )
    )
    decoder: DecoderSizes = dataclasses.field(default_factory=DecoderSizes)
    fusion: str = "concat"
    conditions: list[str] = dataclasses.field(default_factory=lambda: ["image", "ingredients"])
    label_smoothing: float = 0.1
    # Weak supervision: a Food-101-layout root whose dish photos add title targets and
    # ingredient targets from the text recipes naming the dish ("" = off).
    food101_root: str = ""
    # Recipe1M recipes with photos are repeated this many times per decoder epoch.
    photo_oversample: int = 1
    # Recipe1M text recipes (no photo) from the photo recipes' own sources (provenance.jsonl)
    # are repeated this many times per decoder epoch: they share the cards' writing style.
    style_oversample: int = 1
    # Recipes of the other sources begin with <start_text> instead of <start> (the cards' first
    # word): the decoder keeps the photo recipes' style apart from the rest of the text.
    style_start: bool = False
    # Validation recipes (with photos) used for the decoder's perplexity (0 = all).
    eval_max_recipes: int = 300
    # Stage 1: at most this many weakly labelled photos per dish (null: all, 0: none).
    ingredient_weak_per_dish: int | None = None
    # Decoder batches of recipes of similar length (less padding; same batch size).
    bucket_by_length: bool = False
    # Decoder warm start: a decoder checkpoint (e.g. a previous run's best.pt) whose weights
    # start this run; words appended to the vocabulary since get fresh rows ("" = none).
    decoder_init: str = ""
    # "all" recipes, "photos": only those with photos (an in-domain stage after "all"), or
    # "style": those with photos plus the text recipes of the photo recipes' sources.
    decoder_train_set: str = "all"
    # At most this many weakly labelled photos per dish in the decoder's epochs (null: all).
    decoder_weak_per_dish: int | None = None
    train_decoder: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            epochs=2, batch_size=32, lr=5e-4, grad_clip=1.0, monitor="val_ppl", monitor_mode="min"
        )
    )


def load_generation_config(source: Any, overrides: list[str] | None = None) -> GenerationConfig:
    return load_config(source, GenerationConfig, overrides)


def load_data(cfg: GenerationConfig) -> GenData:
    if not cfg.prepared_dir:
        raise ValueError("prepared_dir is not set (the output folder of `recipes prepare`)")
    cache = cfg.cache_dir or str(Path(cfg.out_dir) / "features")
    return build_data(
        cfg.prepared_dir,
        cfg.data_root or None,
        cache,
        cfg.decoder.max_len,
        cfg.image_size,
        food101_root=cfg.food101_root or None,
        style_start=cfg.style_start,
    )


def _in(cfg: TrainConfig, base: str, name: str) -> TrainConfig:
    if cfg.out_dir in ("", "runs/default"):
        return dataclasses.replace(cfg, out_dir=str(Path(base) / name))
    return cfg


def run_training(
    cfg: GenerationConfig,
    export_to: str | None = None,
    data: GenData | None = None,
    resume: bool | str = "auto",
) -> dict[str, Any]:
    """Stage 1 + stage 2, then (optionally) export the float16 bundle for ``beyondvis cook``.

    ``resume`` goes to both stages' ``Trainer.fit`` ("auto": continue a run with the same
    settings, refuse other settings; "force"; False: start afresh).

    Under torchrun the process group is opened here, once, so that both stages' Trainers reuse
    it (a Trainer that opens the group itself closes it after ``fit``, and re-opening it for
    the second stage hangs in the rendezvous).
    """
    import os

    import torch.distributed as dist

    own_group = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if own_group:
        from beyondvis.engine import init_distributed

        init_distributed(cfg.train_decoder.device)
    try:
        return _run_training(cfg, export_to, data, resume)
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def _run_training(
    cfg: GenerationConfig, export_to: str | None, data: GenData | None, resume: bool | str
) -> dict[str, Any]:
    data = data or load_data(cfg)
    set_model, set_extra = train_ingredients(
        data,
        cfg.ingredient_model,
        cfg.ingredient_options,
        _in(cfg.train_ingredients, cfg.out_dir, f"ingredients_{cfg.ingredient_model}"),
        cfg.ingredient_weak_per_dish,
        resume=resume,
    )
    dcfg = decoder_config(data, cfg.decoder, cfg.fusion, tuple(cfg.conditions))
    decoder, _ = train_decoder(
        data,
        dcfg,
        _in(cfg.train_decoder, cfg.out_dir, f"decoder_{cfg.fusion}"),
        cfg.label_smoothing,
        eval_max_recipes=cfg.eval_max_recipes or None,
        photo_oversample=cfg.photo_oversample,
        bucket_by_length=cfg.bucket_by_length,
        style_oversample=cfg.style_oversample,
        init_from=cfg.decoder_init or None,
        train_set=cfg.decoder_train_set,
        weak_per_dish=cfg.decoder_weak_per_dish,
        resume=resume,
    )
    summary: dict[str, Any] = {"ingredient_model": cfg.ingredient_model, "fusion": cfg.fusion}
    import torch.distributed as dist

    if export_to and (not dist.is_initialized() or dist.get_rank() == 0):
        summary["exported_to"] = export_to
        summary["bytes"] = _export_bundle(export_to, data, set_model, set_extra, decoder, cfg)
    torch.set_grad_enabled(True)
    return summary


def export_from_checkpoints(
    cfg: GenerationConfig, ingredients_ckpt: str, decoder_ckpt: str, export_to: str
) -> dict[str, Any]:
    """Assemble the cook bundle from a stage-1 and a stage-2 ``best.pt`` (engine checkpoints).

    The stages are independent (stage 2 trains on ground-truth ingredients), so any trained
    ingredient predictor can be paired with any decoder of the same vocabularies.
    """
    from beyondvis.engine import load_checkpoint
    from beyondvis.recipes.generation.config import DecoderConfig
    from beyondvis.recipes.generation.decoder import InstructionDecoder
    from beyondvis.recipes.generation.training import build_set_predictor

    data = load_prepared_only(cfg)
    ing = load_checkpoint(ingredients_ckpt)
    dec = load_checkpoint(decoder_ckpt)
    for name, ckpt, stage in (("ingredients", ing, "ingredients"), ("decoder", dec, "decoder")):
        if ckpt.get("extra", {}).get("stage") != stage:
            raise ValueError(f"{name} checkpoint is not a generation {stage} checkpoint")
    extra = ing["extra"]
    if extra["num_labels"] != len(data.ingredient_vocab):
        raise ValueError("ingredient checkpoint and prepared vocabulary differ in size")
    set_model = build_set_predictor(extra["name"], extra["num_labels"], extra["options"])
    set_model.load_state_dict(ing["model"])
    decoder = InstructionDecoder(DecoderConfig.from_dict(dec["extra"]["decoder"]))
    decoder.load_state_dict(dec["model"])
    if decoder.config.vocab_size != len(data.word_vocab):
        raise ValueError("decoder checkpoint and prepared word vocabulary differ in size")
    return {
        "ingredient_model": extra["name"],
        "fusion": decoder.config.fusion,
        "exported_to": export_to,
        "bytes": _export_bundle(export_to, data, set_model, extra, decoder, cfg),
    }


def _export_bundle(
    export_to: str, data, set_model, set_extra: dict, decoder, cfg: GenerationConfig
) -> int:
    """Write the cook bundle from trained parts and the prepared vocabularies; its size in bytes."""
    save_bundle(
        export_to,
        set_model,
        {"name": set_extra["name"], "options": set_extra["options"]},
        decoder,
        list(data.ingredient_vocab.names),
        list(data.word_vocab.itos),
        list(data.word_vocab.specials),
        build_retrieval(data.recipes, len(data.ingredient_vocab)),
        cfg.image_size,
    )
    return sum(p.stat().st_size for p in Path(export_to).iterdir())


def build_decoder_memory(
    cfg: GenerationConfig, decoder_ckpt: str, out: str, dim: int = 64
) -> dict[str, Any]:
    """Attach an in-domain kNN memory (:mod:`.memory`) to a trained decoder and write the
    result as a decoder checkpoint that ``export`` takes like any other.

    Stored: every word of the training recipes from the photo recipes' sources (text and photo
    recipes, :func:`.training.same_style_text`); tuned on the validation *text* recipes of those
    sources; reported: perplexity with and without the memory on the validation and test
    recipes with photos (the decoder's usual validation set, not used for tuning).
    """
    from beyondvis.engine import load_checkpoint, save_checkpoint
    from beyondvis.recipes.generation.config import DecoderConfig
    from beyondvis.recipes.generation.data import TEXT_START, photo_styles
    from beyondvis.recipes.generation.decoder import InstructionDecoder
    from beyondvis.recipes.generation.memory import attach_memory, tune_memory
    from beyondvis.recipes.generation.training import same_style_text, text_eval

    data = load_data(cfg)
    ckpt = load_checkpoint(decoder_ckpt)
    if ckpt.get("extra", {}).get("stage") != "decoder":
        raise ValueError(f"{decoder_ckpt}: not a generation decoder checkpoint")
    config = DecoderConfig.from_dict({**ckpt["extra"]["decoder"], "memory": None})
    decoder = InstructionDecoder(config)
    decoder.load_state_dict({k: v for k, v in ckpt["model"].items() if not k.startswith("memory.")})
    decoder.eval()
    if config.vocab_size != len(data.word_vocab):
        raise ValueError("decoder checkpoint and prepared word vocabulary differ in size")
    starts = tuple(i for i in [data.word_vocab.stoi.get(TEXT_START)] if i is not None)
    train = data.split("train")
    styles = photo_styles(train)
    stored = [r for r in train if r.images and r.source == "recipe1m"] + same_style_text(train)
    tune = same_style_text(data.split("val"), styles)
    if not stored or not tune:
        raise ValueError(
            "no recipes in the photos' style to store or tune on: data_root needs "
            "provenance.jsonl and recipes with photos"
        )

    def ppl(split: str) -> float:
        return float(
            text_eval(decoder, data.split(split, True), data.features, starts=starts).compute()[
                "ppl"
            ]
        )

    before = {s: ppl(s) for s in ("val", "test")}
    memory = attach_memory(decoder, stored, data.features, dim=dim, starts=starts)
    best, rows = tune_memory(decoder, memory, tune, data.features, starts=starts)
    after = {s: ppl(s) for s in ("val", "test")}
    extra = dict(ckpt["extra"])
    extra["decoder"] = decoder.config.to_dict()
    extra["memory"] = {
        "from": str(decoder_ckpt),
        "stored_recipes": len(stored),
        "tuned_on_recipes": len(tune),
        "sources": sorted(styles),
    }
    save_checkpoint(out, {"model": decoder.state_dict(), "extra": extra})
    return {
        "checkpoint": str(out),
        "memory": best.to_dict(),
        "stored_recipes": len(stored),
        "tuned_on_recipes": len(tune),
        "sources": sorted(styles),
        "tuning": sorted(rows[1:], key=lambda r: r["ppl"])[:5],
        "tune_ppl_without": rows[0]["ppl"],
        "ppl_without": before,
        "ppl_with": after,
    }


def load_prepared_only(cfg: GenerationConfig) -> GenData:
    """Recipes and vocabularies without photo features (enough for exporting)."""
    if not cfg.prepared_dir:
        raise ValueError("prepared_dir is not set (the output folder of `recipes prepare`)")
    data = build_data(cfg.prepared_dir, None, cfg.cache_dir or cfg.out_dir, cfg.decoder.max_len)
    if cfg.food101_root:  # the same vocabulary the decoder was trained on
        add_dish_words(data.word_vocab, cfg.food101_root)
    if cfg.style_start:
        add_text_start(data.word_vocab)
    return data
