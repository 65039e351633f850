"""``beyondvis configs [SYSTEM | NAME]``: the configs shipped inside the package.

Every command that takes ``--config`` accepts one of these names (``sets/miml``) as well as a
path; ``beyondvis configs sets`` lists one system's, ``beyondvis configs sets/miml`` prints the
file (with its ``base:`` chain named) so it can be copied and edited.
"""

from __future__ import annotations

import argparse

from beyondvis.cli.common import CLIError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "configs",
        help="list the packaged configs (names for --config), or print one",
        description=__doc__,
    )
    p.add_argument(
        "what",
        nargs="?",
        help="a system (sets, segmentation, retrieval, recipes, generation) to list, or a "
        "config name such as sets/miml to print (default: list all)",
    )
    p.add_argument("--path", action="store_true", help="print file paths next to the names")
    p.set_defaults(func=cmd_configs)


def cmd_configs(args: argparse.Namespace) -> int:
    from beyondvis.engine import (
        PACKAGED_CONFIG_DIR,
        ConfigError,
        list_configs,
        resolve_config,
    )

    systems = sorted(p.name for p in PACKAGED_CONFIG_DIR.iterdir() if p.is_dir())
    if args.what is None or args.what in systems:
        for name in list_configs(args.what):
            print(f"{name}\t{PACKAGED_CONFIG_DIR / (name + '.yaml')}" if args.path else name)
        return 0
    try:
        path = resolve_config(args.what)
    except ConfigError as exc:
        raise CLIError(f"{exc}; systems: {', '.join(systems)}") from None
    print(f"# {path}")
    print(path.read_text(encoding="utf-8"), end="")
    return 0
