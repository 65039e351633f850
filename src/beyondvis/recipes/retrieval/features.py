"""Inputs of the retrieval models, computed once and stored next to the prepared data.

* ``text/ingredient_w2v.npy`` and ``text/skip_instructions.pt`` — the text representations,
  trained on the training recipes only;
* ``recipe_features.npz`` — per recipe: reduced ingredient ids (<= 20) and the
  skip-instructions vector of each step (<= 20), for all recipes (photos or not);
* ``image_features.npz`` — pooled, frozen backbone features of every photo.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from beyondvis.data.recipe1m import image_path, read_recipes_jsonl
from beyondvis.recipes.pipeline.ingredients import IngredientVocabulary
from beyondvis.recipes.pipeline.text import Vocabulary
from beyondvis.recipes.retrieval.skip_instructions import StepEncoder, train_skip_instructions
from beyondvis.recipes.retrieval.word2vec import (
    load_vectors,
    save_vectors,
    train_ingredient_word2vec,
)
from beyondvis.utils import atomic_write, atomic_write_json
from beyondvis.utils.versioned import check_format_version

FEATURES_FORMAT_VERSION = 1
MAX_INGREDIENTS = 20
MAX_STEPS = 20


def _check_version(z: Any, path: str | Path, what: str) -> None:
    version = int(z["format_version"]) if "format_version" in z else None
    check_format_version(
        version, FEATURES_FORMAT_VERSION, path, what=what, exact=True,
        fix="rerun `beyondvis recipes text-features` / `image-features`",
    )  # fmt: skip


@dataclasses.dataclass
class RecipeFeatures:
    ids: list[str]
    partitions: np.ndarray  # (N,) str
    categories: np.ndarray  # (N,) int
    ingr_ids: np.ndarray  # (N, MAX_INGREDIENTS) int, 1-based (0 = padding)
    ingr_len: np.ndarray  # (N,)
    steps: np.ndarray  # (total steps, d) float32
    step_offsets: np.ndarray  # (N + 1,)

    def __len__(self) -> int:
        return len(self.ids)

    def steps_of(self, i: int) -> np.ndarray:
        return self.steps[self.step_offsets[i] : self.step_offsets[i + 1]]

    def save(self, path: str | Path) -> None:
        with atomic_write(path, "wb") as fh:
            np.savez(
                fh,
                format_version=np.array(FEATURES_FORMAT_VERSION),
                ids=np.array(self.ids),
                partitions=self.partitions,
                categories=self.categories,
                ingr_ids=self.ingr_ids,
                ingr_len=self.ingr_len,
                steps=self.steps.astype(np.float16),
                step_offsets=self.step_offsets,
            )

    @classmethod
    def load(cls, path: str | Path) -> RecipeFeatures:
        with np.load(path, allow_pickle=False) as z:
            _check_version(z, path, "recipe-features")
            return cls(
                ids=[str(i) for i in z["ids"]],
                partitions=z["partitions"],
                categories=z["categories"],
                ingr_ids=z["ingr_ids"],
                ingr_len=z["ingr_len"],
                steps=z["steps"].astype(np.float32),
                step_offsets=z["step_offsets"],
            )


def encode_recipes(
    rows: Sequence[dict[str, Any]],
    ingr_vocab: IngredientVocabulary,
    step_encoder: Any,
    use_title: bool = False,
) -> RecipeFeatures:
    """Ingredient ids and step vectors of ``rows`` (dicts of ``recipes.jsonl``)."""
    n = len(rows)
    ingr = np.zeros((n, MAX_INGREDIENTS), dtype=np.int32)
    ingr_len = np.zeros(n, dtype=np.int32)
    texts: list[str] = []
    offsets = [0]
    for i, row in enumerate(rows):
        names = row.get("ingredients_reduced") or []
        ids = [ingr_vocab.index[nm] + 1 for nm in names if nm in ingr_vocab.index][:MAX_INGREDIENTS]
        ingr[i, : len(ids)] = ids
        ingr_len[i] = len(ids)
        steps = ([row["title"]] if use_title else []) + list(row["instructions"])
        steps = steps[:MAX_STEPS] or [row["title"]]
        texts.extend(steps)
        offsets.append(len(texts))
    vectors = step_encoder(texts)
    return RecipeFeatures(
        ids=[r["id"] for r in rows],
        partitions=np.array([r["partition"] for r in rows]),
        categories=np.array([int(r.get("category", 0)) for r in rows], dtype=np.int64),
        ingr_ids=ingr,
        ingr_len=ingr_len,
        steps=vectors.astype(np.float32),
        step_offsets=np.asarray(offsets, dtype=np.int64),
    )


def build_text_features(
    prep_dir: str | Path,
    w2v_dim: int = 64,
    w2v_epochs: int = 10,
    skip_steps: int = 300,
    encoder: str = "skip",
    seed: int = 0,
) -> dict[str, Any]:
    """Train word2vec + skip-instructions on the training recipes, encode all recipes."""
    prep = Path(prep_dir)
    rows = read_recipes_jsonl(prep / "recipes.jsonl")
    ingr_vocab = IngredientVocabulary.load(prep / "ingredient_vocab.json")
    words = Vocabulary.load(prep / "instruction_vocab.json")
    train = [r for r in rows if r["partition"] == "train"]
    text_dir = prep / "text"
    text_dir.mkdir(exist_ok=True)
    w2v = train_ingredient_word2vec(
        [r["ingredients_reduced"] for r in train], ingr_vocab.names, w2v_dim, w2v_epochs, seed
    )
    save_vectors(text_dir / "ingredient_w2v.npy", w2v)
    info: dict[str, Any] = {"w2v_dim": w2v_dim, "ingredients": len(ingr_vocab), "encoder": encoder}
    if encoder == "skip":
        step_encoder, skip_info = train_skip_instructions(
            [(r["title"], r["instructions"]) for r in train],
            words,
            text_dir / "skip_run",
            max_steps=skip_steps,
            seed=seed,
        )
        step_encoder.save(text_dir / "skip_instructions.pt")
        info["skip_instructions"] = skip_info
    elif encoder == "minilm":
        from beyondvis.recipes.retrieval.skip_instructions import MiniLMStepEncoder

        step_encoder = MiniLMStepEncoder()
    else:
        raise ValueError(f"encoder must be 'skip' or 'minilm', got {encoder!r}")
    feats = encode_recipes(rows, ingr_vocab, step_encoder)
    feats.save(prep / f"recipe_features_{encoder}.npz")
    info["step_dim"] = int(feats.steps.shape[1])
    info["recipes"] = len(feats)
    atomic_write_json(text_dir / f"info_{encoder}.json", info)
    return info


def load_step_encoder(prep_dir: str | Path, encoder: str = "skip") -> Any:
    prep = Path(prep_dir)
    if encoder == "minilm":
        from beyondvis.recipes.retrieval.skip_instructions import MiniLMStepEncoder

        return MiniLMStepEncoder()
    words = Vocabulary.load(prep / "instruction_vocab.json")
    return StepEncoder.load(prep / "text" / "skip_instructions.pt", words)


def load_w2v(prep_dir: str | Path) -> np.ndarray:
    return load_vectors(Path(prep_dir) / "text" / "ingredient_w2v.npy")


@dataclasses.dataclass
class ImageFeatures:
    image_ids: list[str]
    recipe_ids: list[str]
    features: np.ndarray  # (M, D) float32
    backbone: str

    def save(self, path: str | Path) -> None:
        with atomic_write(path, "wb") as fh:
            np.savez(
                fh,
                format_version=np.array(FEATURES_FORMAT_VERSION),
                image_ids=np.array(self.image_ids),
                recipe_ids=np.array(self.recipe_ids),
                features=self.features.astype(np.float32),
                backbone=np.array(self.backbone),
            )

    @classmethod
    def load(cls, path: str | Path) -> ImageFeatures:
        with np.load(path, allow_pickle=False) as z:
            _check_version(z, path, "image-features")
            return cls(
                [str(i) for i in z["image_ids"]],
                [str(i) for i in z["recipe_ids"]],
                z["features"],
                str(z["backbone"]),
            )


def build_image_features(
    prep_dir: str | Path,
    root: str | Path,
    backbone: str = "efficientnet_lite0",
    batch_size: int = 16,
    runtime: str = "auto",
) -> dict[str, Any]:
    """Frozen pooled backbone features of every photo of the prepared recipes.

    Extraction goes through the engine's feature cache in ``image_cache/<backbone>/`` (a killed
    run resumes, unreadable photos are skipped and listed, a finished cache of the same photos
    and weights is reused; a cache of an older photo list is replaced); ``image_features.npz``
    holds the readable photos for training.
    """
    from beyondvis.engine.features import cache_image_features

    prep = Path(prep_dir)
    rows = read_recipes_jsonl(prep / "recipes.jsonl")
    paths, image_ids, recipe_ids = [], [], []
    for r in rows:
        for img in r.get("images", []):
            paths.append(str(image_path(root, r["partition"], img)))
            image_ids.append(img)
            recipe_ids.append(r["id"])
    if not paths:
        raise ValueError("no recipe with images: nothing to extract")
    folder = prep / "image_cache" / backbone
    cache = cache_image_features(
        paths, folder, backbone, output="pooled", batch_size=batch_size, runtime=runtime,
        replace_stale=True,
    )  # fmt: skip
    keep = cache.rows
    feats = ImageFeatures(
        [image_ids[i] for i in keep],
        [recipe_ids[i] for i in keep],
        np.asarray(cache.features[keep], dtype=np.float32),
        backbone,
    )
    feats.save(prep / "image_features.npz")
    info = {
        "backbone": backbone,
        "images": len(keep),
        "skipped": [f"{s['id']}: {s['reason']}" for s in cache.skipped],
        "dim": int(feats.features.shape[1]),
        "cache": str(folder),
    }
    atomic_write_json(prep / "image_features.json", info)
    return info


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
