"""Small helpers shared by the benchmark scripts: the shared data folder, JSON results and
markdown tables."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: The shared read-only data folder (papers, datasets, published checkpoints): ``../shared``
#: beside the repository, or wherever ``FILTERSCOPE_SHARED`` points. Scripts derive their
#: own folders from it (``SHARED / "data" / "BSD68"``).
SHARED = Path(
    os.environ.get("FILTERSCOPE_SHARED") or Path(__file__).resolve().parents[2] / "shared"
)


def machine_record() -> dict:
    """Where a benchmark ran: CPU model, torch's capability, the flags that matter, cores,
    threads, torch version, GPU, and the ``auto`` numeric path of each command there
    (:mod:`filterscope.machine`). Timings only compare on the same record."""
    from filterscope.machine import machine_info, numeric_paths

    return {**machine_info(), "paths": numeric_paths()}


def estimator_tag() -> str:
    """A short hash of the wavelet noise estimator's source (``filterscope.noise``):
    blind scores depend on it as much as on a model's weights, so caches of blind
    results key by it and a changed estimator is measured anew."""
    import hashlib
    import inspect

    from filterscope import noise

    return hashlib.sha256(inspect.getsource(noise).encode()).hexdigest()[:12]


def results_name(text: str) -> str:
    """An argparse ``type`` for a results file stem: a plain name, so the file stays in
    ``benchmarks/results`` (a path is refused with exit code 2)."""
    if not text or Path(text).name != text or text.startswith("."):
        raise argparse.ArgumentTypeError(f"{text!r} is not a plain file name")
    return text


def write_results(name: str, payload: dict) -> Path:
    """Write ``payload`` as ``benchmarks/results/NAME.json`` and return the path.

    The payload's ``machine`` entry gets :func:`machine_record`'s fields (the script's
    own fields of that entry, if any, are kept and win).
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {**payload, "machine": {**machine_record(), **payload.get("machine", {})}}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


#: Marks the line a fresh-process measurement prints its result on.
RESULT_TAG = "RESULT "


def peak_rss_gib() -> float:
    """This process's peak resident memory, GiB, since it started its program.

    Linux's ``ru_maxrss`` carries the parent's resident size over into a child it
    starts (a child of a 1.5 GiB parent reports 1.5 GiB however little it uses), so
    fresh-process measurements read ``VmHWM``, the peak of the process's own memory
    image; ``ru_maxrss`` (KiB on Linux, bytes on macOS) where /proc is missing."""
    import resource
    import sys

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB -> GiB
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def run_fresh(module: str, call: str, *, env: dict | None = None) -> dict:
    """``module.call`` (a Python expression returning a JSON-able dict, ``module``
    imported as ``m``) evaluated in a fresh interpreter from the repository root, so
    its peak memory and caches are its own; its result, or a RuntimeError with the
    end of its stderr."""
    import subprocess
    import sys

    code = (
        f"import json, sys; sys.path.insert(0, 'benchmarks'); import {module} as m; "
        f"print({RESULT_TAG!r} + json.dumps(m.{call}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{module}.{call} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_TAG) :])


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Print ``rows`` as a markdown table with the given columns (missing cells empty)."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |")


def parse_sigma_list(
    parser: argparse.ArgumentParser, text: str, *, option: str = "--sigmas"
) -> list[float]:
    """``"10,30,90"`` -> ``[10.0, 30.0, 90.0]``; a bad list is a ``parser.error`` (exit 2)
    naming ``option``."""
    try:
        sigmas = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        parser.error(f"{option}: expected numbers separated by commas, got {text!r}")
    if not sigmas or min(sigmas) < 0:
        parser.error(f"{option}: need at least one non-negative value")
    return sigmas


def read_partial(
    path: Path, config: dict, name: str, *, comparable: Callable[[dict], dict] | None = None
) -> dict | None:
    """The saved partial results at ``path`` if they were made with ``config``, else None.

    Benchmarks cache finished pieces as ``{"config": config, ...}``; a missing, unreadable
    or other-configuration file means starting afresh (the last case is announced).
    ``comparable`` maps a configuration to the part that must match (default: all of it).
    """
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = comparable or (lambda c: c)
    if same(saved.get("config")) != same(config):
        print(f"{name}: {path.name} is from another configuration; starting afresh")
        return None
    return saved


def write_partial(path: Path, payload: dict) -> None:
    """Write partial results atomically (a stopped run never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload) + "\n")
    os.replace(tmp, path)
