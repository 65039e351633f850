"""``beyondvis index ... --method frcnn``: the detector index (``beyondvis.retrieval.detector``)
behind the BLCF index commands.

``beyondvis.cli.index`` adds these options to its parsers and hands frcnn builds, and searches,
additions, info and evaluations of frcnn indexes, to the handlers here. Nothing at import time
loads torch, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from beyondvis.cli.common import CLIError, print_json


def add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        choices=["blcf", "frcnn"],
        default="blcf",
        help="blcf: bags of local convolutional features (thesis ch. 2); frcnn: Faster R-CNN "
        "image- and region-wise features with spatial reranking (ch. 3)",
    )
    g = p.add_argument_group("frcnn (--method frcnn)")
    g.add_argument(
        "--queries",
        type=Path,
        help="Oxford-format folder (gt_files/ + query photos) whose query objects the "
        "detector is fine-tuned on (needs --finetune)",
    )
    g.add_argument(
        "--finetune",
        choices=["fc", "all"],
        help="fine-tune on --queries: fc = classifier head only (FT_fc), all = every layer "
        "after the first two conv blocks, RPN included (FT_all); enables CS-SR",
    )
    g.add_argument("--epochs", type=int, default=8, help="fine-tuning passes over the queries")
    g.add_argument("--proposals", type=int, default=300, help="RPN proposals kept per photo")
    g.add_argument(
        "--detector-weights",
        type=Path,
        help="detection checkpoint (state dict) of this architecture to start from "
        "(default: ImageNet backbone, untrained RPN and box head)",
    )


def add_search_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("frcnn indexes")
    g.add_argument(
        "--sr",
        choices=["ca", "cs"],
        help="spatial reranking: ca = best proposal by RPA cosine (CA-SR), cs = by the "
        "fine-tuned class score (CS-SR) (default: cs when fine-tuned, else ca)",
    )
    g.add_argument("--ipa", choices=["sum", "max"], default="sum", help="filtering pooling")
    g.add_argument("--rpa", choices=["sum", "max"], default="max", help="CA-SR region pooling")
    g.add_argument(
        "--query-class", help="CS-SR class (a query name; default: the query box's best class)"
    )


def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        choices=["blcf", "frcnn"],
        default="blcf",
        help="frcnn: the detector tables (sum vs max, CA-SR vs CS-SR, FT_fc vs FT_all, QE)",
    )
    g = p.add_argument_group("frcnn (--method frcnn)")
    g.add_argument("--proposals", type=int, default=300, help="RPN proposals kept per photo")
    g.add_argument("--epochs", type=int, default=8, help="fine-tuning passes over the queries")
    g.add_argument(
        "--networks",
        default="off-the-shelf,FT_fc,FT_all",
        help="comma list of networks to build and evaluate",
    )


def _detector_config(args):
    from beyondvis.retrieval import DetectorConfig

    kw = {"proposals": args.proposals}
    for attr in ("backbone", "level", "max_side"):
        if getattr(args, attr, None) is not None:
            kw[attr] = getattr(args, attr)
    weights = getattr(args, "detector_weights", None)
    if weights is not None:
        kw["weights"] = str(weights)
    try:
        return DetectorConfig(**kw)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _errors():
    from beyondvis.backbones import WeightsNotFoundError
    from beyondvis.retrieval import IndexFormatError

    return (IndexFormatError, WeightsNotFoundError, ValueError, FileNotFoundError)


def cmd_build(args, photos: list[Path], device: str) -> int:
    from beyondvis.retrieval import (
        DetectorIndex,
        FinetuneConfig,
        build_detector_folder,
        check_no_index,
        queries_from_gt,
    )

    check_no_index(args.out, "use `index add` or another --out")
    if (args.finetune is None) != (args.queries is None):
        raise CLIError("--finetune and --queries go together (fine-tuning needs the queries)")
    t0 = time.perf_counter()
    try:
        queries = queries_from_gt(args.queries) if args.queries else None
        index = DetectorIndex(_detector_config(args), device=device)
        ft = FinetuneConfig(mode=args.finetune, epochs=args.epochs) if args.finetune else None
        build_detector_folder(index, photos, args.out, queries, ft, progress=True)
    except _errors() as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    tuned = f", fine-tuned ({args.finetune}) on {len(index.classes)} query objects" if ft else ""
    print(
        f"indexed {len(index)} image(s) into {args.out} (frcnn{tuned}) in "
        f"{time.perf_counter() - t0:.0f}s; skipped {len(index.skipped)} unreadable"
    )
    return 0


def cmd_add(args, photos: list[Path], device: str) -> int:
    from beyondvis.retrieval import add_to_detector_folder

    try:
        done = add_to_detector_folder(args.index, photos, device, progress=True)
    except _errors() as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    print(
        f"added {done.added} image(s); the index now holds {len(done.index)}; "
        f"skipped {len(done.skipped)} unreadable"
    )
    return 0


def cmd_info(args) -> int:
    from beyondvis.retrieval import read_detector_manifest

    try:
        print_json(read_detector_manifest(args.index), fmt="beyondvis-frcnn-index")
    except _errors() as exc:
        raise CLIError(str(exc)) from None
    return 0


def cmd_search(args, parse_box, device: str) -> int:
    from beyondvis.io import ImageLoadError
    from beyondvis.retrieval import DetectorIndex, search_detector_photo

    box = parse_box(args.box) if args.box else None
    if args.mask is not None:
        raise CLIError("frcnn indexes take a --box, not a --mask")
    if args.qe not in (None, "gqe"):
        raise CLIError("frcnn indexes expand the query with whole-photo IPA vectors: --qe gqe")
    try:
        index = DetectorIndex.load(args.index, device=device)
        found = search_detector_photo(
            index, args.query, box=box, k=args.top,
            rerank=None if args.no_rerank else (args.sr or "auto"),
            query_class=args.query_class, ipa=args.ipa, rpa=args.rpa,
            top_k=args.rerank_top, qe_top=args.qe_top if args.qe else 0,
        )  # fmt: skip
    except ImageLoadError as exc:
        raise CLIError(str(exc)) from None
    except _errors() as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    found.render(grid=args.grid, html=args.html)
    if args.json:
        print_json(found.to_json(), fmt="beyondvis-frcnn-results")
    else:
        for line in found.lines():
            print(line)
    return 0


def cmd_evaluate(args, device: str) -> int:
    from beyondvis.retrieval import FinetuneConfig, evaluate_detector
    from beyondvis.utils import atomic_write_json

    try:
        out = evaluate_detector(
            args.dataset, _detector_config(args), args.cache, device,
            FinetuneConfig(epochs=args.epochs), tables=args.tables.split(","),
            networks=args.networks.split(","), report=print,
        )  # fmt: skip
    except _errors() as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    if args.json_out:
        atomic_write_json(args.json_out, out)
    return 0
