"""Real recipes for the recipe card: rank the cleaned recipes of recipe1m_mini for a photo.

Query side in numpy only (no torch at import or query time), so that a torch-free cook path
(ONNX Runtime backbone) can use it. Two signals:

* the Recipes I joint embedding (thesis ch. 8): the image head (residual adapter + projection,
  ``beyondvis.recipes.retrieval.model.JointEmbedding.embed_image``) re-implemented in numpy over the
  pooled EfficientNet-Lite0 features, against precomputed float16 recipe embeddings;
* predicted ingredients: cosine of idf-weighted ingredient vectors (the card's former
  ingredient-only retrieval), matched by name so any ingredient vocabulary can query it.

``score = (1 - w) * cos_image + w * cos_ingredients``, ``w`` chosen on the validation photos
and stored in the manifest. The asset folder (``beyondvis/assets/recipes``, written by
``python -m beyondvis.recipes.generation.card_export export``) holds:

* ``card_retrieval.json`` — manifest: ``format``, sizes, default weight, the source table with
  licences, and the SHA-256 and size of every other file (verified on load);
* ``image_head.npz`` — float16 image-head weights;
* ``recipe_embeddings.npy`` — (N, d) float16, L2-normalised recipe embeddings;
* ``recipe_ingredients.npy`` — (N, 20) int16 ingredient ids (-1 = padding);
* ``ingredients.json.gz`` — the ingredient vocabulary (kept names + raw -> kept mapping);
* ``recipes.json.gz`` — columns ``ids``, ``titles``, ``sources`` (provenance prefix),
  ``source_ids``, one entry per recipe in the embedding order;
* ``recipe_texts.jsonl.gz`` — ``<id>\t{"ingredients": [...], "instructions": [...]}`` lines,
  only for the recipes whose source licence allows redistribution; parsed lazily, only for the
  recipes a search returns (start-up time of ``cook``).
"""

from __future__ import annotations

import gzip
import json
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from beyondvis.errors import FormatError
from beyondvis.utils.atomic import file_sha256
from beyondvis.utils.versioned import read_versioned_json

CARD_FORMAT_VERSION = 1
MANIFEST = "card_retrieval.json"
PACKAGE_ASSETS = Path(__file__).resolve().parents[2] / "assets" / "recipes"
ASSET_FILES = (
    "image_head.npz",
    "recipe_embeddings.npy",
    "recipe_ingredients.npy",
    "ingredients.json.gz",
    "recipes.json.gz",
    "recipe_texts.jsonl.gz",
)
HEAD_KEYS = ("adapter_w1", "adapter_b1", "adapter_w2", "adapter_b2", "proj_w", "proj_b")

# Source-id prefix (provenance.jsonl) -> how the recipe may be shown. Decided from
# /work/shared/data/README.md and provenance.jsonl; the reasons are in assets/recipes/README.md.
SOURCES: dict[str, dict[str, Any]] = {
    "epi": {
        "name": "Epicurious (epicurious.com), via the Kaggle 'Food Ingredients and Recipe "
        "Dataset with Images' (pes12017000148)",
        "licence": "CC BY-SA 3.0",
        "licence_url": "https://creativecommons.org/licenses/by-sa/3.0/",
        "full_text": True,
        "attribution": "Recipe text from Epicurious (epicurious.com) as published in the Kaggle "
        "'Food Ingredients and Recipe Dataset with Images' (pes12017000148), licensed CC BY-SA "
        "3.0 (https://creativecommons.org/licenses/by-sa/3.0/). Changes: split into ingredient "
        "lines and steps; shared under the same licence.",
    },
    "pdr": {
        "name": "public-domain-recipes (continuation of based.cooking)",
        "licence": "Unlicense",
        "licence_url": "https://unlicense.org/",
        "full_text": True,
        "attribution": "Public domain (Unlicense): ronaldl29/public-domain-recipes, a "
        "continuation of LukeSmithxyz/based.cooking.",
    },
    "howtocook_en": {
        "name": "HowToCook-English (machine translation of Anduin2017/HowToCook)",
        "licence": "Unlicense",
        "licence_url": "https://unlicense.org/",
        "full_text": True,
        "attribution": "Public domain (Unlicense): josmerod/HowToCook-English, an AI translation "
        "of Anduin2017/HowToCook (machine-translated text).",
    },
    "mealsugg": {
        "name": "archanaskitchen.com, via ptds2023/Mealsuggestor (Kaggle sarthak71/food-recipes)",
        "licence": "GPL-3.0 (of the R package; text not shipped)",
        "licence_url": "https://www.gnu.org/licenses/gpl-3.0.html",
        "full_text": False,
        "attribution": "",
    },
    "grand": {
        "name": "allrecipes.com, via miromeir/The-Grand-Recipe-Dataset",
        "licence": "none stated (text not shipped)",
        "licence_url": "",
        "full_text": False,
        "attribution": "",
    },
}
UNKNOWN_SOURCE = {
    "name": "unknown source",
    "licence": "unknown (text not shipped)",
    "licence_url": "",
    "full_text": False,
    "attribution": "",
}


class RetrievalAssetError(FormatError, ValueError):
    """The card-retrieval assets are missing, of another format, or corrupt."""


def normalize_ingredient(name: str) -> str:
    """The vocabulary's spelling of a name: lower case, words joined by ``_``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower()).strip("_")


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class ImageHead:
    """numpy twin of ``JointEmbedding.embed_image``: ``normalize(tanh(P(f + A(f))))``."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        missing = [k for k in HEAD_KEYS if k not in weights]
        if missing:
            raise RetrievalAssetError(f"image head lacks {missing}")
        # float32 for the arithmetic: float16 storage only saves bytes on disk.
        self.w = {k: np.asarray(weights[k], dtype=np.float32) for k in HEAD_KEYS}
        self.image_dim = int(self.w["adapter_w1"].shape[1])
        self.emb_dim = int(self.w["proj_w"].shape[0])

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Embed pooled features ``(D,)`` / ``(N, D)`` or feature maps ``(D, H, W)`` /
        ``(N, D, H, W)`` (average-pooled here, as the backbone pools them)."""
        f = np.asarray(features, dtype=np.float32)
        if f.ndim in (3, 4) and f.shape[-3] == self.image_dim:
            f = f.mean(axis=(-2, -1))
        single = f.ndim == 1
        f = np.atleast_2d(f)
        if f.ndim != 2 or f.shape[1] != self.image_dim:
            raise ValueError(
                f"image features must have {self.image_dim} channels (pooled efficientnet_lite0), "
                f"got shape {tuple(np.shape(features))}"
            )
        w = self.w
        h = np.maximum(f @ w["adapter_w1"].T + w["adapter_b1"], 0.0)
        x = f + h @ w["adapter_w2"].T + w["adapter_b2"]
        out = _l2(np.tanh(x @ w["proj_w"].T + w["proj_b"]))
        return out[0] if single else out


class RecipeRetriever:
    """Ranks the shipped real recipes for a photo (image embedding + predicted ingredients)."""

    def __init__(
        self,
        manifest: dict[str, Any],
        head: ImageHead,
        embeddings: np.ndarray,
        ingredient_ids: np.ndarray,
        vocabulary: dict[str, Any],
        recipes: dict[str, list[str]],
        texts_path: Path | None = None,
    ) -> None:
        n = len(recipes["ids"])
        if (
            embeddings.shape != (n, head.emb_dim)
            or ingredient_ids.shape[0] != n
            or any(len(recipes[c]) != n for c in ("titles", "sources", "source_ids"))
        ):
            raise RetrievalAssetError(
                f"asset sizes disagree: {n} recipes, embeddings {embeddings.shape}, "
                f"ingredients {ingredient_ids.shape}, image head -> {head.emb_dim}-d"
            )
        self.manifest = manifest
        self.head = head
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.ids: list[str] = list(recipes["ids"])
        self.titles: list[str] = list(recipes["titles"])
        self.source_keys: list[str] = list(recipes["sources"])
        self.source_ids: list[str] = list(recipes["source_ids"])
        self.default_weight = float(manifest.get("ingredient_weight", 0.0))
        self.sources = {**SOURCES, **manifest.get("sources", {})}
        self.names: list[str] = list(vocabulary["names"])
        self.index = {nm: i for i, nm in enumerate(self.names)}
        self.mapping: dict[str, str] = dict(vocabulary.get("mapping", {}))
        self._build_ingredient_weights(np.asarray(ingredient_ids))
        self._query_columns: dict[tuple[str, ...], np.ndarray] = {}
        self._texts_path = texts_path
        self._texts: dict[str, bytes] | None = None

    # -- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path = PACKAGE_ASSETS) -> RecipeRetriever:
        """Read and verify (format, SHA-256 of every file) an asset folder."""
        folder = Path(folder)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise RetrievalAssetError(f"{manifest_path}: card-retrieval manifest missing")
        manifest = read_versioned_json(
            manifest_path, None, CARD_FORMAT_VERSION, RetrievalAssetError,
            what="card-retrieval assets", version_key="format", exact=True,
            fix="export them again (card_export export)",
        )  # fmt: skip
        files = manifest.get("files", {})
        for name in ASSET_FILES:
            path = folder / name
            if not path.is_file():
                raise RetrievalAssetError(f"{path}: card-retrieval asset missing")
            expected = files.get(name, {}).get("sha256")
            if expected is None:
                raise RetrievalAssetError(f"{manifest_path}: no checksum for {name}")
            if file_sha256(path) != expected:
                raise RetrievalAssetError(
                    f"{path}: SHA-256 does not match {MANIFEST} (corrupt or modified file)"
                )
        try:
            with np.load(folder / "image_head.npz", allow_pickle=False) as z:
                head = ImageHead({k: z[k] for k in z.files})
            embeddings = np.load(folder / "recipe_embeddings.npy", allow_pickle=False)
            ingredient_ids = np.load(folder / "recipe_ingredients.npy", allow_pickle=False)
            vocabulary = json.loads(gzip.decompress((folder / "ingredients.json.gz").read_bytes()))
            recipes = json.loads(gzip.decompress((folder / "recipes.json.gz").read_bytes()))
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise RetrievalAssetError(
                f"{folder}: cannot read card-retrieval assets ({exc})"
            ) from exc
        return cls(
            manifest,
            head,
            embeddings,
            ingredient_ids,
            vocabulary,
            recipes,
            folder / "recipe_texts.jsonl.gz",
        )

    def __len__(self) -> int:
        return len(self.ids)

    # -- ingredient signal ----------------------------------------------------------------
    def _build_ingredient_weights(self, ids: np.ndarray) -> None:
        # Sparse form of the idf-weighted, L2-normalised recipe x ingredient matrix: per recipe
        # its (<= 20) ingredient columns and their weights, so start-up builds no dense matrix.
        n, v = ids.shape[0], len(self.names)
        valid = (ids >= 0) & (ids < v)
        self._cols = np.where(valid, ids, 0).astype(np.int64)
        df = np.bincount(self._cols[valid], minlength=v).astype(np.float64)
        self.idf = (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)
        w = np.where(valid, self.idf[self._cols], 0.0)
        self._weights = (w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)).astype(
            np.float32
        )

    def column_of(self, name: str) -> int:
        """Vocabulary column of an ingredient name from any vocabulary, -1 if none fits:
        the name itself, its raw -> kept mapping, its singular, then its last word
        (``"white_pepper"`` -> ``"pepper"`` when only the head noun is known)."""
        key = normalize_ingredient(name)
        candidates = [key]
        if key.endswith("es"):
            candidates.append(key[:-2])
        if key.endswith("s"):
            candidates.append(key[:-1])
        if "_" in key:
            candidates.append(key.rsplit("_", 1)[1])
        for cand in candidates:
            if cand in self.index:
                return self.index[cand]
            kept = self.mapping.get(cand)
            if kept is not None and kept in self.index:
                return self.index[kept]
        return -1

    def _columns(self, names: Sequence[str]) -> np.ndarray:
        key = tuple(names)
        cols = self._query_columns.get(key)
        if cols is None:
            cols = np.array([self.column_of(n) for n in names], dtype=np.int64)
            self._query_columns[key] = cols
        return cols

    def ingredient_query(self, probs: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """Ingredient probabilities of the caller's vocabulary -> a query over this one."""
        probs = np.asarray(probs, dtype=np.float32).reshape(-1)
        if names is None:
            if len(probs) != len(self.names):
                raise ValueError(
                    f"{len(probs)} ingredient probabilities but no names: pass ingredient_names "
                    f"(the retriever's own vocabulary has {len(self.names)})"
                )
            query = probs.copy()
        else:
            if len(names) != len(probs):
                raise ValueError(f"{len(probs)} ingredient probabilities for {len(names)} names")
            cols = self._columns(names)
            query = np.zeros(len(self.names), dtype=np.float32)
            ok = cols >= 0
            # several names may land on one kept name: keep the most confident
            np.maximum.at(query, cols[ok], probs[ok])
        return _l2(query * self.idf)

    # -- ranking --------------------------------------------------------------------------
    def image_scores(self, image_features: np.ndarray) -> np.ndarray:
        """Cosine of the photo's embedding with every recipe, ``(N,)`` (or ``(Q, N)``)."""
        return self.head(image_features) @ self.embeddings.T

    def ingredient_scores(
        self, probs: np.ndarray, names: Sequence[str] | None = None
    ) -> np.ndarray:
        q = self.ingredient_query(probs, names)
        return (q[self._cols] * self._weights).sum(axis=1)

    def scores(
        self,
        image_features: np.ndarray | None,
        ingredient_probs: np.ndarray | None = None,
        ingredient_names: Sequence[str] | None = None,
        weight: float | None = None,
    ) -> np.ndarray:
        """``(1 - w) * image + w * ingredients``; a missing signal drops out."""
        w = self.default_weight if weight is None else float(weight)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"ingredient weight must be in [0, 1], got {w}")
        if image_features is None and ingredient_probs is None:
            raise ValueError("need image features, ingredient probabilities or both")
        if ingredient_probs is None:
            return self.image_scores(image_features)
        ingr = self.ingredient_scores(ingredient_probs, ingredient_names)
        if image_features is None:
            return ingr
        return (1.0 - w) * self.image_scores(image_features) + w * ingr

    def search(
        self,
        pooled_image_features: np.ndarray | None,
        ingredient_probs: np.ndarray | None = None,
        ingredient_names: Sequence[str] | None = None,
        k: int = 3,
        weight: float | None = None,
    ) -> list[dict[str, Any]]:
        """The ``k`` best real recipes, best first: dicts with ``id``, ``title``, ``score``,
        ``source``, ``source_id``, ``licence`` and, only where the licence allows
        redistribution, ``ingredients`` and ``instructions`` (lists of lines) plus
        ``attribution``."""
        scores = np.asarray(
            self.scores(pooled_image_features, ingredient_probs, ingredient_names, weight)
        )
        if scores.ndim != 1:
            raise ValueError("search takes one photo; use scores() for a batch")
        k = max(0, min(int(k), len(scores)))
        top = np.argsort(-scores, kind="stable")[:k]
        return [self.recipe(int(i), float(scores[i])) for i in top]

    def _text(self, recipe_id: str) -> dict[str, Any] | None:
        if self._texts is None:
            self._texts = {}
            if self._texts_path is not None:
                try:
                    data = gzip.decompress(self._texts_path.read_bytes())
                except (OSError, EOFError) as exc:
                    raise RetrievalAssetError(f"{self._texts_path}: unreadable ({exc})") from exc
                for line in data.splitlines():
                    rid, _, payload = line.partition(b"\t")
                    self._texts[rid.decode("utf-8")] = payload
        payload = self._texts.get(recipe_id)
        return None if payload is None else json.loads(payload)

    def recipe(self, row: int, score: float | None = None) -> dict[str, Any]:
        """One recipe as a result dict (see :meth:`search`)."""
        src = self.sources.get(self.source_keys[row], UNKNOWN_SOURCE)
        out: dict[str, Any] = {"id": self.ids[row], "title": self.titles[row]}
        if score is not None:
            out["score"] = round(score, 4)
        out["source"] = src["name"]
        out["source_id"] = self.source_ids[row]
        out["licence"] = src["licence"]
        # The licence table decides, not the file: a text is handed out only for sources
        # whose licence allows redistribution.
        text = self._text(self.ids[row]) if src.get("full_text") else None
        if text is not None:
            out["ingredients"] = list(text["ingredients"])
            out["instructions"] = list(text["instructions"])
            if src.get("attribution"):
                out["attribution"] = src["attribution"]
        return out


def format_retrieved(recipe: dict[str, Any], width: int = 88) -> str:
    """A retrieved recipe as text for the card: title, ingredient lines, steps, source."""
    title = recipe.get("title") or "Untitled"
    score = recipe.get("score")
    head = f"{title}" + (f"  (score {score:.3f})" if score is not None else "")
    lines = [head, "-" * len(head)]
    ingredients = recipe.get("ingredients")
    steps = recipe.get("instructions")
    if ingredients is not None:
        lines.append("Ingredients:")
        lines += [
            textwrap.fill(i, width, initial_indent="  - ", subsequent_indent="    ")
            for i in ingredients
        ]
    if steps is not None:
        lines += ["", "Instructions:"]
        for n, step in enumerate(steps, 1):
            lines.append(
                textwrap.fill(
                    step,
                    width,
                    initial_indent=f"  {n}. ",
                    subsequent_indent=" " * (len(str(n)) + 4),
                )
            )
    src = recipe.get("source", "unknown source")
    sid = recipe.get("source_id")
    lines += ["", f"Source: {src}" + (f" [{sid}]" if sid else "") + f" [id {recipe.get('id')}]"]
    lines.append(f"Licence: {recipe.get('licence', 'unknown')}")
    if recipe.get("attribution"):
        lines.append(textwrap.fill(recipe["attribution"], width))
    if ingredients is None:
        lines.append(
            "(Full text not shipped: its source licence does not allow redistribution; "
            "look it up at the source.)"
        )
    return "\n".join(lines)
