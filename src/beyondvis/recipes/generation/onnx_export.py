"""Export a cook bundle's networks to ONNX, so ``beyondvis cook`` runs without importing torch.

A fresh ``cook`` process spent ~4 s importing torch, torchvision and timm before it looked at
the photo; ONNX Runtime + NumPy start in ~0.3 s. :func:`export_onnx_bundle` writes, next to a
bundle's ``model.pt`` (see :mod:`.bundle`):

* ``image.onnx`` — preprocessed photo (B, 3, S, S) -> the EfficientNet-Lite0 feature map
  (B, 1280, S/32, S/32), ingredient probabilities (B, N) and the predicted set (B, N) (the set
  predictor's own ``predict``, so thresholds / cardinality heads are exported, not re-coded);
* ``decoder_init.onnx`` — the decoder's conditions (feature map and/or ingredient ids (B, K))
  -> per layer the cross-attention keys/values with their masks, computed once per recipe;
* ``decoder_step.onnx`` — one incremental step: word (B, 1), position (1,), the condition
  keys/values and the self-attention keys/values of the words so far (B, H, T, Dh) -> next-word
  logits (B, V) and the keys/values extended by this word (B, H, T + 1, Dh);
* ``onnx.json`` — format version, input/output names, the SHA-256 and size of every ONNX file
  and of the ``model.pt`` they were exported from (a bundle re-saved without re-exporting is
  detected and cooked with PyTorch instead). Written last: it marks a finished export.

Weights are stored in float16 (each followed by a Cast to float32, which ONNX Runtime folds at
load), so the arithmetic is float32 as in PyTorch. The decoder and set predictor already hold
float16-rounded weights, so for them this is lossless; the backbone's weights are rounded.

The runtime side is :mod:`.onnx_cook` (no torch); this module imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from beyondvis.recipes.generation.attention import Memory
from beyondvis.recipes.generation.config import IMAGE, INGREDIENTS
from beyondvis.recipes.generation.decoder import InstructionDecoder
from beyondvis.recipes.generation.onnx_cook import (
    DECODER_INIT,
    DECODER_STEP,
    IMAGE_MODEL,
    ONNX_FORMAT_VERSION,
    ONNX_MANIFEST,
    file_sha256,
)
from beyondvis.utils import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

ONNX_OPSET = 17
# Initialisers smaller than this stay float32 (biases, norms): no size gain, and exact.
FLOAT16_MIN_ELEMENTS = 1024


class _ImageModel(nn.Module):
    def __init__(self, backbone: nn.Module, set_predictor: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.set_predictor = set_predictor

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        fmap = self.backbone.feature_map(images)
        pred, scores = self.set_predictor.predict(fmap)
        return fmap, scores.float(), pred.float()


@contextlib.contextmanager
def _explicit_masks() -> Iterator[None]:
    """Make ``Memory.build`` always return a key mask and row-validity (all True when there is
    no padding): it skips them with a data-dependent branch, which tracing would freeze at the
    dummy input's value, exporting a graph that ignores ingredient padding."""
    original = Memory.__dict__["build"]

    def build(cls: type[Memory], k: Tensor, v: Tensor, key_valid: Tensor | None) -> Memory:
        if key_valid is None:
            key_valid = torch.ones(k.shape[0], k.shape[2], dtype=torch.bool, device=k.device)
        row_valid = key_valid.any(dim=1)[:, None, None]
        mask = (key_valid | ~row_valid[:, :, 0])[:, None, None, :]
        return cls(k, v, mask, row_valid)

    Memory.build = classmethod(build)  # type: ignore[method-assign]
    try:
        yield
    finally:
        Memory.build = original  # type: ignore[method-assign]


def _memory_names(decoder: InstructionDecoder, per_layer: int) -> list[str]:
    return [
        f"mem{layer}_{m}_{part}"
        for layer in range(len(decoder.layers))
        for m in range(per_layer)
        for part in ("k", "v", "mask", "row_valid")
    ]


class _DecoderInit(nn.Module):
    def __init__(self, decoder: InstructionDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        conds = self.decoder.config.conditions
        given = dict(zip([c for c in (IMAGE, INGREDIENTS) if c in conds], inputs))
        # The embeddings themselves: encode_conditions' batch-size check compares traced
        # shapes, which tracing cannot do.
        conditions = {}
        if IMAGE in given:
            conditions[IMAGE] = self.decoder.image_embed(given[IMAGE])
        if INGREDIENTS in given:
            conditions[INGREDIENTS] = self.decoder.ingredient_embed(given[INGREDIENTS])
        out: list[Tensor] = []
        for layer_memories in self.decoder.precompute(conditions):
            for mem in layer_memories:
                out += [mem.k, mem.v, mem.attn_mask, mem.row_valid]
        return tuple(out)


class _ConcatCache:
    """Stands in for ``KVCache`` in an exported step: past keys/values arrive as inputs and the
    extended ones leave as outputs (ONNX has no in-place preallocated cache)."""

    def __init__(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k = torch.cat([self.k, k], dim=2)
        self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v


class _DecoderStep(nn.Module):
    def __init__(self, decoder: InstructionDecoder, per_layer: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.per_layer = per_layer

    def forward(self, tokens: Tensor, position: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        d = self.decoder
        n_layers = len(d.layers)
        n_mem = 4 * self.per_layer * n_layers
        mems, past = rest[:n_mem], rest[n_mem:]
        x = d.word_embed(tokens) * d.embed_scale + d.pos_embed(position)[None]
        presents: list[Tensor] = []
        for i, layer in enumerate(d.layers):
            base = 4 * self.per_layer * i
            memories = [
                Memory(
                    mems[base + 4 * m],
                    mems[base + 4 * m + 1],
                    mems[base + 4 * m + 2],
                    mems[base + 4 * m + 3],
                )
                for m in range(self.per_layer)
            ]
            cache = _ConcatCache(past[2 * i], past[2 * i + 1])
            x = layer(x, memories, cache)
            presents += [cache.k, cache.v]
        logits = d._logits(x)[:, -1].float()
        return (logits, *presents)


def _export(
    module: nn.Module,
    args: tuple,
    inputs: list[str],
    outputs: list[str],
    dynamic: dict[str, dict[int, str]],
    fold: bool = True,
) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter (constant shape checks, legacy exporter)
        torch.onnx.export(
            module,
            args,
            buffer,
            dynamo=False,  # the TorchScript exporter needs no onnxscript
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=ONNX_OPSET,
            do_constant_folding=fold,
        )
    return buffer.getvalue()


def to_float16_weights(data: bytes, min_elements: int = FLOAT16_MIN_ELEMENTS) -> bytes:
    """Store large float32 initialisers as float16, each followed by a Cast back to float32.

    Computation stays float32 (ONNX Runtime folds the casts when it loads the model); the file
    shrinks by about half.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(data)
    _share_transposed_weights(model)
    graph = model.graph
    casts = []
    keep = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            keep.append(init)
            continue
        array = numpy_helper.to_array(init)
        half = numpy_helper.from_array(array.astype(np.float16), f"{init.name}__fp16")
        keep.append(half)
        casts.append(
            helper.make_node(
                "Cast",
                [half.name],
                [init.name],
                to=onnx.TensorProto.FLOAT,
                name=f"{init.name}__cast",
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _share_transposed_weights(model: Any) -> None:
    """Replace an initialiser that is the transpose of another by a Transpose node of it.

    The tracer stores a tied weight twice: the word embedding for its Gather and, transposed,
    for the output projection's MatMul (2.2 MB in float16 for 4,242 words x 256). ONNX Runtime
    folds the Transpose at load, so nothing changes at run time.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    matrices = [
        i for i in graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) == 2
    ]
    by_shape: dict[tuple[int, int], list[Any]] = {}
    for init in matrices:
        by_shape.setdefault((int(init.dims[0]), int(init.dims[1])), []).append(init)
    replaced: set[str] = set()
    nodes = []
    for init in matrices:
        if init.name in replaced or init.dims[0] == init.dims[1]:
            continue
        array = None
        for other in by_shape.get((int(init.dims[1]), int(init.dims[0])), []):
            if other.name in replaced:
                continue
            array = numpy_helper.to_array(init) if array is None else array
            if np.array_equal(array, numpy_helper.to_array(other).T):
                nodes.append(
                    helper.make_node(
                        "Transpose",
                        [other.name],
                        [init.name],
                        perm=[1, 0],
                        name=f"{init.name}__shared",
                    )
                )
                replaced.add(init.name)
                break
    if not replaced:
        return
    keep = [i for i in graph.initializer if i.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)


def export_onnx_bundle(
    folder: str | Path, *, float16: bool = True, check: bool = True
) -> dict[str, Any]:
    """Export the networks of the cook bundle in ``folder`` (after ``save_bundle``) to ONNX.

    Loads the bundle with the PyTorch :class:`~.bundle.CookModel` (the reference), writes
    ``image.onnx``, ``decoder_init.onnx``, ``decoder_step.onnx`` and, last, ``onnx.json``, and
    returns the manifest. ``check`` runs both runtimes on a probe (the shipped demo photo's
    size, random pixels) and raises ``RuntimeError`` when the ONNX outputs differ beyond
    float16 rounding, leaving no manifest behind. ``float16=False`` keeps float32 weights.
    """
    from beyondvis.recipes.generation.bundle import CookModel

    folder = Path(folder)
    manifest_path = folder / ONNX_MANIFEST
    model = CookModel(folder, device="cpu")
    decoder = model.decoder
    cfg = decoder.config
    size = model.image_size
    images = torch.zeros(1, 3, size, size)
    image_model = _ImageModel(model.backbone, model.set_predictor).eval()
    files: dict[str, bytes] = {}
    files[IMAGE_MODEL] = _export(
        image_model,
        (images,),
        ["images"],
        ["feature_map", "probs", "pred"],
        {n: {0: "batch"} for n in ("images", "feature_map", "probs", "pred")},
    )
    with torch.no_grad():
        fmap = model.backbone.feature_map(images)
    init_inputs: list[str] = []
    init_args: list[Tensor] = []
    if IMAGE in cfg.conditions:
        init_inputs.append("feature_map")
        init_args.append(fmap)
    if INGREDIENTS in cfg.conditions:
        init_inputs.append("ingredient_ids")
        init_args.append(torch.tensor([[0, 1, cfg.ingredient_pad_id]], dtype=torch.long))
    with _explicit_masks(), torch.no_grad():
        memories = _DecoderInit(decoder)(*init_args)
    per_layer = len(memories) // (4 * len(decoder.layers))
    mem_names = _memory_names(decoder, per_layer)
    dyn: dict[str, dict[int, str]] = {
        "feature_map": {0: "batch"},
        "ingredient_ids": {0: "batch", 1: "K"},
    }
    for name in mem_names:
        dyn[name] = (
            {0: "batch"}
            if name.endswith("row_valid")
            else {0: "batch", 3 if name.endswith("mask") else 2: "S"}
        )
    with _explicit_masks():
        files[DECODER_INIT] = _export(
            _DecoderInit(decoder).eval(),
            tuple(init_args),
            init_inputs,
            mem_names,
            {n: dyn[n] for n in [*init_inputs, *mem_names]},
        )
    heads, head_dim = cfg.num_heads, cfg.head_dim
    past_names = [f"past{i}_{kv}" for i in range(len(decoder.layers)) for kv in ("k", "v")]
    present_names = [f"present{i}_{kv}" for i in range(len(decoder.layers)) for kv in ("k", "v")]
    past = [torch.zeros(1, heads, 2, head_dim) for _ in past_names]
    step_args = (torch.tensor([[cfg.special.bos]]), torch.tensor([2]), *memories, *past)
    step_dyn = {"tokens": {0: "batch"}, "logits": {0: "batch"}}
    step_dyn.update({n: dyn[n] for n in mem_names})
    step_dyn.update({n: {0: "batch", 2: "T"} for n in past_names})
    step_dyn.update({n: {0: "batch", 2: "T1"} for n in present_names})
    files[DECODER_STEP] = _export(
        _DecoderStep(decoder, per_layer).eval(),
        step_args,
        ["tokens", "position", *mem_names, *past_names],
        ["logits", *present_names],
        step_dyn,
        # folding would store the in-domain memory's int8 keys dequantised (float, 4x the
        # bytes, and once more transposed); ONNX Runtime folds them at load instead
        fold=getattr(decoder, "memory", None) is None,
    )
    pre = model.backbone.preprocess
    if float16:
        files = {name: to_float16_weights(data) for name, data in files.items()}
    manifest = {
        "format": ONNX_FORMAT_VERSION,
        "opset": ONNX_OPSET,
        "float16_weights": float16,
        "image_size": size,
        "preprocess": {
            "mean": list(pre.mean),
            "std": list(pre.std),
            "interpolation": pre.interpolation,
            "crop_pct": pre.crop_pct,
        },
        "decoder_config": cfg.to_dict(),
        # The card settings at export time, for bundles without decoding.json / staples in
        # ingredients.json (those files win when present, as in CookModel).
        "decoding": model.decoding,
        "staples": sorted(model.staples),
        "image_inputs": ["images"],
        "decoder_init_inputs": init_inputs,
        "memories_per_layer": per_layer,
        "num_layers": len(decoder.layers),
        "num_heads": heads,
        "head_dim": head_dim,
        "memory_names": mem_names,
        "past_names": past_names,
        "present_names": present_names,
        "source": {"model.pt": _file_entry(folder / "model.pt")},
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in files.items()
        },
    }
    if check:
        _check_against_torch(model, files, manifest)
    # An old manifest must not vouch for half-written files while they are replaced.
    manifest_path.unlink(missing_ok=True)
    for name, data in files.items():
        atomic_write_bytes(folder / name, data)
    atomic_write_json(manifest_path, manifest)
    log.info("exported %s to ONNX (%.1f MB)", folder, sum(len(d) for d in files.values()) / 1e6)
    return manifest


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def _check_against_torch(model: Any, files: dict[str, bytes], manifest: dict[str, Any]) -> None:
    """Run one probe through both runtimes: feature map, probabilities and first logits."""
    from beyondvis.recipes.generation.onnx_cook import OrtNetworks

    nets = OrtNetworks(files, manifest, threads=1)
    rng = np.random.default_rng(0)
    size = model.image_size
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    fmap, probs, _ = nets.image(x)
    with torch.no_grad():
        t_fmap = model.backbone.feature_map(torch.from_numpy(x))
        _, t_probs = model.set_predictor.predict(t_fmap)
    _close("feature map", fmap, t_fmap.numpy(), 2e-2)
    _close("ingredient probabilities", probs, t_probs.float().numpy(), 1e-2)
    # The decoder on torch's feature map, so only the decoder's own error is measured.
    cfg = model.decoder.config
    ingr = np.array([[0, 1, 2]], dtype=np.int64)
    state = nets.start(t_fmap.numpy(), ingr)
    logits = nets.step(state, np.array([[cfg.special.bos]], dtype=np.int64))
    logits = nets.step(state, np.array([[4]], dtype=np.int64))
    with torch.no_grad():
        t_state = model.decoder.start(
            t_fmap if IMAGE in cfg.conditions else None,
            torch.from_numpy(ingr) if INGREDIENTS in cfg.conditions else None,
        )
        model.decoder.step(t_state, torch.tensor([[cfg.special.bos]]))
        t_logits = model.decoder.step(t_state, torch.tensor([[4]]))[:, -1].float().numpy()
    _close("decoder logits", logits, t_logits, 1e-3)


def _close(what: str, got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    scale = max(float(np.abs(want).max()), 1.0)
    err = float(np.abs(got - want).max()) / scale
    if got.shape != want.shape or not err <= rtol:
        raise RuntimeError(
            f"ONNX export check failed: {what} differs from PyTorch by {err:.2e} of its scale "
            f"(shape {got.shape} vs {want.shape}, tolerance {rtol:.0e})"
        )
    log.debug("ONNX %s matches PyTorch (max error %.2e of scale)", what, err)
