"""Fast feature extraction: the one way other systems turn images into backbone features.

On CPU the default runtime is ONNX Runtime: the backbone (with the requested output) is exported
once per backbone + weights + input size and cached under the user cache dir; on a GPU, or when
ONNX Runtime is missing or its export fails, PyTorch runs in ``inference_mode`` with channels-last
tensors. Either way the first batch of every new input size is checked against the plain PyTorch
model (``ONNX_RTOL``/``ONNX_ATOL``); on a mismatch the extractor falls back to PyTorch.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from beyondvis.backbones.base import Backbone
from beyondvis.device import resolve_device
from beyondvis.io import BadImage, ImageListDataset, collate_images
from beyondvis.utils import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_ENV = "BEYONDVIS_CACHE"
ONNX_FORMAT_VERSION = 1  # bump when the export wrapper changes; old cache files are ignored
ONNX_OPSET = 17
# ONNX Runtime fuses conv+BN and reorders sums, so float32 results differ in the last bits.
# Measured max |diff| on real images is ~1e-5 of the output scale; we allow 1e-3 relative.
ONNX_RTOL = 1e-3
ONNX_ATOL = 1e-4
OUTPUTS = ("pooled", "map", "features")
RUNTIMES = ("auto", "onnxruntime", "torch")

Features = torch.Tensor | list[torch.Tensor]


def default_cache_dir() -> Path:
    """``$BEYONDVIS_CACHE``, else ``$XDG_CACHE_HOME/beyondvis``, else ``~/.cache/beyondvis``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "beyondvis"


def weights_fingerprint(module: nn.Module) -> str:
    """sha256 of the state dict's names, shapes and bytes: a fine-tuned model gets a new key."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        array = tensor.detach().to("cpu").contiguous().numpy()
        digest.update(f"{name}:{tuple(array.shape)}:{array.dtype}".encode())
        digest.update(array.reshape(-1).view("uint8"))
    return digest.hexdigest()[:16]


class _Output(nn.Module):
    """The backbone reduced to one output kind, as the graph to export or to run."""

    def __init__(self, backbone: Backbone, output: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.output == "pooled":
            return self.backbone(x)
        if self.output == "map":
            return self.backbone.feature_map(x)
        return tuple(self.backbone.forward_features(x))


@dataclass
class ExtractedFeatures:
    """Features of the images that loaded; ``indices`` point into the input path list."""

    features: Features
    indices: list[int]
    paths: list[str]
    errors: list[BadImage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)


class FeatureExtractor:
    """Batched, fast feature extraction for a :class:`Backbone`.

    ``output``: ``"pooled"`` (B, num_features), ``"map"`` (B, num_features, H/32, W/32) or
    ``"features"`` (the five maps). ``runtime``: ``"auto"`` (ONNX Runtime on CPU, PyTorch
    elsewhere), ``"onnxruntime"`` or ``"torch"``. ``cache``: keep exported ONNX files in
    ``cache_dir`` (default :func:`default_cache_dir` ``/onnx``); set False for throw-away models.
    Results are float32 CPU tensors. The backbone is put in eval mode and moved to ``device``
    in channels-last memory format (in place, as ``Module.to`` does).
    """

    def __init__(
        self,
        backbone: Backbone,
        output: str = "pooled",
        runtime: str = "auto",
        device: str | torch.device | None = "auto",
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        num_threads: int | None = None,
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.backbone = backbone.eval()
        self.output = output
        self.device = resolve_device(device)
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
        self.num_threads = num_threads or torch.get_num_threads()
        self.runtime = self._choose_runtime(runtime)
        # eval() on the wrapper too: the ONNX exporter restores the wrapper's train/eval mode
        # recursively after export, which would otherwise flip BatchNorm into training mode.
        self._module = _Output(self.backbone, output).eval()
        # channels-last lets oneDNN / cuDNN pick their fast NHWC kernels (about 2x on CPU).
        self.backbone.to(self.device, memory_format=torch.channels_last)
        self._sessions: dict[tuple[int, int], Any] = {}
        self._fingerprint: str | None = None

    # -- runtime choice -------------------------------------------------------------------
    def _choose_runtime(self, runtime: str) -> str:
        if runtime == "torch":
            return "torch"
        if self.device.type != "cpu":
            if runtime == "onnxruntime":
                raise ValueError("runtime='onnxruntime' runs on CPU only; use device='cpu'")
            return "torch"
        try:
            import onnx  # noqa: F401  (the exporter needs it)
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            if runtime == "onnxruntime":
                raise ImportError(
                    f"runtime='onnxruntime' needs onnx and onnxruntime: {exc}"
                ) from exc
            log.info("onnxruntime unavailable (%s); extracting with PyTorch", exc)
            return "torch"
        return "onnxruntime"

    # -- running ------------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor) -> Features:
        """Features of a preprocessed batch (B, 3, H, W)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
        if self.runtime == "onnxruntime":
            session = self._session_for(images)
            if session is not None:
                return self._run_session(session, images)
        return self._run_torch(images)

    def _run_torch(self, images: torch.Tensor) -> Features:
        with torch.inference_mode():
            x = images.to(self.device, torch.float32, non_blocking=True)
            out = self._module(x.contiguous(memory_format=torch.channels_last))
            if isinstance(out, tuple):
                return [o.float().cpu().contiguous() for o in out]
            return out.float().cpu().contiguous()

    def _run_session(self, session: Any, images: torch.Tensor) -> Features:
        # A contiguous float32 CPU tensor shares its memory with the numpy view: no copy.
        array = images.to("cpu", torch.float32).contiguous().numpy()
        outs = [torch.from_numpy(o) for o in session.run(None, {"images": array})]
        return outs if self.output == "features" else outs[0]

    # -- ONNX sessions ------------------------------------------------------------------------
    def _session_for(self, images: torch.Tensor) -> Any | None:
        key = (int(images.shape[2]), int(images.shape[3]))
        if key not in self._sessions:
            self._sessions[key] = self._build_session(key, images[:1])
        return self._sessions[key]

    def onnx_path(self, height: int, width: int) -> Path:
        """Cache file for this backbone, weights, output kind and input size."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.backbone)
        name = (
            f"{self.backbone.name}-{self._fingerprint}-{self.output}-{height}x{width}"
            f"-opset{ONNX_OPSET}-v{ONNX_FORMAT_VERSION}.onnx"
        )
        return self.cache_dir / name

    def _export(self, height: int, width: int) -> bytes:
        output_names = (
            [f"map{i}" for i in range(len(self.backbone.feature_info))]
            if self.output == "features"
            else ["out"]
        )
        dummy = torch.zeros(1, 3, height, width)
        module = self._module.cpu()
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer chatter about the legacy exporter
            torch.onnx.export(
                module,
                (dummy.contiguous(),),
                buffer,
                dynamo=False,  # the TorchScript exporter needs no onnxscript
                input_names=["images"],
                output_names=output_names,
                dynamic_axes={n: {0: "batch"} for n in ["images", *output_names]},
                opset_version=ONNX_OPSET,
            )
        return buffer.getvalue()

    def _build_session(self, size: tuple[int, int], probe: torch.Tensor) -> Any | None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.num_threads
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        try:
            path = self.onnx_path(*size) if self.cache else None
            if path is not None and path.is_file():
                try:
                    session = ort.InferenceSession(str(path), options, providers=providers)
                except Exception as exc:  # a damaged cache file is rebuilt, not fatal
                    log.warning("re-exporting unreadable ONNX cache %s: %s", path, exc)
                    session = None
            else:
                session = None
            if session is None:
                data = self._export(*size)
                if path is not None:
                    atomic_write_bytes(path, data)
                session = ort.InferenceSession(data, options, providers=providers)
        except Exception as exc:
            log.warning(
                "ONNX Runtime unavailable for %s (%s); using PyTorch", self.backbone.name, exc
            )
            return None
        if not self._matches_torch(session, probe):
            return None
        return session

    def _matches_torch(self, session: Any, probe: torch.Tensor) -> bool:
        fast = self._run_session(session, probe)
        plain = self._run_torch(probe)
        pairs = zip(fast, plain) if isinstance(fast, list) else [(fast, plain)]
        for a, b in pairs:
            if a.shape != b.shape or not torch.allclose(
                a, b, rtol=ONNX_RTOL, atol=ONNX_ATOL * float(b.abs().max().clamp(min=1))
            ):
                log.warning(
                    "ONNX Runtime output of %s differs from PyTorch beyond tolerance; using PyTorch",
                    self.backbone.name,
                )
                return False
        return True

    # -- files ------------------------------------------------------------------------------------
    def extract_paths(
        self,
        paths: Sequence[str | os.PathLike],
        batch_size: int = 32,
        num_workers: int = 0,
        size: int | None = None,
        progress: bool = False,
    ) -> ExtractedFeatures:
        """Load, preprocess and embed image files; unreadable ones are skipped and reported.

        Loading goes through :mod:`beyondvis.io` (EXIF, RGB, pixel cap); ``size`` is the
        centre-crop side (default: the backbone's input size).
        """
        dataset = ImageListDataset(paths, transform=self.backbone.transform(size=size))
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=collate_images,
            pin_memory=self.device.type == "cuda",
        )
        if progress:
            from tqdm import tqdm

            loader = tqdm(loader, desc=f"features {self.backbone.name}", unit="batch")
        chunks: list[Features] = []
        indices: list[int] = []
        good_paths: list[str] = []
        errors: list[BadImage] = []
        for batch in loader:
            errors.extend(batch.errors)
            if batch.images is None:
                continue
            chunks.append(self(batch.images))
            indices.extend(batch.indices)
            good_paths.extend(batch.paths)
        for bad in errors:
            log.warning("skipped %s: %s", bad.path, bad.reason)
        return ExtractedFeatures(self._concat(chunks), indices, good_paths, errors)

    def _concat(self, chunks: list[Features]) -> Features:
        if not chunks:
            if self.output == "pooled":
                return torch.empty(0, self.backbone.num_features)
            return [] if self.output == "features" else torch.empty(0)
        if self.output == "features":
            return [torch.cat(level) for level in zip(*chunks)]
        return torch.cat(chunks)
