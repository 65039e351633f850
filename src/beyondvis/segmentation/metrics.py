"""Instance segmentation metrics of thesis ch. 6.

* CVPPP (Scharr et al. 2016): best Dice ``BD(A, B) = mean_i max_j Dice(A_i, B_j)``, symmetric
  best Dice ``SBD = min(BD(pred, gt), BD(gt, pred))``, difference in count ``DiC = #pred - #gt``
  and ``|DiC|``.
* Mask AP (COCO protocol, pycocotools) at IoU 0.5 / 0.6 / 0.7 / 0.8 and over 0.5:0.95.
* Object order (Table 6.3a): Kendall tau between the predicted order and right-to-left,
  bottom-to-top and large-to-small orders (centre of mass and area of each predicted mask).
* Error analysis (Fig. 6.3b, d): IoU of the matched ground truth by time step and by object size.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import kendalltau

AP_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
SIZE_BINS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.25, 1.01)  # object area as a fraction of the image
ORDERS = ("r2l", "b2t", "l2s")


def _flat(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks).astype(bool)
    return masks.reshape(masks.shape[0], -1)


def pairwise_dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dice between every mask of ``a`` (N, H, W) and ``b`` (M, H, W) -> (N, M)."""
    fa, fb = _flat(a).astype(np.float64), _flat(b).astype(np.float64)
    inter = fa @ fb.T
    sizes = fa.sum(1)[:, None] + fb.sum(1)[None, :]
    return np.where(sizes > 0, 2.0 * inter / np.maximum(sizes, 1e-12), 0.0)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fa, fb = _flat(a).astype(np.float64), _flat(b).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def best_dice(a: np.ndarray, b: np.ndarray) -> float:
    """``BD(a, b)``: for each mask of ``a`` its best Dice in ``b``, averaged over ``a``.

    Conventions for empty sets: BD(empty, empty) = 1, otherwise an empty side scores 0.
    """
    if len(a) == 0:
        return 1.0 if len(b) == 0 else 0.0
    if len(b) == 0:
        return 0.0
    return float(pairwise_dice(a, b).max(axis=1).mean())


def symmetric_best_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    return min(best_dice(pred, gt), best_dice(gt, pred))


def difference_in_count(pred: np.ndarray | int, gt: np.ndarray | int) -> int:
    n_pred = pred if isinstance(pred, int | np.integer) else len(pred)
    n_gt = gt if isinstance(gt, int | np.integer) else len(gt)
    return int(n_pred) - int(n_gt)


def order_correlations(masks: np.ndarray) -> dict[str, float]:
    """Kendall tau of the predicted order against r2l, b2t and l2s orders (NaN below 2 masks).

    Positive tau for ``r2l`` means the model tends to find right-hand objects first. A criterion
    that does not vary (all masks with the same area, say) gives NaN.
    """
    masks = np.asarray(masks).astype(bool)
    n = len(masks)
    if n < 2:
        return {k: float("nan") for k in ORDERS}
    ys, xs = np.mgrid[: masks.shape[1], : masks.shape[2]]
    area = masks.reshape(n, -1).sum(1).astype(np.float64)
    safe = np.maximum(area, 1.0)
    cx = (masks * xs).reshape(n, -1).sum(1) / safe
    cy = (masks * ys).reshape(n, -1).sum(1) / safe
    step = np.arange(n)
    # tau(step, key) > 0 when the order of steps follows increasing key: r2l = decreasing x.
    keys = {"r2l": -cx, "b2t": -cy, "l2s": -area}
    out = {}
    for name, key in keys.items():
        if np.all(key == key[0]):
            out[name] = float("nan")
            continue
        out[name] = float(kendalltau(step, key).statistic)
    return out


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of one (H, W) mask, with ``counts`` as a str (JSON-safe)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"]}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    from pycocotools import mask as mask_utils

    rle = dict(rle)
    if isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(bool)


class SegmentationMetrics:
    """Accumulate predictions and ground truth image by image; :meth:`compute` gives the report.

    ``add(pred_masks, scores, pred_labels, gt_masks, gt_labels)``: masks (N, H, W) bool at the
    same resolution, ``scores`` the per-mask confidence used to rank detections for AP.
    """

    def __init__(self, num_classes: int = 1, class_names: Sequence[str] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(num_classes)]
        )
        self.sbd: list[float] = []
        self.dic: list[int] = []
        self.orders: dict[str, list[float]] = {k: [] for k in ORDERS}
        self.iou_by_step: dict[int, list[float]] = defaultdict(list)
        self.iou_by_size: dict[int, list[float]] = defaultdict(list)
        self.missed_by_size: dict[int, int] = defaultdict(int)
        self._gt: list[dict[str, Any]] = []
        self._dt: list[dict[str, Any]] = []
        self._images: list[dict[str, Any]] = []

    def add(
        self,
        pred_masks: np.ndarray,
        scores: np.ndarray,
        pred_labels: np.ndarray,
        gt_masks: np.ndarray,
        gt_labels: np.ndarray,
    ) -> None:
        pred_masks = np.asarray(pred_masks).astype(bool)
        gt_masks = np.asarray(gt_masks).astype(bool)
        image_id = len(self._images) + 1
        h, w = gt_masks.shape[1:] if gt_masks.ndim == 3 and len(gt_masks) else pred_masks.shape[1:]
        self._images.append({"id": image_id, "height": int(h), "width": int(w)})
        self.sbd.append(symmetric_best_dice(pred_masks, gt_masks))
        self.dic.append(difference_in_count(len(pred_masks), len(gt_masks)))
        for name, tau in order_correlations(pred_masks).items():
            if not np.isnan(tau):
                self.orders[name].append(tau)
        for mask, label in zip(gt_masks, gt_labels, strict=True):
            self._gt.append(
                {
                    "id": len(self._gt) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "segmentation": encode_rle(mask),
                    "area": float(mask.sum()),
                    "bbox": _bbox(mask),
                    "iscrowd": 0,
                }
            )
        for mask, score, label in zip(pred_masks, scores, pred_labels, strict=True):
            self._dt.append(
                {
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "segmentation": encode_rle(mask),
                    "score": float(score),
                }
            )
        # Error analysis: one-to-one IoU matching between steps and objects.
        area = h * w
        if len(gt_masks):
            sizes = gt_masks.reshape(len(gt_masks), -1).sum(1) / max(area, 1)
            bins = np.clip(np.digitize(sizes, SIZE_BINS) - 1, 0, len(SIZE_BINS) - 2)
            matched_iou = np.zeros(len(gt_masks))
            if len(pred_masks):
                iou = pairwise_iou(pred_masks, gt_masks)
                rows, cols = linear_sum_assignment(-iou)
                for r, c in zip(rows, cols, strict=True):
                    self.iou_by_step[int(r)].append(float(iou[r, c]))
                    matched_iou[c] = iou[r, c]
            for c in range(len(gt_masks)):
                self.iou_by_size[int(bins[c])].append(float(matched_iou[c]))
                if matched_iou[c] < 0.5:
                    self.missed_by_size[int(bins[c])] += 1

    def mask_ap(self) -> dict[str, float]:
        """COCO mask AP (all areas, up to 100 detections per image) via pycocotools."""
        if not self._gt:
            return {
                "ap": float("nan"),
                **{f"ap{int(t * 100)}": float("nan") for t in AP_THRESHOLDS},
            }
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        gt = COCO()
        gt.dataset = {
            "images": self._images,
            "annotations": self._gt,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            if not self._dt:
                return {"ap": 0.0, **{f"ap{int(t * 100)}": 0.0 for t in AP_THRESHOLDS}}
            dt = gt.loadRes([dict(d) for d in self._dt])
            ev = COCOeval(gt, dt, iouType="segm")
            ev.params.maxDets = [1, 10, 100]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        precision = ev.eval["precision"]  # (iou thresholds, recall, classes, areas, maxdets)
        out = {"ap": float(ev.stats[0])}
        for t in AP_THRESHOLDS:
            idx = int(np.argmin(np.abs(ev.params.iouThrs - t)))
            p = precision[idx, :, :, 0, -1]
            p = p[p > -1]
            out[f"ap{int(round(t * 100))}"] = float(p.mean()) if p.size else 0.0
        return out

    def compute(self) -> dict[str, Any]:
        """Plain dict: ``sbd``, ``dic``, ``abs_dic`` (means, and their std), ``ap*``, orders."""
        n = len(self.sbd)
        dic = np.asarray(self.dic, dtype=np.float64)
        sbd = np.asarray(self.sbd, dtype=np.float64)
        report: dict[str, Any] = {
            "num_images": n,
            "sbd": float(sbd.mean()) if n else float("nan"),
            "sbd_std": float(sbd.std()) if n else float("nan"),
            "dic": float(dic.mean()) if n else float("nan"),
            "abs_dic": float(np.abs(dic).mean()) if n else float("nan"),
            "abs_dic_std": float(np.abs(dic).std()) if n else float("nan"),
        }
        report.update(self.mask_ap())
        report["order_kendall_tau"] = {
            k: (float(np.mean(v)) if v else float("nan")) for k, v in self.orders.items()
        }
        report["iou_by_step"] = {
            str(k + 1): float(np.mean(v)) for k, v in sorted(self.iou_by_step.items())
        }
        labels = [
            f"{SIZE_BINS[i] * 100:g}-{min(SIZE_BINS[i + 1], 1.0) * 100:g}%"
            for i in range(len(SIZE_BINS) - 1)
        ]
        report["iou_by_size"] = {
            labels[k]: float(np.mean(v)) for k, v in sorted(self.iou_by_size.items())
        }
        report["missed_by_size"] = {
            labels[k]: int(v) for k, v in sorted(self.missed_by_size.items())
        }
        return report


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]


def plot_error_analysis(report: dict[str, Any], path: str) -> None:
    """Fig. 6.3 (b, d): IoU by time step and by object size, side by side (PNG/PDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from beyondvis.utils import atomic_write

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    panels = [
        (report["iou_by_step"], "tab:blue", "time step", "mean IoU of the matched object"),
        (
            report["iou_by_size"],
            "tab:green",
            "object size (% of the image)",
            "mean IoU (0 = missed)",
        ),
    ]
    for ax, (values, color, xlabel, ylabel) in zip(axes, panels):
        ax.bar(range(len(values)), list(values.values()), color=color)
        ax.set_xticks(range(len(values)), list(values))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1)
    fig.tight_layout()
    suffix = str(path).rsplit(".", 1)[-1].lower()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="pdf" if suffix == "pdf" else "png", dpi=120)
    plt.close(fig)
    os.chmod(path, 0o644)  # a user's output, not a private temporary file
