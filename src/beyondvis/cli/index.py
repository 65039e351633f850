"""``beyondvis index ...``: build, extend, shard, merge and search a BLCF instance-search index."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from beyondvis.cli.common import (
    CLIError,
    add_config_arguments,
    add_device_argument,
    add_threads_argument,
    apply_threads,
    config_overrides,
    device_name,
    load_cli_config,
    print_json,
)
from beyondvis.validation import (
    check_image_memory,
    check_writable,
    non_negative_int,
    positive_float,
    positive_int,
)

log = logging.getLogger(__name__)
GRID_MAX = 60  # thumbnails in a --grid, whatever --top says


def register(subparsers) -> None:
    p = subparsers.add_parser("index", help="instance search: Bag of Local Convolutional Features")
    sub = p.add_subparsers(dest="index_command", metavar="ACTION")

    b = sub.add_parser(
        "build",
        help="index a folder of photos with the shipped codebook (resumes an interrupted build)",
    )
    b.add_argument("photos", type=Path, help="folder of photos (searched recursively)")
    b.add_argument("--out", type=Path, required=True, help="index folder to write")
    source = b.add_mutually_exclusive_group()
    source.add_argument(
        "--model", type=Path, help="reuse the codebook of MODEL_DIR or an index (shards)"
    )
    source.add_argument(
        "--fit-codebook",
        action="store_true",
        help="fit PCA-whitening + k-means on this collection instead of using the shipped "
        "generic codebook (minutes to hours; capped to what the features support)",
    )
    b.add_argument("--shard", help="I/N: index only the I-th of N interleaved parts (0-based)")
    _add_config_args(b)
    _add_workers(b)
    add_device_argument(b)
    _frcnn().add_build_args(b)
    b.set_defaults(func=_quietly(cmd_build))

    t = sub.add_parser(
        "train",
        help="fit PCA-whitening + codebook only (for sharded builds, or a new shipped codebook)",
    )
    t.add_argument("photos", type=Path, help="folder of photos (searched recursively)")
    t.add_argument("--out", type=Path, required=True, help="model folder to write")
    t.add_argument(
        "--float16", action="store_true", help="store the model in float16 (as the shipped one)"
    )
    _add_config_args(t)
    _add_workers(t)
    add_device_argument(t)
    t.set_defaults(func=_quietly(cmd_train))

    a = sub.add_parser(
        "add",
        help="add new photos to an index without refitting the codebook",
    )
    a.add_argument("index", type=Path, help="index folder")
    a.add_argument("photos", type=Path, help="folder of photos to add (searched recursively)")
    _add_threads(a)
    _add_workers(a)
    add_device_argument(a)
    a.set_defaults(func=_quietly(cmd_add))

    m = sub.add_parser("merge", help="merge shards built with one model into one index")
    m.add_argument("shards", type=Path, nargs="+", help="index folders of the shards")
    m.add_argument("--out", type=Path, required=True, help="merged index folder to write")
    m.set_defaults(func=_quietly(cmd_merge))

    i = sub.add_parser("info", help="show an index's settings and size")
    i.add_argument("index", type=Path, help="index folder")
    i.set_defaults(func=_quietly(cmd_info))

    e = sub.add_parser(
        "evaluate", help="thesis tables (stages, BoW vs pooling) on an Oxford-format benchmark"
    )
    e.add_argument("dataset", type=Path, help="folder with images/, queries/, gt_files/")
    e.add_argument("--cache", type=Path, default=Path(".cache/retrieval"), help="feature cache")
    e.add_argument(
        "--tables", default="stages,pooling", help="comma list: stages, pooling, localisation"
    )
    e.add_argument(
        "--stages",
        help="comma list of stage rows to run, e.g. 'GS,LS,GS + R,LS + R' (default: all 12)",
    )
    _add_max_words(e)
    _add_rerank_args(e)
    e.add_argument("--json-out", type=Path, help="also write the numbers as JSON")
    _frcnn().add_evaluate_args(e)
    e.add_argument(
        "--codebook",
        choices=["fitted", "generic"],
        default="fitted",
        help="fitted: PCA + k-means on the benchmark's database (the thesis protocol); "
        "generic: the shipped codebook, as `index build` uses by default (default: fitted)",
    )
    _add_config_args(e)
    add_device_argument(e)
    e.set_defaults(func=_quietly(cmd_evaluate))

    s = sub.add_parser("search", help="search an index with a query photo")
    s.add_argument("index", type=Path, help="index folder (or a shard)")
    s.add_argument("query", type=Path, help="query photo")
    region = s.add_mutually_exclusive_group()
    region.add_argument("--box", help="x0,y0,x1,y1 in query pixels")
    region.add_argument("--mask", type=Path, help="binary mask image (non-zero = object)")
    s.add_argument(
        "--mode",
        choices=["gs", "ls", "ws"],
        help="query BoW: gs = the whole photo, ls = the box/mask only, ws = the whole photo "
        "weighted by distance to the box/mask (default: ls with a box/mask, else gs)",
    )
    s.add_argument("--no-rerank", action="store_true", help="skip local reranking (no boxes)")
    _add_max_words(s)
    s.add_argument(
        "--qe",
        choices=["gqe", "lqe", "wqe"],
        help="query expansion after reranking: with the whole top photos (gqe), their best "
        "windows (lqe) or the whole photos, words weighted by distance to the window (wqe)",
    )
    _add_rerank_args(s)
    s.add_argument("--augment", action="store_true", help="add flipped + zoomed-crop views")
    s.add_argument("--backbone", help="fail unless the index was built with this backbone")
    s.add_argument(
        "--top",
        type=non_negative_int,
        default=20,
        help="results to return; 0 = the whole ranking (default: 20)",
    )
    s.add_argument(
        "--unmatched",
        action="store_true",
        help="also return photos sharing no visual word with the query (score 0, unordered)",
    )
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    s.add_argument(
        "--html", type=Path, help="HTML page of the query and the results with their boxes"
    )
    s.add_argument(
        "--grid", type=Path, help=f"PNG grid of the top results (at most {GRID_MAX}) with boxes"
    )
    _frcnn().add_search_args(s)
    _add_threads(s)
    add_device_argument(s)
    s.set_defaults(func=_quietly(cmd_search))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _frcnn():
    # --method frcnn (thesis ch. 3, beyondvis.retrieval.detector) has its options and handlers
    # in cli/index_frcnn.py, which imports no torch, so building the parsers stays instant
    from beyondvis.cli import index_frcnn

    return index_frcnn


def _add_threads(p: argparse.ArgumentParser) -> None:
    add_threads_argument(p, what=" (the backbone) and FAISS")


def _add_max_words(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-words",
        type=non_negative_int,
        default=100,
        help="query words looked up in the inverted index, those of largest tf-idf weight "
        "(0 = all; reranking uses all) (default: 100)",
    )


def _add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=2,
        help="threads decoding and resizing photos ahead of the backbone (0 = none)",
    )


def _add_rerank_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rerank-top",
        type=non_negative_int,
        default=100,
        help="top photos rescored by local reranking",
    )
    p.add_argument(
        "--no-aspect-filter",
        action="store_true",
        help="keep reranking windows of any shape (the filter drops those whose aspect ratio "
        "is under 0.4x or over 2.5x the query box's)",
    )
    p.add_argument(
        "--no-pyramid",
        action="store_true",
        help="score reranking windows by one BoW instead of a 2-level spatial pyramid",
    )
    p.add_argument(
        "--qe-top",
        type=positive_int,
        default=10,
        help="top photos averaged into the expanded query",
    )


def _quiet(args) -> None:
    # FAISS logs eight INFO lines about which CPU build it loads on every import; keep them
    # for -v (they say which SIMD kernels are in use)
    if not getattr(args, "verbose", False):
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def _quietly(handler):
    """``handler`` with the FAISS loader silenced before any import can load FAISS."""

    def run(args):
        _quiet(args)
        return handler(args)

    return run


def _add_config_args(p: argparse.ArgumentParser) -> None:
    _add_threads(p)
    add_config_arguments(
        p, "retrieval", what="; IndexConfig fields, e.g. --set features.max_side=512"
    )
    p.add_argument("--backbone", help="feature network (default: efficientnet_lite0)")
    p.add_argument(
        "--level",
        type=positive_int,
        help="forward_features level: 3 = stride 16 (default), 4 = stride 32",
    )
    p.add_argument("--scale", type=positive_float, help="input rescaling factor (default: 1.0)")
    p.add_argument(
        "--max-side",
        type=positive_int,
        help="cap on the rescaled long side in pixels (default: 384)",
    )
    p.add_argument("--no-upsample", action="store_true", help="do not upsample the feature maps 2x")
    p.add_argument("--codebook-size", type=positive_int, help="visual words to fit (default: 8192)")
    p.add_argument(
        "--pca-dim", type=positive_int, help="keep this many whitened dimensions (default: all)"
    )
    p.add_argument(
        "--sample-images",
        type=positive_int,
        help="photos whose features fit the codebook (default: 500)",
    )
    p.add_argument(
        "--no-centre-prior", action="store_true", help="weight all cells alike in the BoWs"
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        help="photos per checkpointed chunk of a build (default: 64)",
    )


# Shorthand flags of the most used IndexConfig fields, as --set overrides (so a flag, a
# config file and --set all go through one typed loader).
_FLAG_KEYS = {
    "backbone": "features.backbone",
    "level": "features.level",
    "scale": "features.scale",
    "max_side": "features.max_side",
    "codebook_size": "codebook_size",
    "pca_dim": "pca_dim",
    "sample_images": "sample_images",
    "chunk_size": "chunk_size",
}
# Keys a shipped codebook fixes (changing them needs --fit-codebook).
_CODEBOOK_KEYS = {
    "features.backbone": "--backbone",
    "features.level": "--level",
    "codebook_size": "--codebook-size",
    "pca_dim": "--pca-dim",
    "sample_images": "--sample-images",
}


def _flag_overrides(args) -> list[str]:
    out = [f"{key}={getattr(args, flag)}" for flag, key in _FLAG_KEYS.items()
           if getattr(args, flag, None) is not None]  # fmt: skip
    if getattr(args, "no_upsample", False):
        out.append("features.upsample=false")
    if getattr(args, "no_centre_prior", False):
        out.append("centre_prior=false")
    return out


def _config(args):
    from beyondvis.retrieval import IndexConfig

    return load_cli_config(args, IndexConfig, "retrieval", extra=_flag_overrides(args))


def _flag_overrides_keys(args) -> set[str]:
    return {o.partition("=")[0] for o in _flag_overrides(args)}


def _photos(folder: Path) -> list[Path]:
    from beyondvis.io import iter_image_paths

    try:
        paths = list(iter_image_paths(folder))
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None
    if not paths:
        raise CLIError(f"no image files under {folder}")
    return paths


def _guard(fn):
    from beyondvis.retrieval import BackboneMismatchError, IndexFormatError

    try:
        return fn()
    except (IndexFormatError, BackboneMismatchError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def cmd_train(args) -> int:
    from beyondvis.retrieval import BLCFIndex, save_model_only

    apply_threads(args, faiss=True)
    cfg = _config(args)
    photos = _photos(args.photos)
    index = BLCFIndex(cfg, device=device_name(args))
    _guard(lambda: index.train(photos, progress=True, workers=args.workers))
    model = index.model.to_half() if args.float16 else index.model
    save_model_only(args.out, model)
    print(f"model {model.fingerprint()} ({model.codebook.size} words) written to {args.out}")
    return 0


def _check_shipped_overrides(args) -> None:
    given = [flag for key, flag in _CODEBOOK_KEYS.items() if key in _flag_overrides_keys(args)]
    given += [
        f"--set {o.partition('=')[0].strip()}"
        for o in config_overrides(args)
        if o.partition("=")[0].strip() in _CODEBOOK_KEYS
    ]
    if given:
        raise CLIError(
            f"{', '.join(given)} change the codebook: add --fit-codebook to fit one on the "
            "collection (the shipped codebook is EfficientNet-Lite0 level 3)"
        )


def cmd_build(args) -> int:
    from beyondvis.retrieval import (
        BLCFIndex,
        build_index_folder,
        build_settings,
        check_no_index,
        load_model_only,
    )

    apply_threads(args, faiss=True)
    check_writable(args.out, "index folder")  # before any photo is read
    photos = _photos(args.photos)
    if args.method == "frcnn":
        return _frcnn().cmd_build(args, photos, device_name(args))
    check_no_index(args.out, "use `index add` or another --out")
    # photos are encoded one at a time at up to max_side: --max-side 100000 would run out
    check_image_memory(_config(args).features.max_side, 1, side_flag="--max-side", batch_flag=None)
    if args.shard:
        try:
            part, total = (int(v) for v in args.shard.split("/"))
            assert 0 <= part < total
        except (ValueError, AssertionError):
            raise CLIError(f"--shard wants I/N with 0 <= I < N, got {args.shard!r}") from None
        if args.model is None:
            raise CLIError(
                "a shard must use a shared codebook: fit one with `index train` and pass --model"
            )
        photos = photos[part::total]
    device = device_name(args)
    if args.model:
        model = _guard(lambda: load_model_only(args.model))
        index = BLCFIndex(model=model, device=device)
        codebook = f"model {Path(args.model).resolve()}"
    elif args.fit_codebook:
        index = BLCFIndex(_config(args), device=device)
        codebook = "fitted"
    else:
        _check_shipped_overrides(args)
        index = _guard(lambda: BLCFIndex.pretrained(config=_config(args), device=device))
        codebook = "shipped"
    # an interrupted build resumes only with these settings (a refusal is one line from main())
    settings = build_settings(index.config, codebook, args.photos, args.shard)
    _guard(
        lambda: build_index_folder(
            index, photos, args.out, settings, workers=args.workers, progress=True
        )
    )
    words = index.model.codebook.size
    source = index.model.name or "fitted"
    print(
        f"indexed {len(index)} image(s) into {args.out} ({source} codebook, {words} words); "
        f"skipped {len(index.skipped)} unreadable"
    )
    return 0


def cmd_add(args) -> int:
    from beyondvis.retrieval import add_to_index_folder, is_detector_index

    apply_threads(args, faiss=True)
    photos = _photos(args.photos)
    if is_detector_index(args.index):
        return _frcnn().cmd_add(args, photos, device_name(args))
    done = _guard(
        lambda: add_to_index_folder(
            args.index, photos, device_name(args), workers=args.workers, progress=True
        )
    )
    print(
        f"added {done.added} image(s); the index now holds {len(done.index)}; "
        f"skipped {done.already_indexed} already indexed and {len(done.skipped)} unreadable"
    )
    return 0


def cmd_merge(args) -> int:
    from beyondvis.retrieval import check_no_index, merge_index_folders

    check_no_index(args.out, "merge into another --out")
    index = _guard(lambda: merge_index_folders(args.shards, args.out))
    print(f"merged {len(args.shards)} shard(s): {len(index)} image(s) in {args.out}")
    return 0


def cmd_info(args) -> int:
    from beyondvis.retrieval import is_detector_index, read_manifest

    if is_detector_index(args.index):
        return _frcnn().cmd_info(args)
    manifest = _guard(lambda: read_manifest(args.index))
    print_json(manifest, fmt="beyondvis-blcf-index")
    return 0


def _parse_box(text: str) -> tuple[float, ...]:
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"--box wants x0,y0,x1,y1 numbers, got {text!r}") from None
    if len(box) != 4 or not (box[2] > box[0] and box[3] > box[1]):
        raise CLIError(f"--box wants x0,y0,x1,y1 with x0 < x1 and y0 < y1, got {text!r}")
    return box


def _rerank_config(args):
    from beyondvis.retrieval import RerankConfig

    return RerankConfig(
        top_k=args.rerank_top,
        aspect_threshold=None if args.no_aspect_filter else 0.4,
        pyramid_levels=1 if args.no_pyramid else 2,
    )


def cmd_search(args) -> int:
    from beyondvis.io import ImageLoadError
    from beyondvis.retrieval import BLCFIndex, is_detector_index, search_photo

    apply_threads(args, faiss=True)

    if args.top < 0:
        raise CLIError(f"--top wants 0 (all) or a positive count, got {args.top}")
    if is_detector_index(args.index):
        return _frcnn().cmd_search(args, _parse_box, device_name(args))
    index = _guard(lambda: BLCFIndex.load(args.index, device=device_name(args)))
    if args.backbone:
        _guard(lambda: index.check_backbone(args.backbone))
    box = _parse_box(args.box) if args.box else None
    try:
        found = _guard(
            lambda: search_photo(
                index, args.query, box=box, mask=args.mask, k=args.top, mode=args.mode,
                augment=args.augment, unmatched=args.unmatched, rerank=not args.no_rerank,
                rerank_config=_rerank_config(args), qe=args.qe, qe_top=args.qe_top,
                max_words=args.max_words or None,
            )
        )  # fmt: skip
    except ImageLoadError as exc:
        raise CLIError(str(exc)) from None
    found.render(grid=args.grid, html=args.html, grid_max=GRID_MAX)
    if args.json:
        print_json(found.to_json(), fmt="beyondvis-blcf-results")
    else:
        for line in found.lines():
            print(line)
    return 0


def cmd_evaluate(args) -> int:
    apply_threads(args, faiss=True)
    if args.method == "frcnn":
        return _frcnn().cmd_evaluate(args, device_name(args))

    from beyondvis.retrieval import evaluate_blcf
    from beyondvis.utils import atomic_write_json

    cfg = _config(args)
    stages = None if not args.stages else [t.strip() for t in args.stages.split(",")]
    try:
        out = _guard(
            lambda: evaluate_blcf(
                args.dataset, cfg, args.cache, device_name(args), tables=args.tables.split(","),
                codebook=args.codebook, rerank=_rerank_config(args), qe_top=args.qe_top,
                stages=stages, max_words=args.max_words or None, report=print,
            )
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None
    if args.json_out:
        atomic_write_json(args.json_out, out)
    return 0
