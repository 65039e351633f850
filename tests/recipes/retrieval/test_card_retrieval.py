"""Card retrieval (real recipes in the recipe card): numpy-only ranking on tiny assets."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from beyondvis.recipes.retrieval.card_retrieval import (
    ASSET_FILES,
    CARD_FORMAT_VERSION,
    MANIFEST,
    ImageHead,
    RecipeRetriever,
    RetrievalAssetError,
    file_sha256,
    format_retrieved,
)

D_IMG, D_EMB = 8, 4
NAMES = ["apple", "flour", "beef", "paprika", "salt"]


def _head(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "adapter_w1": rng.normal(size=(6, D_IMG)),
        "adapter_b1": rng.normal(size=6),
        "adapter_w2": rng.normal(size=(D_IMG, 6)) * 0.1,
        "adapter_b2": np.zeros(D_IMG),
        "proj_w": rng.normal(size=(D_EMB, D_IMG)),
        "proj_b": np.zeros(D_EMB),
    }


RECIPES = [
    # (id, title, source, ingredient names, full text?)
    ("r0", "Apple Pie", "epi", ["apple", "flour"], True),
    ("r1", "Beef Goulash", "pdr", ["beef", "paprika", "salt"], True),
    ("r2", "Masala Apple", "mealsugg", ["apple", "salt"], False),
    ("r3", "Paprika Beef", "grand", ["beef", "paprika"], False),
]


def write_assets(folder: Path, seed: int = 0, weight: float = 0.5) -> dict[str, np.ndarray]:
    """Tiny asset folder in the shipped format; recipe i's embedding = the image head's output
    for photo feature i, so photo i must retrieve recipe i."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    head = {k: v.astype(np.float16) for k, v in _head(rng).items()}
    photos = rng.normal(size=(len(RECIPES), D_IMG)).astype(np.float32)
    emb = ImageHead(head)(photos).astype(np.float16)
    np.savez(folder / "image_head.npz", **head)
    np.save(folder / "recipe_embeddings.npy", emb)
    ids = np.full((len(RECIPES), 20), -1, dtype=np.int16)
    columns: dict[str, list[str]] = {"ids": [], "titles": [], "sources": [], "source_ids": []}
    lines = []
    for row, (rid, title, src, names, _shipped) in enumerate(RECIPES):
        ids[row, : len(names)] = [NAMES.index(n) for n in names]
        for col, value in zip(columns, (rid, title, src, f"{src}:{rid}")):
            columns[col].append(value)
        # the texts of non-redistributable recipes are in the file here on purpose: the
        # retriever must still not hand them out (the licence table decides, not the file)
        text = {
            "ingredients": [f"1 cup {n}" for n in names],
            "instructions": [f"Cook the {title.lower()}.", "Serve."],
        }
        lines.append(f"{rid}\t{json.dumps(text)}")
    np.save(folder / "recipe_ingredients.npy", ids)
    vocab = {"format": 1, "names": NAMES, "mapping": {"granny_smith_apple": "apple"}}
    (folder / "ingredients.json.gz").write_bytes(gzip.compress(json.dumps(vocab).encode()))
    (folder / "recipes.json.gz").write_bytes(gzip.compress(json.dumps(columns).encode()))
    (folder / "recipe_texts.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    manifest = {
        "format": CARD_FORMAT_VERSION,
        "ingredient_weight": weight,
        "files": {n: {"sha256": file_sha256(folder / n)} for n in ASSET_FILES},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return {"photos": photos}


def test_photo_retrieves_its_recipe(tmp_path: Path) -> None:
    data = write_assets(tmp_path)
    r = RecipeRetriever.load(tmp_path)
    assert len(r) == 4
    for i, photo in enumerate(data["photos"]):
        top = r.search(photo, k=2)
        assert top[0]["id"] == RECIPES[i][0]
        assert top[0]["score"] >= top[1]["score"]
    # a feature map (C, H, W) is average-pooled to the same query
    fmap = np.broadcast_to(data["photos"][1][:, None, None], (D_IMG, 3, 2))
    assert r.search(fmap, k=1)[0]["id"] == "r1"
    with pytest.raises(ValueError, match="channels"):
        r.search(np.zeros(D_IMG + 1), k=1)


def test_ingredients_as_second_signal(tmp_path: Path) -> None:
    data = write_assets(tmp_path)
    r = RecipeRetriever.load(tmp_path)
    # the caller's vocabulary differs: other order, a multi-word name, an unknown name
    names = ["Paprika", "beef", "white pepper", "granny smith apple"]
    probs = np.array([0.9, 0.9, 0.5, 0.0])
    only_ingr = r.search(None, probs, names, k=4)
    assert {only_ingr[0]["id"], only_ingr[1]["id"]} == {"r1", "r3"}
    # weight 1: ingredients decide even with the apple pie photo; weight 0: the photo decides
    photo = data["photos"][0]
    assert r.search(photo, probs, names, k=1, weight=1.0)[0]["id"] in {"r1", "r3"}
    assert r.search(photo, probs, names, k=1, weight=0.0)[0]["id"] == "r0"
    combined = r.scores(photo, probs, names, weight=0.5)
    expected = 0.5 * r.image_scores(photo) + 0.5 * r.ingredient_scores(probs, names)
    np.testing.assert_allclose(combined, expected, rtol=1e-6)
    # the sparse scoring equals the dense idf-weighted cosine
    dense = np.zeros((len(RECIPES), len(NAMES)))
    for row, (_, _, _, ingr, _) in enumerate(RECIPES):
        dense[row, [NAMES.index(n) for n in ingr]] = 1.0
    idf = np.log((1 + len(RECIPES)) / (1 + dense.sum(0))) + 1.0
    dense *= idf
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    query = np.zeros(len(NAMES))
    query[[NAMES.index("paprika"), NAMES.index("beef"), NAMES.index("apple")]] = [0.9, 0.9, 0.0]
    query *= idf
    query /= np.linalg.norm(query)
    np.testing.assert_allclose(r.ingredient_scores(probs, names), dense @ query, rtol=1e-5)
    assert r.column_of("white pepper") == -1
    assert r.column_of("Granny-Smith apple") == NAMES.index("apple")
    assert r.column_of("apples") == NAMES.index("apple")
    with pytest.raises(ValueError, match="names"):
        r.search(photo, np.ones(3), None, k=1)
    with pytest.raises(ValueError, match="weight"):
        r.search(photo, probs, names, k=1, weight=1.5)


def test_licence_filtering(tmp_path: Path) -> None:
    data = write_assets(tmp_path)
    r = RecipeRetriever.load(tmp_path)
    results = {d["id"]: d for d in r.search(data["photos"][0], k=4)}
    keys = {"id", "title", "score", "source", "source_id", "licence"}
    for rid in ("r0", "r1"):  # CC BY-SA 3.0 (Epicurious), Unlicense (public-domain-recipes)
        assert keys <= set(results[rid])
        assert results[rid]["ingredients"] and results[rid]["instructions"]
        assert results[rid]["attribution"]
    assert results["r0"]["licence"] == "CC BY-SA 3.0"
    assert "creativecommons.org/licenses/by-sa/3.0" in results["r0"]["attribution"]
    assert results["r1"]["licence"] == "Unlicense"
    for rid in ("r2", "r3"):  # GPL-3 Mealsuggestor, allrecipes (no licence): title/id/source
        assert set(results[rid]) == keys
    text = format_retrieved(results["r0"])
    assert "Apple Pie" in text and "1 cup apple" in text and "CC BY-SA 3.0" in text
    assert "1. Cook the apple pie." in text
    hidden = format_retrieved(results["r2"])
    assert "Masala Apple" in hidden and "not shipped" in hidden and "1 cup" not in hidden


def test_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    write_assets(tmp_path)
    path = tmp_path / "recipe_embeddings.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RetrievalAssetError, match="recipe_embeddings.npy: SHA-256"):
        RecipeRetriever.load(tmp_path)


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(RetrievalAssetError, match="manifest missing"):
        RecipeRetriever.load(tmp_path)
    write_assets(tmp_path)
    (tmp_path / "recipes.json.gz").unlink()
    with pytest.raises(RetrievalAssetError, match="recipes.json.gz: card-retrieval asset"):
        RecipeRetriever.load(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["format"] = 99
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RetrievalAssetError, match="format version 99"):
        RecipeRetriever.load(tmp_path)


def test_numpy_only_import(tmp_path: Path) -> None:
    write_assets(tmp_path)
    code = (
        "import sys, numpy as np\n"
        "from beyondvis.recipes.retrieval.card_retrieval import RecipeRetriever\n"
        f"r = RecipeRetriever.load({str(tmp_path)!r})\n"
        f"r.search(np.ones({D_IMG}), np.ones(2), ['beef', 'salt'], k=2)\n"
        "bad = [m for m in ('torch', 'torchvision', 'timm') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_assets_load_when_present() -> None:
    from beyondvis.recipes.retrieval.card_retrieval import PACKAGE_ASSETS

    if not (PACKAGE_ASSETS / MANIFEST).is_file():
        pytest.skip("no card-retrieval assets shipped in this checkout")
    r = RecipeRetriever.load()
    assert len(r) > 10_000
    top = r.search(np.zeros(r.head.image_dim, dtype=np.float32), k=3)
    assert len(top) == 3 and all({"id", "title", "source", "licence"} <= set(d) for d in top)


def test_cook_bundle_picks_its_retriever(tmp_path: Path) -> None:
    from beyondvis.recipes.generation.bundle import BundleError, load_card_retriever

    user_bundle = tmp_path / "user_bundle"
    user_bundle.mkdir()
    assert load_card_retriever(user_bundle) is None  # ranks its own recipes (fallback index)
    write_assets(tmp_path / "with_assets")
    assert len(load_card_retriever(tmp_path / "with_assets")) == len(RECIPES)
    (tmp_path / "with_assets" / "image_head.npz").write_bytes(b"broken")
    with pytest.raises(BundleError, match="image_head.npz: SHA-256"):
        load_card_retriever(tmp_path / "with_assets")
