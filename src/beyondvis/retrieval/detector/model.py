"""Faster R-CNN on the project's backbones, as a feature extractor for instance search.

``arch="lite"`` (the default) puts torchvision's ``FasterRCNN`` (RPN, RoIAlign, box head) on a
``beyondvis.backbones`` network, EfficientNet-Lite0 with its real ImageNet weights by default.
Offline there are no detection weights for it: the RPN and box head start from a seeded random
initialisation, which makes the off-the-shelf proposals a spread of anchor boxes, and
fine-tuning on the query objects (``finetune.py``) trains them. A detection checkpoint of this
architecture (``weights=PATH``, e.g. one saved with an index) loads strictly.

``arch="resnet50_fpn"`` is torchvision's ``fasterrcnn_resnet50_fpn`` layout, for users who have
its COCO checkpoint (``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``): from ``weights=PATH`` or the
torch hub cache; nothing is downloaded, and a missing file is a one-line error naming it.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import MultiScaleRoIAlign

from beyondvis.backbones.weights import (
    WeightsNotFoundError,
    find_torchvision_weights,
    load_state_dict_file,
)

ARCHS = ("lite", "resnet50_fpn")
COCO_URL = "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
COCO_CLASSES = 91
# FT_fc trains the classification branch only: the box head (with its 1x1 reduction) and the
# classifier / box regressor; the backbone and the RPN keep their weights
FC_PREFIXES = (
    "detector.roi_heads.box_roi_pool",
    "detector.roi_heads.box_head",
    "detector.roi_heads.box_predictor",
)


@dataclass
class DetectorConfig:
    """The network that turns a photo into IPA / RPA descriptors and proposal class scores."""

    arch: str = "lite"  # lite: a beyondvis backbone; resnet50_fpn: torchvision's COCO layout
    backbone: str = "efficientnet_lite0"
    # forward_features level of the map the RPN, RoIAlign and IPA read: 4 = the stride-32
    # 1280-D head (after its ReLU6; pooled descriptors are much better there, docs/retrieval.md),
    # 3 = the stride-16 112-D block output (a linear bottleneck: signed values)
    level: int = 4
    pretrained: bool = True  # ImageNet weights of the backbone (False: random, for tests)
    weights: str | None = None  # a detection checkpoint (state dict) of this architecture
    max_side: int = 384  # long side of the network input (thesis: short side 600)
    proposals: int = 300  # top RPN proposals kept per photo (after NMS), thesis: 300
    rpn_nms: float = 0.7
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    roi_size: int = 7
    head_channels: int = 128  # 1x1 reduction before the box head's first FC layer
    representation: int = 512  # width of the box head's FC layers
    seed: int = 0  # initialisation of the RPN and box head without detection weights
    fpn_level: str = "2"  # resnet50_fpn: the FPN map pooled for IPA and the query box (stride 16)
    classes: list[str] = field(default_factory=list)  # fine-tuned query classes (no background)
    finetune: str | None = None  # fc | all once fine-tuned on the query objects

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown detector architecture {self.arch!r}; choose from {ARCHS}")
        if self.proposals < 1 or self.max_side < 32:
            raise ValueError("proposals must be >= 1 and max_side >= 32")
        self.anchor_sizes = tuple(int(s) for s in self.anchor_sizes)
        self.aspect_ratios = tuple(float(a) for a in self.aspect_ratios)

    @classmethod
    def from_dict(cls, d: dict) -> DetectorConfig:
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class _Body(nn.Module):
    """A beyondvis backbone as a FasterRCNN body: one map of ``forward_features``."""

    def __init__(self, backbone: nn.Module, level: int) -> None:
        super().__init__()
        if not 0 <= level < len(backbone.feature_info):
            raise ValueError(
                f"{backbone.name} has levels 0..{len(backbone.feature_info) - 1}, got {level}"
            )
        self.backbone = backbone
        self.level = level
        self.out_channels = backbone.feature_info[level].channels
        self.stride = backbone.feature_info[level].stride

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict([("0", self.backbone.forward_features(x)[self.level])])


class _ReducedRPNHead(nn.Module):
    """1x1 reduction to 256 channels, then torchvision's RPN head: its 3x3 conv on the
    1280-D map would hold 15M weights, saved with every fine-tuned index."""

    def __init__(self, in_channels: int, num_anchors: int, width: int = 256) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, width, 1)
        self.head = RPNHead(width, num_anchors)

    def forward(self, x: list[torch.Tensor]):
        return self.head([F.relu(self.reduce(f)) for f in x])


class _ReducedRoIPool(MultiScaleRoIAlign):
    """1x1 reduction of the map, then RoIAlign: the box head reads 128 channels, not 1280.

    A 1x1 convolution and RoIAlign's bilinear sampling are both linear, so reducing before
    pooling gives exactly the features of pooling before reducing, at a tenth of the cost
    (RoIAlign of 300 proposals on the 1280-D map took 3 of 6.5 s per photo on this CPU)."""

    def __init__(self, in_channels: int, reduced: int, roi_size: int) -> None:
        # a MultiScaleRoIAlign subclass: torchvision's FasterRCNN accepts no other RoI pooler
        super().__init__(["0"], roi_size, sampling_ratio=2)
        self.reduce = nn.Conv2d(in_channels, reduced, 1)

    def forward(self, x, boxes, image_shapes):
        return super().forward({"0": self.reduce(x["0"])}, boxes, image_shapes)


class _BoxHead(nn.Module):
    """ReLU on the reduced RoI features, then two FC layers (torchvision's TwoMLPHead)."""

    def __init__(self, reduced: int, roi_size: int, width: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(reduced * roi_size * roi_size, width)
        self.fc7 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x).flatten(1)
        return F.relu(self.fc7(F.relu(self.fc6(x))))


def _frozen_bn_train(module: nn.Module) -> None:
    # the query set is a few dozen photos, batches of 2: BatchNorm statistics stay those of
    # ImageNet (as torchvision freezes them in its detectors)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class DetectorNet(nn.Module):
    """A torchvision ``FasterRCNN`` plus what instance search reads from it.

    Calling it in training mode with ``(images, targets)`` returns torchvision's loss dict
    (what the engine's Trainer optimises); :meth:`encode` runs one photo in eval mode and
    returns its feature map, proposals, RoI features and proposal class scores.
    """

    def __init__(self, config: DetectorConfig, num_classes: int | None = None) -> None:
        super().__init__()
        self.config = config
        classes = num_classes or (len(config.classes) + 1 if config.classes else 2)
        generator = torch.random.fork_rng()
        with generator:
            torch.manual_seed(config.seed)
            if config.arch == "lite":
                self.detector = self._build_lite(config, classes)
            else:
                self.detector = self._build_fpn(config)
                if classes != COCO_CLASSES:
                    self.set_classes(classes)
        self.num_classes = classes

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _build_lite(config: DetectorConfig, classes: int) -> FasterRCNN:
        from beyondvis.backbones import create_backbone

        pretrained = config.pretrained and config.weights is None
        backbone = create_backbone(config.backbone, pretrained=pretrained)
        body = _Body(backbone, config.level)
        anchors = AnchorGenerator((config.anchor_sizes,), (config.aspect_ratios,))
        pre = backbone.preprocess
        c = body.out_channels
        return FasterRCNN(
            body,
            num_classes=None,
            min_size=config.max_side,
            max_size=config.max_side,
            image_mean=list(pre.mean),
            image_std=list(pre.std),
            rpn_anchor_generator=anchors,
            rpn_head=_ReducedRPNHead(c, anchors.num_anchors_per_location()[0]),
            rpn_pre_nms_top_n_test=max(1000, 2 * config.proposals),
            rpn_post_nms_top_n_test=config.proposals,
            rpn_pre_nms_top_n_train=1000,
            rpn_post_nms_top_n_train=500,
            rpn_nms_thresh=config.rpn_nms,
            box_roi_pool=_ReducedRoIPool(c, config.head_channels, config.roi_size),
            box_head=_BoxHead(config.head_channels, config.roi_size, config.representation),
            box_predictor=FastRCNNPredictor(config.representation, classes),
            # fine-tuning sees one object box per photo: 32 sampled RoIs, up to half of them
            # positive, instead of torchvision's 512 at 1/4, or background swamps the few
            # proposals that overlap the query object and its class score falls at first
            box_batch_size_per_image=32,
            box_positive_fraction=0.5,
        )

    @staticmethod
    def _build_fpn(config: DetectorConfig) -> FasterRCNN:
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        model = fasterrcnn_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=COCO_CLASSES,
            min_size=config.max_side,
            max_size=config.max_side,
            rpn_post_nms_top_n_test=config.proposals,
            rpn_nms_thresh=config.rpn_nms,
            box_batch_size_per_image=128,
        )
        if config.weights is None and config.pretrained:
            path = find_torchvision_weights("fasterrcnn_resnet50_fpn", COCO_URL, None)
            model.load_state_dict(load_state_dict_file(path), strict=True)
        return model

    def set_classes(self, num_classes: int) -> None:
        """A new classifier and box regressor for ``num_classes`` (query objects + background),
        the layers fine-tuning replaces (thesis Sec. 3.3)."""
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed + 1)
            width = self.detector.roi_heads.box_predictor.cls_score.in_features
            self.detector.roi_heads.box_predictor = FastRCNNPredictor(width, num_classes)
        self.num_classes = num_classes

    @property
    def body(self) -> nn.Module:
        b = self.detector.backbone
        return b.body if self.config.arch == "resnet50_fpn" else b.backbone

    @property
    def stride(self) -> int:
        if self.config.arch == "lite":
            return self.detector.backbone.stride
        return 2 ** (int(self.config.fpn_level) + 2)

    def frozen_prefixes(self) -> tuple[str, ...]:
        """Parameters FT_all leaves alone: the first two conv blocks (thesis: up to conv2)."""
        if self.config.arch == "lite":
            return ("detector.backbone.backbone.model.conv_stem", "detector.backbone.backbone."
                    "model.bn1", "detector.backbone.backbone.model.blocks.0",
                    "detector.backbone.backbone.model.blocks.1")  # fmt: skip
        return ("detector.backbone.body.conv1", "detector.backbone.body.bn1",
                "detector.backbone.body.layer1")  # fmt: skip

    def set_trainable(self, mode: str) -> list[str]:
        """``fc``: only the box head and classifier (FT_fc); ``all``: everything after the first
        two conv blocks, RPN included (FT_all). Returns the trainable parameter names."""
        if mode not in ("fc", "all"):
            raise ValueError(f"unknown fine-tuning mode {mode!r}; choose fc or all")
        frozen = self.frozen_prefixes()
        names = []
        for name, p in self.named_parameters():
            if mode == "fc":
                train = name.startswith(FC_PREFIXES)
            else:
                train = not name.startswith(frozen)
            p.requires_grad_(train)
            if train:
                names.append(name)
        return names

    def train(self, mode: bool = True) -> DetectorNet:
        super().train(mode)
        if mode:
            _frozen_bn_train(self.body)
        return self

    # ------------------------------------------------------------------ weights
    def load_weights(self, path: str | os.PathLike) -> None:
        """A detection checkpoint of this architecture (strict; the classifier may differ in
        its number of classes, then it is re-initialised for this net's classes)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"detector weights file {str(path)!r} does not exist")
        state = load_state_dict_file(path)
        if not any(k.startswith("detector.") for k in state):
            state = {f"detector.{k}": v for k, v in state.items()}
        own = self.state_dict()
        cls_key = "detector.roi_heads.box_predictor.cls_score.weight"
        if cls_key in state and state[cls_key].shape != own[cls_key].shape:
            keep = {k: v for k, v in state.items() if "box_predictor" not in k}
            missing = [k for k in own if k not in keep and "box_predictor" not in k]
            if missing:
                raise ValueError(
                    f"{path}: not a {self.config.arch} detector ({missing[0]} missing)"
                )
            self.load_state_dict({**own, **keep}, strict=True)
            return
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(f"{path}: not a {self.config.arch} detector ({first})") from None

    # ------------------------------------------------------------------ encoding
    def forward(self, images, targets=None):
        return self.detector(images, targets)

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> dict[str, np.ndarray]:
        """One photo (``(3, H, W)`` float in 0..1) -> its valid feature map ``fmap (C, h, w)``
        (the padding of the batched input cut off), ``boxes (P, 4)`` of the top proposals in
        the photo's pixels and ``scores (P, K)`` their class probabilities (background first).
        """
        was_training = self.training
        self.eval()
        try:
            det = self.detector
            original = (int(image.shape[-2]), int(image.shape[-1]))
            batch, _ = det.transform([image])
            features = det.backbone(batch.tensors)
            proposals, _ = det.rpn(batch, features)
            roi_pool = det.roi_heads.box_roi_pool
            rois = roi_pool(features, proposals, batch.image_sizes)
            logits, _ = det.roi_heads.box_predictor(det.roi_heads.box_head(rois))
            scores = torch.softmax(logits, dim=-1)
            h, w = batch.image_sizes[0]
            key = "0" if self.config.arch == "lite" else self.config.fpn_level
            fmap = features[key][0]
            stride = self.stride
            fmap = fmap[:, : max(1, math.ceil(h / stride)), : max(1, math.ceil(w / stride))]
            boxes = resize_boxes(proposals[0], (h, w), original)
        finally:
            self.train(was_training)
        return {
            "fmap": fmap.float().cpu().numpy(),
            "boxes": boxes.float().cpu().numpy(),
            "scores": scores.float().cpu().numpy(),
        }

    @torch.no_grad()
    def classify_boxes(self, image: torch.Tensor, boxes: torch.Tensor) -> np.ndarray:
        """Class probabilities ``(N, K)`` of given pixel boxes ``(N, 4)`` of one photo (the
        fine-tuned head applied to the query box: which query object it shows)."""
        was_training = self.training
        self.eval()
        try:
            det = self.detector
            original = (int(image.shape[-2]), int(image.shape[-1]))
            batch, _ = det.transform([image])
            features = det.backbone(batch.tensors)
            scaled = resize_boxes(boxes.float(), original, batch.image_sizes[0])
            rois = det.roi_heads.box_roi_pool(features, [scaled], batch.image_sizes)
            logits, _ = det.roi_heads.box_predictor(det.roi_heads.box_head(rois))
        finally:
            self.train(was_training)
        return torch.softmax(logits, dim=-1).cpu().numpy()


def build_detector(config: DetectorConfig) -> DetectorNet:
    """The detector of ``config``, with ``config.weights`` loaded when given."""
    net = DetectorNet(config)
    if config.weights is not None:
        net.load_weights(config.weights)
    net.eval()
    return net


def to_tensor(image) -> torch.Tensor:
    """PIL RGB photo -> ``(3, H, W)`` float tensor in 0..1 (the detector normalises it)."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
