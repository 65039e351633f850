"""Training and evaluation of the retrieval models on prepared data (see ``features.py``).

``train_joint`` runs the thesis' two-stage schedule with the shared engine; ``fit_cca_baseline``
the CCA baseline; ``evaluate_*`` the medR / R@K protocol on the test split.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from beyondvis.engine import (
    TrainConfig,
    Trainer,
    config_to_dict,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from beyondvis.recipes.retrieval.cca import fit_cca
from beyondvis.recipes.retrieval.features import ImageFeatures, RecipeFeatures, load_w2v
from beyondvis.recipes.retrieval.losses import (
    bidirectional_triplet_loss,
    contrastive_loss,
    cosine_pair_loss,
)
from beyondvis.recipes.retrieval.metrics import subset_evaluation
from beyondvis.recipes.retrieval.model import JointConfig, JointEmbedding

LOSSES = ("cosine", "triplet", "contrastive")


MONITOR_KEYS = ("train_loss", "val_medR", "val_R@10")  # what train_joint's epoch rows hold


@dataclasses.dataclass
class JointTrainConfig:
    encoder: str = "skip"  # step representation: skip | minilm
    loss: str = "cosine"  # cosine (thesis) | triplet | contrastive (in-batch, both ways)
    margin: float = 0.1  # cosine loss margin (thesis: 0.1)
    triplet_margin: float = 0.3
    temperature: float = 0.07
    pos_fraction: float = 0.2  # cosine loss: positive pairs 20%, random negatives 80%
    sem_weight: float = 0.02  # semantic regularisation lambda (thesis: 0.02); 0 = off
    repeats: int = 8  # passes over the (few) training pairs per epoch
    stage1_epochs: int = 20  # vision frozen, recipe side aligns
    stage2_epochs: int = 10  # recipe side frozen, vision adapter trains
    stage3_epochs: int = 0  # everything (the thesis saw little change here)
    emb_dim: int = 256
    ingr_hidden: int = 128
    instr_hidden: int = 256
    adapter_hidden: int = 512
    dropout: float = 0.1
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            batch_size=32,
            lr=1e-3,
            seed=0,
            device="cpu",
            progress=False,
            log_every=20,
            monitor="val_medR",
            monitor_mode="min",
            eval_every_epochs=2,
        )
    )

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0.0 < self.pos_fraction <= 1.0:
            raise ValueError("pos_fraction must be in (0, 1]")
        # the epoch rows hold train_loss and eval_fn's scores: a typo failed only after the
        # first evaluation, epochs into the run
        from beyondvis.validation import check_choice

        check_choice("train.monitor", self.train.monitor, MONITOR_KEYS)


@dataclasses.dataclass
class PairData:
    """Recipes with photos of one split: recipe row + its image-feature rows."""

    recipe_rows: list[int]
    image_rows: list[list[int]]

    def __len__(self) -> int:
        return len(self.recipe_rows)


def pairs_for_split(recipes: RecipeFeatures, images: ImageFeatures, split: str) -> PairData:
    row_of = {rid: i for i, rid in enumerate(recipes.ids)}
    by_recipe: dict[int, list[int]] = {}
    for j, rid in enumerate(images.recipe_ids):
        i = row_of.get(rid)
        if i is not None and recipes.partitions[i] == split:
            by_recipe.setdefault(i, []).append(j)
    keys = sorted(by_recipe)
    return PairData(keys, [by_recipe[k] for k in keys])


def recipe_item(recipes: RecipeFeatures, i: int) -> dict[str, torch.Tensor]:
    return {
        "ingr": torch.as_tensor(recipes.ingr_ids[i], dtype=torch.long),
        "ingr_len": torch.tensor(int(recipes.ingr_len[i])),
        "steps": torch.as_tensor(recipes.steps_of(i), dtype=torch.float32),
        "rec_class": torch.tensor(int(recipes.categories[i])),
    }


def collate_joint(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    n_steps = [len(it["steps"]) for it in items]
    steps = torch.zeros(len(items), max(n_steps), items[0]["steps"].shape[1])
    for k, it in enumerate(items):
        steps[k, : n_steps[k]] = it["steps"]
    out = {"steps": steps, "steps_len": torch.tensor(n_steps)}
    for key in items[0]:
        if key != "steps":
            out[key] = torch.stack([it[key] for it in items])
    return out


class JointPairs(Dataset):
    """Training items. ``cosine``: a positive pair with probability ``pos_fraction``, else the
    recipe with a random image of another recipe (target -1). In-batch losses: positives only."""

    def __init__(
        self,
        recipes: RecipeFeatures,
        images: ImageFeatures,
        pairs: PairData,
        loss: str,
        pos_fraction: float,
        repeats: int = 1,
    ) -> None:
        if len(pairs) < 2:
            raise ValueError(f"need at least 2 training recipes with photos, got {len(pairs)}")
        self.recipes, self.images, self.pairs = recipes, images, pairs
        self.loss, self.pos_fraction, self.repeats = loss, pos_fraction, repeats

    def __len__(self) -> int:
        return len(self.pairs) * self.repeats

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i = index % len(self.pairs)
        item = recipe_item(self.recipes, self.pairs.recipe_rows[i])
        j, target = i, 1
        # The engine seeds the RNGs per item, so this draw is reproducible and resumable.
        if self.loss == "cosine" and random.random() >= self.pos_fraction:
            j = random.randrange(len(self.pairs) - 1)
            j += j >= i
            target = -1
        img_row = random.choice(self.pairs.image_rows[j])
        item["image"] = torch.as_tensor(self.images.features[img_row], dtype=torch.float32)
        item["target"] = torch.tensor(target)
        item["img_class"] = torch.tensor(int(self.recipes.categories[self.pairs.recipe_rows[j]]))
        return item


def make_step_fn(cfg: JointTrainConfig):
    def step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        img, rec, img_logits, rec_logits = model(batch)
        if cfg.loss == "cosine":
            align = cosine_pair_loss(img, rec, batch["target"], cfg.margin)
        elif cfg.loss == "triplet":
            align = bidirectional_triplet_loss(img, rec, cfg.triplet_margin)
        else:
            align = contrastive_loss(img, rec, cfg.temperature)
        out = {"loss": align, "align": align.detach()}
        if cfg.sem_weight > 0:
            ce = torch.nn.functional.cross_entropy
            sem = ce(img_logits, batch["img_class"]) + ce(rec_logits, batch["rec_class"])
            out["loss"] = align + cfg.sem_weight * sem
            out["sem"] = sem.detach()
        return out

    return step


@torch.no_grad()
def embed_recipes(
    model: JointEmbedding, recipes: RecipeFeatures, rows: list[int], batch_size: int = 256
) -> np.ndarray:
    model.eval()
    out = []
    for s in range(0, len(rows), batch_size):
        batch = collate_joint([recipe_item(recipes, i) for i in rows[s : s + batch_size]])
        out.append(
            model.embed_recipe(batch["ingr"], batch["ingr_len"], batch["steps"], batch["steps_len"])
        )
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.emb_dim), np.float32)


@torch.no_grad()
def embed_images(model: JointEmbedding, features: np.ndarray) -> np.ndarray:
    model.eval()
    return model.embed_image(torch.as_tensor(features, dtype=torch.float32)).numpy()


def evaluation_pairs(pairs: PairData) -> tuple[list[int], list[int]]:
    """One (recipe, first image) pair per recipe with photos, as in the thesis' test pairs."""
    return pairs.recipe_rows, [imgs[0] for imgs in pairs.image_rows]


def evaluate_joint(
    model: JointEmbedding,
    recipes: RecipeFeatures,
    images: ImageFeatures,
    pairs: PairData,
    subset_size: int = 1000,
    n_subsets: int = 10,
) -> dict[str, Any]:
    rec_rows, img_rows = evaluation_pairs(pairs)
    rec = embed_recipes(model, recipes, rec_rows)
    img = embed_images(model, images.features[img_rows])
    return subset_evaluation(img, rec, subset_size, n_subsets)


def load_inputs(
    prep_dir: str | Path, encoder: str
) -> tuple[RecipeFeatures, ImageFeatures, np.ndarray]:
    prep = Path(prep_dir)
    path = prep / f"recipe_features_{encoder}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run 'beyondvis recipes text-features' first")
    img_path = prep / "image_features.npz"
    if not img_path.exists():
        raise FileNotFoundError(f"{img_path} missing: run 'beyondvis recipes image-features'")
    return RecipeFeatures.load(path), ImageFeatures.load(img_path), load_w2v(prep)


class _Forward(torch.nn.Module):
    """Wraps the model so one forward call returns what the step needs (DDP-safe)."""

    def __init__(self, model: JointEmbedding) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]):
        img, rec = self.model(batch)
        return img, rec, self.model.classifier(img), self.model.classifier(rec)


def build_model(
    cfg: JointTrainConfig,
    recipes: RecipeFeatures,
    images: ImageFeatures,
    w2v: np.ndarray,
    num_classes: int,
) -> JointEmbedding:
    jc = JointConfig(
        w2v_dim=int(w2v.shape[1]),
        step_dim=int(recipes.steps.shape[1]),
        image_dim=int(images.features.shape[1]),
        num_ingredients=int(w2v.shape[0]),
        num_classes=num_classes,
        ingr_hidden=cfg.ingr_hidden,
        instr_hidden=cfg.instr_hidden,
        emb_dim=cfg.emb_dim,
        adapter_hidden=cfg.adapter_hidden,
        dropout=cfg.dropout,
    )
    return JointEmbedding(jc, torch.as_tensor(w2v))


def train_joint(prep_dir: str | Path, out_dir: str | Path, cfg: JointTrainConfig) -> dict[str, Any]:
    """Two-stage training; writes ``out_dir/model.pt`` and returns the test metrics."""
    prep = Path(prep_dir)
    recipes, images, w2v = load_inputs(prep, cfg.encoder)
    train_pairs = pairs_for_split(recipes, images, "train")
    model, history = fit_joint(prep, out_dir, cfg, recipes, images, w2v, train_pairs)
    test = evaluate_joint(model, recipes, images, pairs_for_split(recipes, images, "test"))
    return {"history": history, "test": test}


def fit_joint(
    prep_dir: str | Path,
    out_dir: str | Path,
    cfg: JointTrainConfig,
    recipes: RecipeFeatures,
    images: ImageFeatures,
    w2v: np.ndarray,
    train_pairs: PairData,
) -> tuple[JointEmbedding, dict[str, Any]]:
    """The thesis' staged schedule on ``train_pairs`` (model selection on the validation
    pairs when there are two or more); writes ``out_dir/model.pt``, returns the model (best
    checkpoint of the last stage) and each stage's history. ``train_joint`` uses the split's
    own pairs; the card's assets (``recipes.generation.card_export``) add weak ones."""
    from beyondvis.recipes.pipeline.categories import SemanticCategories

    out = Path(out_dir)
    num_classes = len(SemanticCategories.load(Path(prep_dir) / "categories.json"))
    val_pairs = pairs_for_split(recipes, images, "val")
    seed_everything(cfg.train.seed)  # before the model's init, not only in the Trainer's fit()
    model = build_model(cfg, recipes, images, w2v, num_classes)
    data = JointPairs(recipes, images, train_pairs, cfg.loss, cfg.pos_fraction, cfg.repeats)

    def eval_fn(wrapper: torch.nn.Module) -> dict[str, float]:
        m = evaluate_joint(wrapper.model, recipes, images, val_pairs, n_subsets=1)
        return {"val_medR": m["im2recipe"]["medR"], "val_R@10": m["im2recipe"]["R@10"]}

    history = {}
    for stage, epochs in ((1, cfg.stage1_epochs), (2, cfg.stage2_epochs), (3, cfg.stage3_epochs)):
        if epochs <= 0:
            continue
        model.set_stage(stage)
        tc = dataclasses.replace(cfg.train, out_dir=str(out / f"stage{stage}"), epochs=epochs)
        wrapper = _Forward(model)
        result = Trainer(
            wrapper,
            tc,
            data,
            make_step_fn(cfg),
            eval_fn if len(val_pairs) > 1 else None,
            collate_fn=collate_joint,
        ).fit(resume=False)
        if result.best_checkpoint is not None and len(val_pairs) > 1:
            wrapper.load_state_dict(load_checkpoint(result.best_checkpoint)["model"])
        history[f"stage{stage}"] = {"best_val_medR": result.best_metric, "steps": result.steps}
    save_joint(out / "model.pt", model, cfg)
    return model, history


def save_joint(path: str | Path, model: JointEmbedding, cfg: JointTrainConfig) -> None:
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "extra": {
                "kind": "recipes_joint_embedding",
                "joint_config": dataclasses.asdict(model.config),
                "train_config": config_to_dict(cfg),
            },
        },
    )


def load_joint(path: str | Path) -> tuple[JointEmbedding, dict[str, Any]]:
    ckpt = load_checkpoint(path)
    extra = ckpt.get("extra") or {}
    if extra.get("kind") != "recipes_joint_embedding":
        raise ValueError(f"{path}: not a recipe joint-embedding checkpoint")
    model = JointEmbedding(JointConfig(**extra["joint_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), extra


# ----------------------------------------------------------------------------- baselines
def mean_recipe_vectors(recipes: RecipeFeatures, w2v: np.ndarray, rows: list[int]) -> np.ndarray:
    """Mean ingredient word2vec ++ mean step vector (the CCA baseline's recipe features)."""
    out = np.zeros((len(rows), w2v.shape[1] + recipes.steps.shape[1]))
    for k, i in enumerate(rows):
        ids = recipes.ingr_ids[i, : recipes.ingr_len[i]] - 1
        if len(ids):
            out[k, : w2v.shape[1]] = w2v[ids].mean(0)
        out[k, w2v.shape[1] :] = recipes.steps_of(i).mean(0)
    return out


def fit_cca_baseline(
    prep_dir: str | Path, encoder: str = "skip", k: int = 32, reg: float = 0.1
) -> dict[str, Any]:
    """CCA on training pairs (every photo paired with its recipe); test metrics."""
    recipes, images, w2v = load_inputs(prep_dir, encoder)
    train = pairs_for_split(recipes, images, "train")
    rec_rows = [r for r, imgs in zip(train.recipe_rows, train.image_rows) for _ in imgs]
    img_rows = [j for imgs in train.image_rows for j in imgs]
    cca = fit_cca(mean_recipe_vectors(recipes, w2v, rec_rows), images.features[img_rows], k, reg)
    test = pairs_for_split(recipes, images, "test")
    t_rec, t_img = evaluation_pairs(test)
    rec = cca.transform_x(mean_recipe_vectors(recipes, w2v, t_rec))
    img = cca.transform_y(images.features[t_img])
    return {
        "test": subset_evaluation(img, rec),
        "k": len(cca.correlations),
        "train_pairs": len(img_rows),
    }


def random_baseline(prep_dir: str | Path, encoder: str = "skip", seed: int = 0) -> dict[str, Any]:
    """Random ranking: random embeddings on both sides."""
    recipes, images, _ = load_inputs(prep_dir, encoder)
    n = len(pairs_for_split(recipes, images, "test"))
    rng = np.random.default_rng(seed)
    return {"test": subset_evaluation(rng.normal(size=(n, 64)), rng.normal(size=(n, 64)))}
