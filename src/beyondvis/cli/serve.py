"""``beyondvis serve``: the web app — photo to recipe, and visual search over an index.

The cook model (and the index, with ``--index``) is loaded once at start-up; every request then
costs only the warm card or search. Binds to loopback by default: the app has no accounts, so
exposing it to a network is an explicit choice (``--host 0.0.0.0``).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from beyondvis.cli.common import (
    CLIError,
    add_device_argument,
    add_threads_argument,
    apply_threads,
    device_name,
)
from beyondvis.validation import positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="web app: photo to recipe, and visual search over an index, in the browser",
        description=(
            "Start the beyondvis web app: a Cook page (drop a food photo, get the recipe card) "
            "and, with --index, a Search page (pick or upload a query photo, draw a box, page "
            "through the hits with their localisation boxes). JSON API: POST /api/cook, "
            "POST /api/search (documented at /docs)."
        ),
    )
    p.add_argument(
        "--index",
        type=Path,
        default=None,
        help="BLCF index folder (`beyondvis index build`) for the Search page (default: none, no search)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; loopback keeps the app on this machine (default: 127.0.0.1)",
    )
    p.add_argument(
        "--port", type=int, default=8000, help="TCP port, 0 = any free port (default: 8000)"
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="cook bundle folder (default: the one shipped in the package)",
    )
    p.add_argument(
        "--decode",
        choices=["greedy", "beam", "sample"],
        default=None,
        help="decoding of a card when the page does not ask for sampling (default: the bundle's "
        "choice, beam-3)",
    )
    p.add_argument(
        "--no-cook",
        action="store_true",
        help="do not load the cook model, search only (default: off)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=positive_float,
        default=10.0,
        help="largest upload accepted, in MB; bigger ones are refused while they stream in "
        "(default: 10)",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=40_000_000,
        help="largest photo accepted, in pixels, checked before decoding (default: 40000000)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=120.0,
        help="seconds a cook/search request may wait in line and run before it is given up "
        "(default: 120)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="model threads serving requests in parallel; more only helps with spare cores "
        "(default: 1)",
    )
    p.add_argument(
        "--max-queue",
        type=positive_int,
        default=64,
        help="requests waiting for a model thread before the server answers 503 busy (default: 64)",
    )
    add_threads_argument(p, what=" per model call")
    add_device_argument(p)
    p.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from beyondvis.web import CookService, SearchService, WebConfig, create_app

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must lie in 0..65535, got {args.port}")
    if args.index is not None and not args.index.is_dir():
        raise CLIError(f"--index {args.index}: no such folder")
    apply_threads(args)
    device = device_name(args)
    log = logging.getLogger("beyondvis.serve")
    search = None
    if args.index is not None:
        from beyondvis.retrieval import IndexFormatError

        try:
            search = SearchService(args.index, device=device, max_pixels=args.max_pixels)
        except (IndexFormatError, ValueError, OSError) as exc:
            raise CLIError(f"cannot load the index {args.index}: {exc}") from None
        log.info("index %s: %d photos (%.1f s)", args.index, len(search), search.load_seconds)
    cook = None
    if not args.no_cook:
        from beyondvis.recipes.generation import BundleError

        try:
            cook = CookService(args.model, device=device, decode=args.decode)
        except (BundleError, ValueError, OSError) as exc:
            raise CLIError(f"cannot load the cook model: {exc}") from None
        log.info("cook model loaded (%.1f s)", cook.load_seconds)
    config = WebConfig(
        max_upload_bytes=int(args.max_upload_mb * 1e6),
        max_pixels=args.max_pixels,
        request_timeout=args.timeout,
        workers=args.workers,
        max_queue=args.max_queue,
    )
    app = create_app(cook, search, config)
    if not _is_loopback(args.host):
        print(
            f"warning: binding to {args.host}: anyone who can reach this address can use the "
            "app (it has no accounts)",
            file=sys.stderr,
        )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="info",
            timeout_keep_alive=5,
            limit_concurrency=args.max_queue + 32,
        )
    )
    print(f"beyondvis serve: http://{args.host}:{args.port}/cook  (Ctrl-C stops)", flush=True)
    try:
        server.run()
    finally:
        app.app.state.pool.close()
    return 0
