"""The ``auto`` numeric path against every other path, side by side, on this machine.

Run from the repository root::

    python benchmarks/numeric_paths.py            # every case, a few minutes on 2 cores
    python benchmarks/numeric_paths.py --quick    # fewer repetitions

For each case every available path is timed in alternation (one run of each path per
round, so that load from other processes falls on all alike) and the median kept; a path
taking 3 times as long as the ``auto`` path is stopped there (SIGALRM) and reported as
that lower bound (``stopped_at_cap``), since it cannot be the fastest:

- a training step (forward, backward, Adam) of each distinct network among the shipped
  CPU recipes (recipes sharing a network share the case), batch 4 of the recipe's patch
  size: float32 / bfloat16 autocast, contiguous / channels-last;
- ``denoise`` (the shipped default model, tiled as the command does) of a 512×512 gray
  and a 3000×2000 RGB image: float32 / bfloat16;
- ``ntk denoise`` (default options, σ = 25) of a 256×256 and a 512×512 colour image:
  float32 (``single``) / int8 patch products;
- ``analyze spectrum`` of a 40×40 gray patch (one σ): float32 / float64 Jacobian.

Reported per case: the path ``auto`` takes here (:mod:`filterscope.machine`), each
path's median seconds, and ``auto / fastest`` (target ≤ 1.10). Also the seconds of
``ntk denoise`` 256×256 colour with default options (target ≤ 3 s on 2 cores) and of
``filterscope info`` from its cache (target < 1 s). Results:
``benchmarks/results/numeric_paths.json`` with the machine record.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from _common import SHARED, machine_record, print_table, write_results
from filterscope import machine
from filterscope.inference import denoise_tensor, prepare_model
from filterscope.io import read_image
from filterscope.models.zoo import default_model_name, load_model
from filterscope.ntk import denoise as ntk_denoise
from filterscope.training import load_recipe
from filterscope.training.trainer import _build_model, optimizer_step

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED / "data"
TRAIN_BATCH = 4
ALL = ("info", "ntk", "analyze", "train", "denoise")
CAP_FACTOR = 3.0


def _time(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


class _Stopped(Exception):
    """A path stopped at its time cap (it cannot be the fastest)."""


def _time_capped(run: Callable[[], object], cap: float | None) -> float:
    """Seconds of ``run()``; at most ``cap`` (then :class:`_Stopped`): SIGALRM interrupts
    it between two Python steps (a tile, a matrix block), so the stop lands within one."""
    if cap is None:
        return _time(run)

    def stop(signum, frame):
        raise _Stopped

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, cap)
    try:
        return _time(run)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def side_by_side(
    paths: dict[str, Callable[[], object]], rounds: int, *, auto: str
) -> tuple[dict[str, float], list[str]]:
    """Median seconds of each path, timed in alternation after one warm-up each (none for
    a single round: the large cases, whose first run is dominated by the work itself),
    and the paths stopped at their cap.

    ``auto``'s path runs first in each round; every other path is stopped once it takes
    :data:`CAP_FACTOR` times ``auto``'s time (its median is then that cap, a lower bound):
    a path that slow cannot be the fastest, and on a CPU without native bfloat16 or int8
    products those paths take 5-25 times longer and would dominate the run.
    """
    order = [auto] + [name for name in paths if name != auto]
    times: dict[str, list[float]] = {name: [] for name in order}
    stopped: list[str] = []
    reference = None
    for warm_up in ([True] if rounds > 1 else []) + [False] * rounds:
        for name in order:
            if name in stopped:
                continue
            cap = None if name == auto or reference is None else CAP_FACTOR * reference
            try:
                spent = _time_capped(paths[name], cap)
            except _Stopped:
                stopped.append(name)
                times[name] = [cap]
                continue
            if name == auto:
                reference = spent if reference is None else min(reference, spent)
            if not warm_up:
                times[name].append(spent)
    return {name: statistics.median(spent) for name, spent in times.items()}, stopped


def _row(case: str, auto: str, timed: tuple[dict[str, float], list[str]], **extra) -> dict:
    medians, stopped = timed
    fastest = min(medians, key=medians.get)
    return {
        "case": case,
        "auto": auto,
        "fastest": fastest,
        "auto_over_fastest": medians[auto] / medians[fastest],
        "seconds": medians,
        "stopped_at_cap": stopped,
        **extra,
    }


# ----------------------------------------------------------------------------- cases


def training_cases(rounds: int) -> list[dict]:
    """One case per distinct network of the shipped CPU recipes."""
    groups: dict[str, list[str]] = {}
    configs = {}
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        config = load_recipe(path)
        if path.name.startswith("gpu-") or config.arch not in ("drunet", "dncnn"):
            continue
        key = f"{config.arch} {config.in_channels}ch {config.arch_options} p{config.patch_size}"
        groups.setdefault(key, []).append(path.name)
        configs.setdefault(key, config)
    rows = []
    for key, names in groups.items():
        config = dataclasses.replace(configs[key], init_from="")  # the step, not the weights
        gen = torch.Generator().manual_seed(0)
        shape = (TRAIN_BATCH, config.in_channels, config.patch_size, config.patch_size)
        clean = torch.rand(shape, generator=gen)
        noisy = clean + 0.1 * torch.randn(shape, generator=gen)
        sigma = torch.full((TRAIN_BATCH,), 0.1)
        paths = {}
        for precision in ("float32", "bfloat16"):
            for last in (False, True):
                torch.manual_seed(0)
                model = _build_model(config)
                layout = torch.channels_last if last else torch.contiguous_format
                model = model.to(memory_format=layout)
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
                batch = noisy.contiguous(memory_format=layout)

                def step(m=model, o=optimizer, b=batch, c=clean, s=sigma, p=precision):
                    optimizer_step(m, o, b, c, sigma=s, precision=p)

                paths[f"{precision}{' channels-last' if last else ''}"] = step
        chosen = config.numeric_path("cpu")
        auto = chosen["precision"] + (" channels-last" if chosen["channels_last"] else "")
        medians = side_by_side(paths, rounds, auto=auto)
        rows.append(_row(f"train step {key}", auto, medians, recipes=names))
        print(f"  {key}: {medians}", flush=True)
    return rows


def _image(name: str, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """A shared test photo, tiled to ``size`` (rows, columns), as (1, C, H, W)."""
    image, _ = read_image(name)
    x = torch.from_numpy(image).permute(2, 0, 1)[:channels]
    reps = (1, -(-size[0] // x.shape[1]), -(-size[1] // x.shape[2]))
    return x.repeat(*reps)[:, : size[0], : size[1]].contiguous()[None]


DENOISE_CASES = {
    "small": ("denoise 512x512 gray", 1, (512, 512), DATA / "Set12" / "01.png"),
    "large": ("denoise 3000x2000 RGB", 3, (2000, 3000), DATA / "Kodak24" / "kodim01.png"),
}


def denoise_cases(which: str, rounds: int) -> list[dict]:
    rows = []
    for case, channels, size, source in [DENOISE_CASES[which]]:
        if not source.exists():
            source = next((DATA / ("BSD68" if channels == 1 else "CBSD68")).glob("*.png"))
        x = _image(str(source), channels, size)
        y = x + 25 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        network = load_model(default_model_name(channels))
        paths = {}
        for precision in ("float32", "bfloat16"):
            prepared = prepare_model(network, precision=precision)
            paths[precision] = lambda m=prepared, y=y: denoise_tensor(m, y)
        auto = machine.choose_precision("denoise", "cpu")
        medians = side_by_side(paths, rounds, auto=auto)
        rows.append(_row(case, auto, medians, model=default_model_name(channels)))
        print(f"  {case}: {medians}", flush=True)
    return rows


def ntk_cases(side: int, rounds: int) -> list[dict]:
    """``ntk denoise`` (default options, SURE, σ = 25) of a side × side colour image."""
    source = next(iter(sorted((DATA / "CBSD68").glob("*.png"))))
    x = _image(str(source), 3, (side, side))[0].double()
    gen = torch.Generator().manual_seed(0)
    y = x + 25 / 255 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    paths = {
        p: (lambda p=p: ntk_denoise(y, sigma=25 / 255, precision=p)) for p in ("single", "int8")
    }
    auto = "int8" if machine.choose_int8("ntk") else "single"
    medians = side_by_side(paths, rounds, auto=auto)
    print(f"  ntk {side}: {medians}", flush=True)
    return [_row(f"ntk denoise {side}x{side} colour", auto, medians)]


def analyze_case(rounds: int) -> dict:
    from filterscope.analysis.spectrum import spectrum_vs_sigma

    source = next(iter(sorted((DATA / "BSD68").glob("*.png"))))
    x = _image(str(source), 1, (40, 40))
    network = load_model(default_model_name(1))
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    paths = {
        name: (lambda d=d: spectrum_vs_sigma(network, x, [25 / 255], dtype=d))
        for name, d in dtypes.items()
    }
    auto = machine.choose_precision("analyze")
    medians = side_by_side(paths, rounds, auto=auto)
    print(f"  analyze: {medians}", flush=True)
    return _row("analyze spectrum 40x40 gray", auto, medians)


def info_seconds(rounds: int) -> float:
    command = [sys.executable, "-m", "filterscope", "info", "--json"]
    subprocess.run(command, check=True, capture_output=True)  # fills the cache if empty
    return statistics.median(
        _time(lambda: subprocess.run(command, check=True, capture_output=True))
        for _ in range(rounds)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--only", choices=ALL, action="append", help="only these cases (repeatable)"
    )
    args = parser.parse_args()
    small, large = (2, 1) if args.quick else (3, 1)
    only = set(args.only or ALL)
    started = time.perf_counter()
    rows: list[dict] = []
    info = info_seconds(5) if "info" in only else None
    if info is not None:
        print(f"  filterscope info: {info:.3f} s", flush=True)
    steps = {  # cheap and most asked-for first; the results are written after each
        ("ntk", 0): lambda: ntk_cases(256, small),
        ("analyze", 0): lambda: [analyze_case(small + 2)],
        ("train", 0): lambda: training_cases(small),
        ("denoise", 0): lambda: denoise_cases("small", small),
        ("denoise", 1): lambda: denoise_cases("large", large),
        ("ntk", 1): lambda: ntk_cases(512, large),
    }
    wanted = [step for (name, _), step in steps.items() if name in only]
    name = "numeric_paths" + ("" if only == set(ALL) else "_partial")
    for done, step in enumerate(wanted, 1):
        rows += step()
        payload = _payload(rows, info, (small, large), started, done == len(wanted))
        path = write_results(name, payload)
    _print(rows, payload, path)


def _payload(rows, info, rounds, started, complete) -> dict:
    ntk256 = next((r for r in rows if r["case"].startswith("ntk denoise 256")), None)
    ntk_seconds = None if ntk256 is None else ntk256["seconds"][ntk256["auto"]]
    return {
        "machine": machine_record(),
        "protocol": {
            "rounds": {"small": rounds[0], "large": rounds[1]},
            "train_batch": TRAIN_BATCH,
            "note": "medians of paths timed in alternation; the machine may be shared",
        },
        "complete": complete,
        "cases": rows,
        "targets": {
            "auto_within_10_percent": all(r["auto_over_fastest"] <= 1.10 for r in rows),
            "ntk_256_colour_seconds": ntk_seconds,
            "ntk_256_colour_within_3_s": None if ntk_seconds is None else ntk_seconds <= 3.0,
            "info_seconds": info,
            "info_under_1_s": None if info is None else info < 1.0,
        },
        "seconds": time.perf_counter() - started,
    }


def _print(rows: list[dict], payload: dict, path: Path) -> None:
    table = [
        {
            "case": r["case"],
            "auto": r["auto"],
            "auto s": r["seconds"][r["auto"]],
            "fastest": r["fastest"],
            "fastest s": r["seconds"][r["fastest"]],
            "auto/fastest": r["auto_over_fastest"],
            "others": ", ".join(
                f"{k} {'>' if k in r['stopped_at_cap'] else ''}{v:.3g}"
                for k, v in r["seconds"].items()
                if k not in (r["auto"], r["fastest"])
            ),
        }
        for r in rows
    ]
    print(
        f"machine: {payload['machine']['cpu']}, {payload['machine']['capability']}, "
        f"torch {payload['machine']['torch']}, {payload['machine']['threads']} threads"
    )
    print_table(table, ["case", "auto", "auto s", "fastest", "fastest s", "auto/fastest", "others"])
    print(f"targets: {payload['targets']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
