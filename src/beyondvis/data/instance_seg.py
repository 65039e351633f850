"""Instance-segmentation datasets in their official layouts, read into one record type.

Every reader returns :class:`InstanceSplits` of :class:`InstanceRecord`; ``read_instances``
turns a record into an RGB image, an instance label map (0 = background, k = object k) and the
class index of each object. Images with no objects are kept (their label map is all zeros).

Formats:

* ``label_png``: one indexed PNG per image, pixel value k = instance k (CVPPP
  ``plantNNN_label.png``, Penn-Fudan ``PedMasks/*_mask.png``); a single class.
* ``voc``: Pascal VOC 2012 ``SegmentationObject/<id>.png`` (instances, 255 = void border) with
  ``SegmentationClass/<id>.png`` giving each instance's class.
* ``sbd``: Semantic Boundaries Dataset ``dataset/inst/<id>.mat`` (``GTinst.Segmentation``,
  ``GTinst.Categories``), images in ``dataset/img/<id>.jpg``.
* ``cityscapes``: ``gtFine/<split>/<city>/<name>_gtFine_instanceIds.png`` (value
  ``class_id * 1000 + k`` for instance classes), images in ``leftImg8bit``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from beyondvis.errors import BeyondvisError
from beyondvis.io import ImageLoadError, load_image

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip
# Cityscapes instance classes (labelIds 24..33 that have instances), the 8 of the benchmark.
CITYSCAPES_CLASSES = {24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus",
                      31: "train", 32: "motorcycle", 33: "bicycle"}  # fmt: skip


class InstanceDataError(BeyondvisError, ValueError):
    """A dataset folder or annotation is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class InstanceRecord:
    item_id: str
    image: Path
    annotation: Path
    format: str  # label_png | voc | sbd | cityscapes
    class_annotation: Path | None = None  # voc: SegmentationClass png


@dataclass
class InstanceSplits:
    name: str
    classes: list[str]
    train: list[InstanceRecord]
    val: list[InstanceRecord]
    test: list[InstanceRecord]
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[InstanceRecord]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {name!r}")
        return getattr(self, name)


@dataclass
class InstanceSample:
    image: Image.Image
    labels_map: np.ndarray  # (H, W) int32, 0 = background, k = object k (1..N)
    classes: np.ndarray  # (N,) int64 class index of object k+1

    @property
    def num_objects(self) -> int:
        return len(self.classes)

    def masks(self) -> np.ndarray:
        """(N, H, W) bool."""
        ids = np.arange(1, self.num_objects + 1)
        return self.labels_map[None] == ids[:, None, None]


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InstanceDataError(f"{what} not found: {path}")
    return path


def _read_png_indices(path: Path) -> np.ndarray:
    """Pixel indices of an indexed/grey PNG; RGB label images map each colour to an index."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                return np.asarray(im).astype(np.int64)
            rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    except (OSError, ValueError) as exc:
        raise InstanceDataError(f"cannot read annotation {path}: {exc}") from None
    code = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
    _, inverse = np.unique(code, return_inverse=True)  # black (0) sorts first -> background
    return inverse.reshape(code.shape)


def relabel(instance_map: np.ndarray, ignore: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the non-zero values of ``instance_map`` to 1..N (in increasing value order)."""
    values = np.unique(instance_map)
    values = values[(values != 0) & ~np.isin(values, list(ignore))]
    out = np.zeros(instance_map.shape, dtype=np.int32)
    for k, v in enumerate(values, start=1):
        out[instance_map == v] = k
    return out, values


def read_instances(record: InstanceRecord) -> InstanceSample:
    """Load one record; raises :class:`ImageLoadError` / :class:`InstanceDataError` when bad."""
    image = load_image(record.image)
    labels_map, classes = read_annotation(record)
    if labels_map.shape != (image.height, image.width):
        raise InstanceDataError(
            f"{record.annotation}: annotation is {labels_map.shape[1]}x{labels_map.shape[0]}, "
            f"image is {image.width}x{image.height}"
        )
    return InstanceSample(image=image, labels_map=labels_map, classes=classes)


def read_annotation(record: InstanceRecord) -> tuple[np.ndarray, np.ndarray]:
    """Only the annotation of a record: (label map (H, W) int32, classes (N,) int64)."""
    if record.format == "label_png":
        labels_map, values = relabel(_read_png_indices(record.annotation))
        classes = np.zeros(len(values), dtype=np.int64)
    elif record.format == "voc":
        inst = _read_png_indices(record.annotation)
        labels_map, values = relabel(inst, ignore=(255,))
        if record.class_annotation is None:
            raise InstanceDataError(f"{record.item_id}: VOC record without SegmentationClass")
        cls_map = _read_png_indices(record.class_annotation)
        classes = np.array(
            [_majority(cls_map[inst == v], record) - 1 for v in values], dtype=np.int64
        )
    elif record.format == "sbd":
        labels_map, classes = _read_sbd(record.annotation)
    elif record.format == "cityscapes":
        ids = _read_png_indices(record.annotation)
        ids = np.where(np.isin(ids // 1000, list(CITYSCAPES_CLASSES)) & (ids >= 1000), ids, 0)
        labels_map, values = relabel(ids)
        order = sorted(CITYSCAPES_CLASSES)
        classes = np.array([order.index(int(v) // 1000) for v in values], dtype=np.int64)
    else:
        raise InstanceDataError(f"unknown annotation format {record.format!r}")
    return labels_map, classes


def _majority(values: np.ndarray, record: InstanceRecord) -> int:
    values = values[(values > 0) & (values < 255)]
    if values.size == 0:
        raise InstanceDataError(f"{record.class_annotation}: an instance has no class pixels")
    return int(np.bincount(values).argmax())


def _read_sbd(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
        gt = mat["GTinst"]
        seg = np.asarray(gt.Segmentation).astype(np.int64)
        cats = np.atleast_1d(np.asarray(gt.Categories)).astype(np.int64)
    except (OSError, ValueError, KeyError, AttributeError, NotImplementedError) as exc:
        raise InstanceDataError(f"cannot read SBD annotation {path}: {exc}") from None
    labels_map, values = relabel(seg)
    classes = np.array([cats[int(v) - 1] - 1 for v in values], dtype=np.int64)
    return labels_map, classes


def split_records(
    records: Sequence[InstanceRecord],
    test_fraction: float,
    val_fraction: float,
    seed: int = 0,
) -> tuple[list[InstanceRecord], list[InstanceRecord], list[InstanceRecord]]:
    """Deterministic train/val/test: records sorted by id and permuted with ``seed``."""
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ValueError("test_fraction and val_fraction must be in [0, 1) and sum below 1")
    ordered = sorted(records, key=lambda r: r.item_id)
    order = np.random.RandomState(seed).permutation(len(ordered)).tolist()
    n_test = int(round(len(ordered) * test_fraction))
    n_val = int(round(len(ordered) * val_fraction))
    test_ids = set(order[:n_test])
    val_ids = set(order[n_test : n_test + n_val])
    train = [r for i, r in enumerate(ordered) if i not in test_ids and i not in val_ids]
    val = [r for i, r in enumerate(ordered) if i in val_ids]
    test = [r for i, r in enumerate(ordered) if i in test_ids]
    return train, val, test


def _ids_file(path: Path) -> list[str]:
    if not path.is_file():
        raise InstanceDataError(f"image list not found: {path}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_voc_sbd(
    voc_root: str | os.PathLike,
    sbd_root: str | os.PathLike | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
) -> InstanceSplits:
    """Pascal VOC 2012 instances (+ SBD for training, as the thesis does).

    ``voc_root`` is ``VOCdevkit/VOC2012`` (or a folder containing ``VOCdevkit``); ``sbd_root``
    the SBD ``benchmark_RELEASE`` (or its ``dataset`` folder). Test = VOC ``val`` (1,449
    images); train = VOC ``train`` + SBD ``train``/``val`` minus every VOC val image;
    validation = ``val_fraction`` of that, deterministic.
    """
    root = Path(voc_root)
    if (root / "VOCdevkit" / "VOC2012").is_dir():
        root = root / "VOCdevkit" / "VOC2012"
    sets = require_dir(root / "ImageSets" / "Segmentation", "VOC ImageSets/Segmentation")

    def voc_record(i: str) -> InstanceRecord:
        return InstanceRecord(
            item_id=f"voc/{i}",
            image=root / "JPEGImages" / f"{i}.jpg",
            annotation=root / "SegmentationObject" / f"{i}.png",
            format="voc",
            class_annotation=root / "SegmentationClass" / f"{i}.png",
        )

    test_ids = _ids_file(sets / "val.txt")
    train_ids = _ids_file(sets / "train.txt")
    held_out = set(test_ids)
    train = [voc_record(i) for i in train_ids if i not in held_out]
    notes = [f"VOC 2012: {len(train)} train, {len(test_ids)} val (test) images"]
    if sbd_root is not None:
        sbd = Path(sbd_root)
        if (sbd / "dataset").is_dir():
            sbd = sbd / "dataset"
        require_dir(sbd / "inst", "SBD dataset/inst")
        seen = {r.item_id.split("/", 1)[1] for r in train}
        extra = []
        for name in ("train.txt", "val.txt"):
            if (sbd / name).is_file():
                for i in _ids_file(sbd / name):
                    if i not in held_out and i not in seen:
                        seen.add(i)
                        extra.append(
                            InstanceRecord(f"sbd/{i}", sbd / "img" / f"{i}.jpg",
                                           sbd / "inst" / f"{i}.mat", "sbd")
                        )  # fmt: skip
        train += extra
        notes.append(f"SBD: {len(extra)} more training images (VOC val excluded)")
    tr, val, _ = split_records(train, 0.0, val_fraction, seed)
    test = [voc_record(i) for i in test_ids]
    return InstanceSplits("voc_sbd", list(VOC_CLASSES), tr, val, test, notes)


def read_cityscapes_instances(root: str | os.PathLike) -> InstanceSplits:
    """Cityscapes fine annotations: train / val (the public test split has no labels).

    Test = the official ``val`` (500 images, what the thesis reports on); validation = a
    deterministic 5% of ``train``.
    """
    root = Path(root)
    gt = require_dir(root / "gtFine", "Cityscapes gtFine")
    images = require_dir(root / "leftImg8bit", "Cityscapes leftImg8bit")

    def records(split: str) -> list[InstanceRecord]:
        out = []
        for ann in sorted((gt / split).glob("*/*_gtFine_instanceIds.png")):
            stem = ann.name[: -len("_gtFine_instanceIds.png")]
            image = images / split / ann.parent.name / f"{stem}_leftImg8bit.png"
            out.append(InstanceRecord(f"{split}/{stem}", image, ann, "cityscapes"))
        return out

    train_all = records("train")
    test = records("val")
    if not train_all and not test:
        raise InstanceDataError(f"no *_gtFine_instanceIds.png under {gt}")
    train, val, _ = split_records(train_all, 0.0, 0.05)
    names = [CITYSCAPES_CLASSES[k] for k in sorted(CITYSCAPES_CLASSES)]
    return InstanceSplits("cityscapes", names, train, val, test)


def label_png_records(
    pairs: Sequence[tuple[str, Path, Path]],
) -> list[InstanceRecord]:
    return [InstanceRecord(i, img, ann, "label_png") for i, img, ann in pairs]


__all__ = [
    "CITYSCAPES_CLASSES",
    "VOC_CLASSES",
    "ImageLoadError",
    "InstanceDataError",
    "InstanceRecord",
    "InstanceSample",
    "InstanceSplits",
    "read_cityscapes_instances",
    "read_annotation",
    "read_instances",
    "read_voc_sbd",
    "split_records",
]
