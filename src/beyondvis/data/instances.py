"""A synthetic-instance benchmark on real pixels, written in the Oxford ground-truth format.

No landmark benchmark is available offline, so objects with real instance masks (Penn-Fudan
pedestrians, CVPPP plants) are cut from their photos and pasted, transformed (scale, rotation,
perspective, lighting, mirroring), into other real photos (recipe photos, MIML scenes,
Penn-Fudan street scenes). Each query is the source photo with the object's box, as in Oxford;
the database never contains the source photos, so a query cannot trivially match itself.

Relevance follows Oxford's definitions: an instance that is large and fully visible is *good*,
a small one (under 15% of the scene height, TRECVid-INS-like) or a strongly transformed one is
*ok*, and one of which less than 25% is visible (cut by the border) is *junk*.

Layout written under ``out``::

    images/<id>.jpg           database photos (pasted scenes and distractors)
    queries/<id>.jpg          query photos (the object sources)
    gt_files/<q>_query.txt    "<query id> x0 y0 x1 y1"  + <q>_good/ok/junk.txt
    annotations.json          every pasted instance: image, query, box, visible fraction, label
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from beyondvis.data.oxford import OxfordQuery, write_gt_files
from beyondvis.io import ImageLoadError, load_image
from beyondvis.utils import atomic_write, atomic_write_json

log = logging.getLogger(__name__)
SCENE_SIDE = 512  # long side of every database photo


@dataclass
class InstanceConfig:
    pedestrians: int = 16
    plants: int = 6
    pastes_per_object: int = 4
    distractors: int = 200
    small_fraction: float = 0.3  # share of pastes made small (TRECVid-like)
    junk_fraction: float = 0.1  # share of pastes mostly outside the image
    seed: int = 0


@dataclass
class SourceObject:
    name: str
    photo: Path
    rgba: Image.Image  # the object cut out with its mask as alpha
    box: tuple[int, int, int, int]  # in the source photo


def _cut(photo: Path, mask: np.ndarray, name: str) -> SourceObject:
    image = load_image(photo)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray((mask * 255).astype(np.uint8)))
    return SourceObject(name, photo, rgba.crop(box), box)


def pedestrian_objects(root: Path, count: int, rng: np.random.Generator) -> list[SourceObject]:
    """The largest pedestrian of randomly chosen Penn-Fudan photos (one object per photo)."""
    masks = sorted((root / "PedMasks").glob("*_mask.png"))
    out = []
    for mpath in rng.permutation(masks):
        if len(out) == count:
            break
        labels = np.asarray(Image.open(mpath))
        ids, areas = np.unique(labels[labels > 0], return_counts=True)
        if ids.size == 0:
            continue
        k = ids[np.argmax(areas)]
        photo = root / "PNGImages" / mpath.name.replace("_mask.png", ".png")
        out.append(_cut(photo, labels == k, f"ped_{len(out):02d}"))
    return out


def plant_objects(root: Path, count: int, rng: np.random.Generator) -> list[SourceObject]:
    """Whole plants (foreground masks) of CVPPP A1."""
    fgs = sorted(root.glob("plant*_fg.png"))
    out = []
    for fpath in rng.permutation(fgs)[:count]:
        mask = np.asarray(Image.open(fpath).convert("L")) > 0
        photo = fpath.with_name(fpath.name.replace("_fg.png", "_rgb.png"))
        out.append(_cut(photo, mask, f"plant_{len(out):02d}"))
    return out


def scene_paths(data_root: Path, exclude: set[Path]) -> list[Path]:
    recipes = sorted((data_root / "recipe1m_mini" / "images").rglob("*.jpg"))
    miml = sorted((data_root / "miml_scenes" / "images").rglob("*.jp*g"))
    streets = sorted((data_root / "PennFudanPed" / "PNGImages").glob("*.png"))
    return [p for p in recipes + miml + streets if p not in exclude]


def _scene(path: Path) -> Image.Image:
    image = load_image(path)
    scale = SCENE_SIDE / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)


def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> list[float]:
    # PIL's PERSPECTIVE maps output (dst) points to input (src) points: solve the 8 unknowns.
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def transform_object(obj: Image.Image, height: int, rng: np.random.Generator) -> Image.Image:
    """Scale to ``height`` px, mirror, rotate, warp in perspective and relight an RGBA cut-out."""
    scale = height / obj.height
    out = obj.resize((max(2, round(obj.width * scale)), max(2, height)), Image.BICUBIC)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = out.rotate(float(rng.uniform(-20, 20)), resample=Image.BICUBIC, expand=True)
    w, h = out.size
    jitter = 0.12
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    dst = src + rng.uniform(-jitter, jitter, (4, 2)) * [w, h]
    dst -= dst.min(axis=0)
    size = (int(np.ceil(dst[:, 0].max())) + 1, int(np.ceil(dst[:, 1].max())) + 1)
    out = out.transform(size, Image.PERSPECTIVE, _perspective_coeffs(src, dst), Image.BICUBIC)
    rgb, alpha = out.convert("RGB"), out.getchannel("A")
    rgb = ImageEnhance.Brightness(rgb).enhance(float(rng.uniform(0.65, 1.35)))
    rgb = ImageEnhance.Contrast(rgb).enhance(float(rng.uniform(0.75, 1.25)))
    gains = rng.uniform(0.85, 1.15, 3)  # colour cast of another light source
    rgb = Image.fromarray(np.clip(np.asarray(rgb, float) * gains, 0, 255).astype(np.uint8))
    rgb.putalpha(alpha)
    return rgb


def paste(
    scene: Image.Image, obj: Image.Image, xy: tuple[int, int]
) -> tuple[list[int] | None, float]:
    """Alpha-paste ``obj`` at ``xy`` (may overhang); returns its visible box and visible share."""
    alpha = np.asarray(obj.getchannel("A")) > 127
    total = int(alpha.sum())
    scene.paste(obj, xy, obj)
    x, y = xy
    h, w = alpha.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, scene.width), min(y + h, scene.height)
    if x1 <= x0 or y1 <= y0 or total == 0:
        return None, 0.0
    visible = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    if not visible.any():
        return None, 0.0
    ys, xs = np.nonzero(visible)
    box = [x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1]
    return box, float(visible.sum()) / total


def _save_jpeg(image: Image.Image, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        image.save(f, format="JPEG", quality=92)


def make_instances(
    data_root: str | os.PathLike, out: str | os.PathLike, config: InstanceConfig | None = None
) -> dict:
    """Build the benchmark under ``out``; returns a summary (counts per label)."""
    cfg = config or InstanceConfig()
    rng = np.random.default_rng(cfg.seed)
    data_root, out = Path(data_root), Path(out)
    objects = pedestrian_objects(data_root / "PennFudanPed", cfg.pedestrians, rng)
    objects += plant_objects(data_root / "cvppp_a1", cfg.plants, rng)
    if not objects:
        raise FileNotFoundError(f"no PennFudanPed or cvppp_a1 objects under {data_root}")
    scenes = scene_paths(data_root, {o.photo for o in objects})
    needed = len(objects) * cfg.pastes_per_object + cfg.distractors
    if len(scenes) < needed:
        raise ValueError(f"need {needed} scene photos, found {len(scenes)} under {data_root}")
    scenes = [scenes[i] for i in rng.permutation(len(scenes))[:needed]]
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(parents=True, exist_ok=True)

    lists = {o.name: {"good": [], "ok": [], "junk": []} for o in objects}
    annotations = []
    k = 0
    for obj in objects:
        for p in range(cfg.pastes_per_object):
            try:
                scene = _scene(scenes[k])
            except ImageLoadError as exc:  # a bad scene photo costs one paste, not the run
                log.warning("skipped scene %s: %s", scenes[k], exc.reason)
                k += 1
                continue
            image_id = f"scene_{k:04d}"
            k += 1
            small = rng.random() < cfg.small_fraction
            rel = rng.uniform(0.08, 0.15) if small else rng.uniform(0.3, 0.7)
            piece = transform_object(obj.rgba, max(8, round(rel * scene.height)), rng)
            junk = (
                p == cfg.pastes_per_object - 1
                and rng.random() < cfg.junk_fraction * cfg.pastes_per_object
            )
            if junk:  # mostly off the border: less than a quarter stays visible
                x = scene.width - max(2, piece.width // 6)
                y = int(rng.integers(0, max(1, scene.height - piece.height)))
            else:
                x = int(rng.integers(0, max(1, scene.width - piece.width)))
                y = int(rng.integers(0, max(1, scene.height - piece.height)))
            box, visible = paste(scene, piece, (x, y))
            if box is None:
                continue
            label = "junk" if visible < 0.25 else ("ok" if small else "good")
            lists[obj.name][label].append(image_id)
            annotations.append(
                {
                    "image": image_id,
                    "query": obj.name,
                    "box": box,
                    "visible": round(visible, 3),
                    "label": label,
                }
            )
            _save_jpeg(scene, out / "images" / f"{image_id}.jpg")
    for i in range(cfg.distractors):
        try:
            scene = _scene(scenes[k])
        except ImageLoadError as exc:
            log.warning("skipped scene %s: %s", scenes[k], exc.reason)
            k += 1
            continue
        k += 1
        _save_jpeg(scene, out / "images" / f"distractor_{i:04d}.jpg")

    queries = []
    for obj in objects:
        _save_jpeg(load_image(obj.photo), out / "queries" / f"{obj.name}.jpg")
        queries.append(
            OxfordQuery(obj.name, obj.name, tuple(float(v) for v in obj.box), **lists[obj.name])
        )
    write_gt_files(out / "gt_files", queries)
    summary = {
        "queries": len(queries),
        "database_images": len(list((out / "images").glob("*.jpg"))),
        "instances": {
            lab: sum(a["label"] == lab for a in annotations) for lab in ("good", "ok", "junk")
        },
        "sources": {o.name: str(o.photo) for o in objects},
    }
    atomic_write_json(out / "annotations.json", {"summary": summary, "instances": annotations})
    return summary
