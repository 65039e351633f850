"""``beyondvis data ...``: build benchmarks from the real photos under $BEYONDVIS_DATA."""

from __future__ import annotations

from pathlib import Path

from beyondvis.cli.common import CLIError, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="build benchmark datasets from real photos")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    m = sub.add_parser(
        "make-instances",
        help="instance-search benchmark: real objects pasted into real scenes, Oxford gt format",
    )
    m.add_argument(
        "--out", type=Path, required=True, help="benchmark folder to write (Oxford layout)"
    )
    m.add_argument("--data", type=Path, help="real data root (default: $BEYONDVIS_DATA)")
    m.add_argument(
        "--pedestrians", type=int, default=16, help="Penn-Fudan pedestrians cut out as objects"
    )
    m.add_argument("--plants", type=int, default=6, help="CVPPP plants cut out as objects")
    m.add_argument("--pastes", type=int, default=4, help="pasted copies per object")
    m.add_argument(
        "--distractors",
        type=int,
        default=200,
        help="database photos with nothing pasted in them",
    )
    m.add_argument("--seed", type=int, default=0, help="random seed of the choices and transforms")
    m.set_defaults(func=cmd_make_instances)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_make_instances(args) -> int:
    from beyondvis.data import InstanceConfig, make_instances
    from beyondvis.utils import shared_data_root

    root = args.data or shared_data_root()
    if root is None or not Path(root).exists():
        raise CLIError("no real data: pass --data or set BEYONDVIS_DATA to ../shared/data")
    cfg = InstanceConfig(
        pedestrians=args.pedestrians,
        plants=args.plants,
        pastes_per_object=args.pastes,
        distractors=args.distractors,
        seed=args.seed,
    )
    try:
        summary = make_instances(root, args.out, cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print_json(
        {k: v for k, v in summary.items() if k != "sources"}, fmt="beyondvis.data.make_instances/1"
    )
    return 0
