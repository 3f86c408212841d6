"""Start-up time of the ``filterscope`` command: what a user waits for before anything runs.

Each command is started ``--runs`` times as a fresh process (the installed entry point,
``.venv/bin/filterscope`` beside this Python) and timed from start to exit; the median
is reported. The target (issue 19) is well under one second for ``--help``,
``--version`` and ``models``, which must not import PyTorch; ``denoise --help`` and
``python -c "import torch"`` are measured beside them for scale. Run from the
repository root::

    python benchmarks/startup.py            # median of 5 runs

Results go to ``benchmarks/results/startup.json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import print_table, write_results

ENTRY_POINT = str(Path(sys.executable).with_name("filterscope"))

COMMANDS = {
    "filterscope --help": [ENTRY_POINT, "--help"],
    "filterscope --version": [ENTRY_POINT, "--version"],
    "filterscope models": [ENTRY_POINT, "models"],
    "filterscope denoise --help": [ENTRY_POINT, "denoise", "--help"],
    "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"],
}


def time_command(command: list[str], runs: int) -> list[float]:
    """Wall-clock seconds of ``runs`` fresh runs of ``command`` (each must exit 0)."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default: 5)")
    args = parser.parse_args()
    if not Path(ENTRY_POINT).exists():
        parser.error(f"{ENTRY_POINT}: no filterscope entry point beside this Python")
    rows = []
    for name, command in COMMANDS.items():
        seconds = time_command(command, args.runs)
        rows.append(
            {
                "command": name,
                "median_s": statistics.median(seconds),
                "min_s": min(seconds),
                "max_s": max(seconds),
                "runs": args.runs,
            }
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    path = write_results(
        "startup",
        {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "load_average_1min": load,
            "target_s": 1.0,
            "results": rows,
        },
    )
    print_table(rows, ["command", "median_s", "min_s", "max_s", "runs"])
    print(f"(1-minute load average {load}; written to {path})")


if __name__ == "__main__":
    main()
