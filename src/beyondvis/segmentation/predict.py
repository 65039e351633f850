"""Photo -> sequence of instances with the shipped (or any exported) RSIS model.

>>> from beyondvis.segmentation import Segmenter
>>> seg = Segmenter.load()                       # the packaged CVPPP leaf model, offline
>>> result = seg.predict_path("plant.png", out_dir="out")   # overlay PNG + instances

Each instance: ``{"step", "score", "class", "box": [x0, y0, x1, y1] (pixels), "mask_rle"}``
(COCO RLE of the mask at the original image size, ``counts`` as a string).
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from beyondvis.io import load_image
from beyondvis.segmentation.data import normalize, resize_pair
from beyondvis.segmentation.experiment import (
    InferenceConfig,
    build_backbone,
    load_bundle,
    model_from_checkpoint,
    predict_full,
)
from beyondvis.segmentation.metrics import encode_rle
from beyondvis.utils import atomic_write

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "segmentation"
DEFAULT_MODEL = ASSET_DIR / "rsis_cvppp_lite0.pt"
PREDICT_FORMAT = "beyondvis.rsis.predict/1"


def step_colours(n: int) -> list[tuple[int, int, int]]:
    """One colour per step along the hue circle (red first), as the sequence colour bar of Fig. 6.2."""
    out = []
    for t in range(n):
        r, g, b = colorsys.hsv_to_rgb((t / max(n, 1)) * 0.8, 0.85, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def draw_overlay(image: Image.Image, masks: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """Masks (N, H, W) painted over the photo, coloured by step order, with outlines and a key."""
    from PIL import ImageDraw

    base = np.asarray(image.convert("RGB")).astype(np.float32)
    out = base.copy()
    colours = step_colours(len(masks))
    for mask, colour in zip(masks, colours, strict=True):
        m = mask.astype(bool)
        out[m] = (1 - alpha) * out[m] + alpha * np.asarray(colour, np.float32)
        edge = m & ~_erode(m)
        out[edge] = colour
    canvas = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    if len(masks):  # step-order key along the bottom: first step left
        bar_h = max(6, image.height // 40)
        full = Image.new("RGB", (image.width, image.height + bar_h), (255, 255, 255))
        full.paste(canvas, (0, 0))
        draw = ImageDraw.Draw(full)
        w = image.width / len(masks)
        for t, colour in enumerate(colours):
            draw.rectangle(
                [int(t * w), image.height, int((t + 1) * w) - 1, image.height + bar_h], fill=colour
            )
        canvas = full
    return canvas


def _erode(mask: np.ndarray) -> np.ndarray:
    m = mask.copy()
    m[1:] &= mask[:-1]
    m[:-1] &= mask[1:]
    m[:, 1:] &= mask[:, :-1]
    m[:, :-1] &= mask[:, 1:]
    return m


class Segmenter:
    """An RSIS model with its backbone, input size, classes and inference settings."""

    def __init__(
        self,
        model: torch.nn.Module,
        classes: list[str],
        image_size: int,
        inference: InferenceConfig,
        device: torch.device | str = "cpu",
        source: str = "",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.classes = classes
        self.image_size = image_size
        self.stop_threshold = inference.stop_threshold
        self.mask_threshold = inference.mask_threshold
        self.max_steps = inference.max_steps
        self.source = source
        pre = getattr(model.encoder, "preprocess", None)
        self.mean = pre.mean if pre is not None else (0.485, 0.456, 0.406)
        self.std = pre.std if pre is not None else (0.229, 0.224, 0.225)

    @classmethod
    def load(cls, path: str | Path | None = None, device: torch.device | str = "cpu") -> Segmenter:
        """An exported bundle, a training checkpoint, or (``None``) the shipped CVPPP model."""
        path = Path(path) if path is not None else DEFAULT_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"RSIS model not found: {path}")
        head = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(head, dict) and head.get("kind") == "beyondvis.rsis.bundle":
            model, meta = load_bundle(path)
            inference = InferenceConfig(**meta["inference"])
            return cls(
                model, list(meta["classes"]), int(meta["image_size"]), inference, device, str(path)
            )
        model, cfg, extra = model_from_checkpoint(path)
        if model.encoder is None:
            model.encoder = build_backbone(cfg.encoder)
            for p in model.encoder.parameters():
                p.requires_grad_(False)
        return cls(
            model,
            list(extra.get("classes", [])),
            cfg.data.image_size,
            cfg.inference,
            device,
            str(path),
        )

    def predict_image(self, image: Image.Image) -> dict[str, Any]:
        """Instances of one RGB image at its original size (masks as bool arrays)."""
        img, _ = resize_pair(image, np.zeros((1, 1), np.int64), self.image_size)
        x = normalize(img, self.mean, self.std)[None].to(self.device)
        inference = InferenceConfig(self.stop_threshold, self.mask_threshold, self.max_steps)
        pred = predict_full(self.model, x, inference, (image.height, image.width))
        masks = pred["masks"].numpy()
        instances = []
        for t in range(len(masks)):
            box = pred["boxes"][t].tolist()
            label = int(pred["labels"][t])
            instances.append(
                {
                    "step": t + 1,
                    "score": round(float(pred["stop_scores"][t] * pred["class_scores"][t]), 4),
                    "class": self.classes[label] if label < len(self.classes) else str(label),
                    "box": [
                        round(box[0] * image.width, 1),
                        round(box[1] * image.height, 1),
                        round(box[2] * image.width, 1),
                        round(box[3] * image.height, 1),
                    ],  # fmt: skip
                    "mask_rle": encode_rle(masks[t]),
                }
            )
        return {"instances": instances, "masks": masks}

    def predict_path(self, path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
        """Load (safely), predict, write ``<out_dir>/<stem>_rsis.png``; JSON-ready result."""
        path = Path(path)
        image = load_image(path)
        result = self.predict_image(image)
        record: dict[str, Any] = {
            "format": PREDICT_FORMAT,
            "image": str(path),
            "width": image.width,
            "height": image.height,
            "instances": result["instances"],
        }
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            target = out / f"{path.stem}_rsis.png"
            with atomic_write(target, "wb") as handle:
                draw_overlay(image, result["masks"]).save(handle, format="PNG")
            target.chmod(0o644)  # a user's output, not a private temporary file
            record["overlay"] = str(target)
        return record
