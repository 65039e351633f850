"""The recipe card with ONNX Runtime and NumPy only: ``beyondvis cook`` without importing torch.

Importing torch, torchvision and timm took ~4 s of a fresh ``cook`` process on a laptop CPU
(the card itself takes well under a second), so the bundle also ships its networks as ONNX
(written by :func:`beyondvis.recipes.generation.onnx_export.export_onnx_bundle`, format in its
docstring) and :class:`OrtCookModel` runs the same card as the PyTorch
:class:`~beyondvis.recipes.generation.bundle.CookModel`, which stays the reference:

* preprocessing is the backbone's eval transform (resize the short side to ``size / crop_pct``,
  centre crop, scale to 0..1, normalise) in PIL + NumPy, with the backbone's own settings read
  from the export manifest;
* decoding is the same greedy / beam / sampling loop as :mod:`.decoding` with the same
  anti-repetition rules (:mod:`.constraints`, torch-free), over an incremental decoder step
  whose self-attention keys/values are carried between calls;
* retrieval uses the shipped real recipes (:mod:`beyondvis.recipes.retrieval.card_retrieval`, NumPy) when
  its assets are present, else the bundle's ingredient index.

Nothing here imports torch; :func:`has_onnx` says whether a bundle can be cooked this way.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from beyondvis.errors import FormatError
from beyondvis.recipes.generation.card import (
    PACKAGE_BUNDLE,
    IngredientIndex,
    card_ingredients,
    detokenize,
    find_card_retriever,
    finished_steps,
    read_decoding,
)
from beyondvis.recipes.generation.constraints import (
    DecodingRules,
    RowRules,
    free_token_ids,
    never_generated_ids,
    word_groups,
)
from beyondvis.utils.atomic import file_sha256
from beyondvis.utils.versioned import read_versioned_json

ONNX_FORMAT_VERSION = 1
ONNX_MANIFEST = "onnx.json"
IMAGE_MODEL = "image.onnx"
DECODER_INIT = "decoder_init.onnx"
DECODER_STEP = "decoder_step.onnx"
ONNX_FILES = (IMAGE_MODEL, DECODER_INIT, DECODER_STEP)
BUNDLE_FILES = ("ingredients.json", "words.json", "retrieval.json", "retrieval_ingredients.npy")
NEG_INF = float("-inf")


class OnnxBundleError(FormatError, ValueError):
    """The bundle has no usable ONNX export (missing, other format, stale or corrupt)."""


def has_onnx(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished ONNX export (the manifest and its files)."""
    folder = Path(folder)
    return (folder / ONNX_MANIFEST).is_file() and all((folder / n).is_file() for n in ONNX_FILES)


def read_onnx_bundle(folder: str | Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The export manifest and the ONNX files' bytes, verified against their SHA-256 and
    against the ``model.pt`` they were exported from; raises :class:`OnnxBundleError`."""
    folder = Path(folder)
    path = folder / ONNX_MANIFEST
    if not path.is_file():
        raise OnnxBundleError(f"{folder}: no ONNX export ({ONNX_MANIFEST} missing)")
    manifest = read_versioned_json(
        path, None, ONNX_FORMAT_VERSION, OnnxBundleError, what="ONNX export",
        version_key="format", exact=True, fix="export it again (generation export)",
    )  # fmt: skip
    source = manifest.get("source", {}).get("model.pt", {})
    model_pt = folder / "model.pt"
    if model_pt.is_file() and (
        model_pt.stat().st_size != source.get("bytes")
        or file_sha256(model_pt) != source.get("sha256")
    ):
        raise OnnxBundleError(
            f"{folder}: the ONNX files were exported from another model.pt (re-run "
            f"'beyondvis generation export-onnx --model {folder}')"
        )
    files: dict[str, bytes] = {}
    for name in ONNX_FILES:
        entry = manifest.get("files", {}).get(name, {})
        try:
            data = (folder / name).read_bytes()
        except OSError as exc:
            raise OnnxBundleError(f"{folder / name}: cannot read ({exc})") from exc
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise OnnxBundleError(f"{folder / name}: SHA-256 does not match {ONNX_MANIFEST}")
        files[name] = data
    return manifest, files


# -- preprocessing ---------------------------------------------------------------------------
def preprocess(image: Any, size: int, config: Mapping[str, Any]) -> np.ndarray:
    """PIL RGB image -> (1, 3, size, size) float32, as the backbone's eval transform does it
    (torchvision ``Resize(round(size / crop_pct))``, ``CenterCrop(size)``, ``ToTensor``,
    ``Normalize``)."""
    from PIL import Image

    resample = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
        "lanczos": Image.Resampling.LANCZOS,
    }[config.get("interpolation", "bilinear")]
    short_target = int(round(size / float(config.get("crop_pct", 0.875))))
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = short_target, int(short_target * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    if top < 0 or left < 0:
        raise ValueError(f"image of {new_w}x{new_h} after resizing is smaller than {size}")
    image = image.crop((left, top, left + size, top + size))
    x = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(config["mean"], dtype=np.float32)
    std = np.asarray(config["std"], dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


# -- networks --------------------------------------------------------------------------------
@dataclass
class StepState:
    """What incremental decoding carries between steps: condition keys/values and masks (per
    layer and memory, flattened as in the manifest) and the past self-attention keys/values."""

    memories: list[np.ndarray]
    past: list[np.ndarray]
    length: int = 0

    def reorder(self, rows: Sequence[int] | np.ndarray) -> None:
        """Keep rows ``rows`` of the word caches (beam search moves hypotheses)."""
        index = np.asarray(rows, dtype=np.int64)
        if np.array_equal(index, np.arange(len(index))) and all(
            len(index) == p.shape[0] for p in self.past
        ):
            return  # every beam kept its row: no copy
        self.past = [p[index] for p in self.past]

    def repeat(self, n: int) -> None:
        """Give every row ``n`` copies (one per beam)."""
        self.memories = [np.repeat(m, n, axis=0) for m in self.memories]
        self.past = [np.repeat(p, n, axis=0) for p in self.past]


class OrtNetworks:
    """ONNX Runtime sessions of the exported image model, decoder init and decoder step.

    ``threads`` (None: ONNX Runtime's default, one per core) are the image model's intra-op
    threads. The decoder runs on one thread whatever ``threads`` says: its ops are far too
    small to split (a step is ~2 ms of CPU), and a second thread doubled the CPU time per step
    for no gain in wall time on this 2-core machine. Idle threads sleep instead of spinning, so
    a busy shared machine does not pay for them.
    """

    def __init__(
        self, files: Mapping[str, bytes], manifest: Mapping[str, Any], threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        def options(n: int | None) -> Any:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if n is not None:
                opts.intra_op_num_threads = int(n)
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.log_severity_level = 3
            return opts

        providers = ["CPUExecutionProvider"]
        self.manifest = dict(manifest)
        self.sessions = {
            name: ort.InferenceSession(
                files[name], options(threads if name == IMAGE_MODEL else 1), providers=providers
            )
            for name in ONNX_FILES
        }
        self.memory_names: list[str] = list(manifest["memory_names"])
        self.past_names: list[str] = list(manifest["past_names"])
        self.init_inputs: list[str] = list(manifest["decoder_init_inputs"])
        self.num_heads = int(manifest["num_heads"])
        self.head_dim = int(manifest["head_dim"])

    def image(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, 3, S, S) -> feature map, ingredient probabilities, predicted multi-hot set."""
        fmap, probs, pred = self.sessions[IMAGE_MODEL].run(None, {"images": images})
        return fmap, probs, pred

    def start(self, feature_map: np.ndarray | None, ingredient_ids: np.ndarray | None) -> StepState:
        given = {"feature_map": feature_map, "ingredient_ids": ingredient_ids}
        feeds = {}
        for name in self.init_inputs:
            if given[name] is None:
                raise ValueError(f"this decoder is conditioned on {name}; pass it")
            feeds[name] = given[name]
        memories = self.sessions[DECODER_INIT].run(None, feeds)
        batch = memories[0].shape[0]
        empty = np.zeros((batch, self.num_heads, 0, self.head_dim), dtype=np.float32)
        return StepState(list(memories), [empty] * len(self.past_names))

    def step(self, state: StepState, tokens: np.ndarray) -> np.ndarray:
        """Feed one word per row (B, 1); returns next-word logits (B, V), advances ``state``."""
        feeds = {"tokens": tokens.astype(np.int64), "position": np.array([state.length], np.int64)}
        feeds.update(zip(self.memory_names, state.memories))
        feeds.update(zip(self.past_names, state.past))
        logits, *presents = self.sessions[DECODER_STEP].run(None, feeds)
        state.past = presents
        state.length += 1
        return logits


# -- decoding (NumPy twin of .decoding) ------------------------------------------------------
@dataclass
class Special:
    pad: int
    bos: int
    eos: int
    eoi: int


@dataclass
class NumpyGeneration:
    """Decoded ids of one recipe (ending with ``eos`` unless ``max_len`` cut it) and its score."""

    tokens: list[int]
    score: float


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    shifted = x - m
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _restrict(
    logp: np.ndarray, t: int, min_len: int, sp: Special, banned: Sequence[int]
) -> np.ndarray:
    logp[:, [sp.pad, sp.bos, *banned]] = NEG_INF
    if t < min_len:
        logp[:, sp.eos] = NEG_INF
    return logp


def _next_logp(
    nets: OrtNetworks,
    state: StepState,
    prev: np.ndarray,
    guard: RowRules,
    t: int,
    min_len: int,
    sp: Special,
    banned: Sequence[int],
) -> np.ndarray:
    logits = guard.penalise(nets.step(state, prev).astype(np.float32))
    return guard.restrict(_restrict(_log_softmax(logits), t, min_len, sp, banned))


def decode_sequential(
    nets: OrtNetworks,
    state: StepState,
    sp: Special,
    max_len: int,
    *,
    method: str = "greedy",
    min_len: int = 0,
    banned: Sequence[int] = (),
    rules: DecodingRules | None = None,
    free_ids: Sequence[int] | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    rng: np.random.Generator | None = None,
) -> NumpyGeneration:
    """Greedy (``method="greedy"``) or sampling decoding of one recipe (batch of 1)."""
    if method == "sample":
        if temperature <= 0:
            raise ValueError("temperature must be > 0 (use greedy for temperature 0)")
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be >= 1")
        rng = rng if rng is not None else np.random.default_rng(0)
    guard = RowRules.for_tokens(rules, sp, 1, free_ids)
    prev = np.array([[sp.bos]], dtype=np.int64)
    tokens: list[int] = []
    score = 0.0
    for t in range(max_len):
        logp = _next_logp(nets, state, prev, guard, t, min_len, sp, banned)
        if method == "greedy":
            word = int(np.argmax(logp[0]))
        else:
            logits = logp[0] / np.float32(temperature)
            if top_k is not None and top_k < logits.shape[-1]:
                kth = np.partition(logits, -top_k)[-top_k]
                logits = np.where(logits < kth, NEG_INF, logits)
            probs = np.exp(logits - np.max(logits))
            word = int(rng.choice(len(probs), p=probs / probs.sum()))
        score += float(logp[0, word])
        tokens.append(word)
        guard.push([word])
        if word == sp.eos:
            break
        prev = np.array([[word]], dtype=np.int64)
    return NumpyGeneration(tokens, score)


def decode_beam(
    nets: OrtNetworks,
    state: StepState,
    sp: Special,
    max_len: int,
    *,
    beam_size: int = 3,
    length_penalty: float = 0.0,
    min_len: int = 0,
    banned: Sequence[int] = (),
    rules: DecodingRules | None = None,
    free_ids: Sequence[int] | None = None,
) -> NumpyGeneration:
    """Beam search over one recipe, ranked as ``decoding.beam_search`` ranks (same stopping
    bound, same length normalisation ``score / length ** length_penalty``)."""
    if beam_size < 1:
        raise ValueError("beam_size must be >= 1")
    if length_penalty < 0:
        raise ValueError("length_penalty must be >= 0")
    k = beam_size
    state.repeat(k)

    def normalised(score: float, length: int) -> float:
        return score / (length**length_penalty) if length_penalty else score

    beam_scores = np.full(k, NEG_INF, dtype=np.float32)
    beam_scores[0] = 0.0
    history = np.full((k, max_len), sp.pad, dtype=np.int64)
    prev = np.full((k, 1), sp.bos, dtype=np.int64)
    finished: list[tuple[float, list[int]]] = []
    guard = RowRules.for_tokens(rules, sp, k, free_ids)
    for t in range(max_len):
        logp = _next_logp(nets, state, prev, guard, t, min_len, sp, banned)
        vocab = logp.shape[-1]
        cand = (beam_scores[:, None] + logp).reshape(-1)
        n_top = min(2 * k, k * vocab)
        top_idx = np.argpartition(-cand, n_top - 1)[:n_top]
        top_idx = top_idx[np.argsort(-cand[top_idx], kind="stable")]
        new_scores = [NEG_INF] * k
        new_src = [0] * k
        new_word = [sp.pad] * k
        last = t == max_len - 1
        alive = 0
        for flat in top_idx.tolist():
            score = float(cand[flat])
            if score == NEG_INF:
                break
            src, word = divmod(flat, vocab)
            if word == sp.eos or last:
                finished.append((normalised(score, t + 1), history[src, :t].tolist() + [word]))
                continue
            if alive < k:
                new_scores[alive], new_src[alive], new_word[alive] = score, src, word
                alive += 1
        if alive == 0:
            break
        if finished:
            best_done = max(s for s, _ in finished)
            bound = normalised(new_scores[0], max_len if length_penalty else t + 1)
            if best_done >= bound:
                break
        state.reorder(new_src)
        history = history[new_src]
        history[:, t] = new_word
        guard.reorder(new_src)
        guard.push(new_word)
        beam_scores = np.asarray(new_scores, dtype=np.float32)
        prev = np.asarray(new_word, dtype=np.int64).reshape(-1, 1)
    if not finished:
        raise ValueError("no word may be generated (vocabulary holds only special tokens?)")
    score, seq = max(finished, key=lambda item: item[0])
    return NumpyGeneration(seq, score)


# -- the card --------------------------------------------------------------------------------
def split_recipe(ids: Sequence[int], sp: Special) -> tuple[list[int], list[list[int]]]:
    """Generated ids -> (title ids, steps), as ``sequences.split_recipe``."""
    parts: list[list[int]] = [[]]
    for i in ids:
        if i == sp.eos:
            break
        if i in (sp.pad, sp.bos):
            continue
        if i == sp.eoi:
            parts.append([])
        else:
            parts[-1].append(i)
    return parts[0], [p for p in parts[1:] if p]


@dataclass
class Card:
    """One recipe card; the same fields and JSON as ``bundle.CookResult``."""

    title: str
    ingredients: list[dict[str, Any]]
    instructions: list[str]
    retrieved: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "ingredients": self.ingredients,
            "instructions": self.instructions,
            "retrieved": self.retrieved,
        }


def load_bundle_decoding(folder: Path, fallback: Mapping[str, Any]) -> dict[str, Any]:
    """A bundle's ``decoding.json``, else ``fallback`` (the settings recorded at export time)."""
    return read_decoding(folder, dict(fallback), OnnxBundleError)


def load_card_retriever(folder: str | Path | None = None) -> Any:
    """The real-recipe retriever of a bundle (:func:`.card.find_card_retriever`); a corrupt
    asset raises :class:`OnnxBundleError`."""
    return find_card_retriever(folder, OnnxBundleError)


class OrtCookModel:
    """Photo -> ingredients -> title + steps -> closest real recipes, on ONNX Runtime.

    Mirrors ``bundle.CookModel`` step by step (same decoding settings from ``decoding.json``,
    same card ingredient order, same retrieval); ``threads`` sets ONNX Runtime's intra-op
    threads (None: its default, one per core). Raises :class:`OnnxBundleError` when the bundle
    has no usable export (callers then fall back to the PyTorch ``CookModel``).
    """

    runtime = "onnxruntime"

    def __init__(self, folder: str | Path = PACKAGE_BUNDLE, threads: int | None = None) -> None:
        folder = Path(folder)
        missing = [n for n in BUNDLE_FILES if not (folder / n).is_file()]
        if missing:
            raise OnnxBundleError(f"{folder}: model bundle lacks {missing}")
        manifest, files = read_onnx_bundle(folder)
        self.folder = folder
        self.manifest = manifest
        try:
            self.nets = OrtNetworks(files, manifest, threads)
        except Exception as exc:  # onnxruntime missing or a file it cannot load
            raise OnnxBundleError(f"{folder}: ONNX Runtime cannot load the export ({exc})") from exc
        self.image_size = int(manifest["image_size"])
        self.preprocess_config = manifest["preprocess"]
        cfg = manifest["decoder_config"]
        self.special = Special(**{k: int(cfg["special"][k]) for k in ("pad", "bos", "eos", "eoi")})
        self.conditions = tuple(cfg["conditions"])
        self.ingredient_pad_id = int(cfg["ingredient_pad_id"])
        self.max_len = int(cfg["max_len"])
        ingredients_meta = json.loads((folder / "ingredients.json").read_text(encoding="utf-8"))
        self.ingredient_names: list[str] = ingredients_meta["names"]
        self.staples = set(ingredients_meta.get("staples") or manifest.get("staples") or ())
        self.itos: list[str] = json.loads((folder / "words.json").read_text(encoding="utf-8"))[
            "itos"
        ]
        self.unk_id = self.itos.index("<unk>") if "<unk>" in self.itos else None
        self.banned_ids = never_generated_ids(self.itos)  # <unk>, <start_text>
        self.free_ids = sorted(free_token_ids(self.itos))
        self.decoding = load_bundle_decoding(folder, manifest.get("decoding") or {})
        self.rules = DecodingRules(
            **self.decoding.get("rules", {}), word_groups=word_groups(self.itos)
        )
        meta = json.loads((folder / "retrieval.json").read_text(encoding="utf-8"))
        self.retrieval_ids: list[str] = meta["ids"]
        self.retrieval_titles: list[str] = meta["titles"]
        # The ingredient index is built on first use: with the real-recipe assets it is unused.
        self.ingredient_index: IngredientIndex | None = None
        self.card_retriever = load_card_retriever(folder)  # None: ingredient-only fallback
        self.retrieve_k = 3  # default number of real recipes on the card

    @property
    def default_decode(self) -> str:
        return str(self.decoding.get("method", "greedy"))

    # -- steps of the card ------------------------------------------------------------------
    def features(self, image: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """PIL image -> feature map (1, C, h, w), probabilities (N,), multi-hot set (N,)."""
        x = preprocess(image, self.image_size, self.preprocess_config)
        fmap, probs, pred = self.nets.image(x)
        return fmap, probs[0], pred[0]

    def ingredients(self, probs: np.ndarray, pred: np.ndarray) -> list[int]:
        """Predicted ingredient ids, most probable first (as ``CookModel.ingredients``)."""
        labels = np.nonzero(pred)[0].tolist()
        return sorted(labels, key=lambda i: -probs[i])

    def card_ingredients(self, labels: Sequence[int], probs: np.ndarray) -> list[dict[str, Any]]:
        """The card's ingredient rows (:func:`.card.card_ingredients`)."""
        return card_ingredients(self.ingredient_names, self.staples, labels, probs)

    def retrieve(
        self, probs: np.ndarray, k: int | None = None, feature_map: np.ndarray | None = None
    ) -> list[dict[str, Any]]:
        """The ``k`` (default ``retrieve_k``) closest real recipes (as ``CookModel.retrieve``):
        by photo embedding + ingredients with the real-recipe assets, else by ingredients."""
        k = self.retrieve_k if k is None else k
        if self.card_retriever is not None:
            pooled = None if feature_map is None else feature_map[0].mean(axis=(1, 2))
            return self.card_retriever.search(pooled, probs, self.ingredient_names, k)
        if self.ingredient_index is None:  # built on first use: most cards use the embedding
            ids = np.load(self.folder / "retrieval_ingredients.npy", allow_pickle=False)
            self.ingredient_index = IngredientIndex(
                ids, len(self.ingredient_names), self.retrieval_ids, self.retrieval_titles
            )
        return self.ingredient_index.search(probs, k)

    def decode(
        self, fmap: np.ndarray, labels: Sequence[int], method: str, **options: Any
    ) -> NumpyGeneration:
        """Decode the recipe; ``options`` are the method's (see :func:`decode_sequential`,
        :func:`decode_beam`) plus ``max_len``."""
        ingr = None
        if "ingredients" in self.conditions:
            ingr = np.full((1, max(1, len(labels))), self.ingredient_pad_id, dtype=np.int64)
            ingr[0, : len(labels)] = labels
        state = self.nets.start(fmap if "image" in self.conditions else None, ingr)
        max_len = options.pop("max_len", None)
        max_len = self.max_len if max_len is None else int(max_len)
        if not 1 <= max_len <= self.max_len:
            raise ValueError(f"max_len must be in [1, {self.max_len}], got {max_len}")
        if method == "beam":
            return decode_beam(self.nets, state, self.special, max_len, **options)
        if method in ("greedy", "sample"):
            return decode_sequential(
                self.nets, state, self.special, max_len, method=method, **options
            )
        raise ValueError(f"unknown decoding method {method!r} (greedy, beam, sample)")

    def cook(self, image: Any, decode: str | None = None, *, seed: int = 0, **options: Any) -> Card:
        """One card. ``decode``: greedy, beam or sample (default: the bundle's choice, see
        ``decoding.json``); ``options`` override that method's options, ``rules`` (a
        :class:`DecodingRules`) the anti-repetition rules; ``seed`` seeds sampling (NumPy's
        generator, so samples differ from the PyTorch path's)."""
        t0 = time.perf_counter()
        fmap, probs, pred = self.features(image)
        t1 = time.perf_counter()
        labels = self.ingredients(probs, pred)
        t2 = time.perf_counter()
        decode = decode or self.default_decode
        # the caller's bans come on top of <unk> and <start_text>, never instead of them
        options["banned"] = sorted({*options.get("banned", ()), *self.banned_ids})
        for key, value in self.decoding.get("options", {}).get(decode, {}).items():
            options.setdefault(key, value)
        options.setdefault("rules", self.rules)
        options.setdefault("free_ids", self.free_ids)
        if decode == "sample":
            options.setdefault("rng", np.random.default_rng(seed))
        gen = self.decode(fmap, labels, decode, **options)
        t3 = time.perf_counter()
        title_ids, steps = split_recipe(gen.tokens, self.special)
        steps = finished_steps(steps, gen.tokens, self.special.eos, self.special.eoi)
        card = Card(
            title=detokenize([self.itos[i] for i in title_ids]) or "Untitled",
            ingredients=self.card_ingredients(labels, probs),
            instructions=[detokenize([self.itos[i] for i in s]) for s in steps],
            retrieved=self.retrieve(probs, feature_map=fmap),
            timings={"features": t1 - t0, "ingredients": t2 - t1, "decode": t3 - t2},
        )
        card.timings["retrieval"] = time.perf_counter() - t3
        return card


__all__ = [
    "Card",
    "OnnxBundleError",
    "OrtCookModel",
    "OrtNetworks",
    "decode_beam",
    "decode_sequential",
    "has_onnx",
    "load_card_retriever",
    "preprocess",
    "read_onnx_bundle",
]
