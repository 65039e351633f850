"""Seconds of ``beyondvis [CMD [SUB]] --help`` for every command, through the console script.

    python benchmarks/cli_help.py                  # every command, median of 3 runs
    python benchmarks/cli_help.py --repeats 5 --check

Each row runs the installed ``beyondvis`` entry point as a fresh process from a temporary
folder and reports the median and the least wall seconds (the least is the closest to an idle
machine), the median CPU seconds (user + system of the child) and the medians as a ratio to a
bare ``python -c pass`` (the floor any command pays). Wall time grows with the machine's load
(printed in the header), CPU time much less, so both are shown. The commands are discovered
from the parser, as tests/cli/test_help.py does; that test checks that no torch/timm/FAISS/ONNX
Runtime module is imported, this script only measures.
Target (issue 16): every ``--help`` under 1 s. ``--check`` exits 1 when a row's wall median
is over it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fresh(argv: list[str], repeats: int, cwd: str) -> tuple[float, float, float]:
    """Median wall, least wall and median CPU seconds of running ``argv`` as a new process."""
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = _children_cpu(), time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - c0)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def commands() -> list[tuple[str, ...]]:
    """Every command path of the parser: (), ("cook",), ("index", "build"), ..."""
    from beyondvis.cli.main import build_parser

    found: list[tuple[str, ...]] = []

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        found.append(words)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, (*words, name))

    walk(build_parser(), ())
    return found


def console_script() -> str:
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        path = Path(folder) / "beyondvis"
        if path.is_file():
            return str(path)
    found = shutil.which("beyondvis")
    if not found:
        sys.exit("the beyondvis console script is not installed (pip install -e .)")
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per command (default: 3)")
    ap.add_argument(
        "--check", action="store_true", help="exit 1 when a command's median is over 1 s"
    )
    args = ap.parse_args()
    script = console_script()
    cmds = commands()
    with tempfile.TemporaryDirectory() as cwd:
        base_wall, base_min, base_cpu = fresh([sys.executable, "-c", "pass"], args.repeats, cwd)
        print(
            f"beyondvis CMD --help, {len(cmds)} commands, median of {args.repeats} fresh "
            f"processes; load average {os.getloadavg()[0]:.1f} at start; {os.cpu_count()} CPUs"
        )
        head = (
            f"{'command':<34} {'wall s':>7} {'min s':>7} {'CPU s':>7} {'wall/py':>8} "
            f"{'CPU/py':>7}  target"
        )
        print(head)
        print("-" * len(head))
        print(
            f"{'python -c pass':<34} {base_wall:7.3f} {base_min:7.3f} {base_cpu:7.3f} "
            f"{1:8.1f} {1:7.1f}"
        )
        worst = 0.0
        for words in cmds:
            wall, least, cpu = fresh([script, *words, "--help"], args.repeats, cwd)
            worst = max(worst, wall)
            name = " ".join(("beyondvis", *words))
            verdict = "ok" if wall < TARGET_S else "OVER"
            print(
                f"{name:<34} {wall:7.3f} {least:7.3f} {cpu:7.3f} {wall / base_wall:8.1f} "
                f"{cpu / max(base_cpu, 1e-3):7.1f}  {verdict}",
                flush=True,
            )
    met = worst < TARGET_S
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(
            "\nthe load is above the CPU count: wall seconds include waits for a CPU (see the "
            "python -c pass row); the CPU column is what each command itself costs"
        )
    print(
        f"\nslowest {worst:.3f} s: target < {TARGET_S:.0f} s {'met' if met else 'NOT met'}; "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
