"""Evaluation fidelity and speed: all 24 published checkpoints against published_metrics.json.

Mohan et al. (ICLR 2020) published mean PSNR/SSIM on BSD68 (68 gray images) at
σ = 10, 20, …, 100 (0–255 scale) for their checkpoints (DnCNN, RCNN, UNet; bias and
bias-free; trained on σ ∈ [0, 10], [0, 30], [0, 55], [0, 100]). This script runs
:func:`filterscope.evaluation.evaluate` (the ``filterscope evaluate`` protocol) on them
and checks two targets of issue 4:

- **fidelity**: for every checkpoint at σ = 30 and 90, and for the eight DnCNN
  checkpoints at all ten σ, |ΔPSNR| ≤ 0.05 dB and |ΔSSIM| ≤ 0.002 against the
  published values (one noise draw per image and σ: draws alone move a 68-image mean
  by about 0.01 dB);
- **speed**: a full 10-σ BSD68 sweep of one DnCNN checkpoint (680 passes on
  481×321 images) in under 10 minutes on 2 CPU cores, at the precision given
  (default float32: the folded float32 fast path, which reproduces the published
  numbers; bfloat16 is faster on CPUs with native bfloat16).

Run from the repository root::

    python benchmarks/evaluate_fidelity.py                       # everything (over an hour)
    python benchmarks/evaluate_fidelity.py --models 'dncnn/*'    # the DnCNN checkpoints
    python benchmarks/evaluate_fidelity.py --no-speed --figures  # + Figure 3 from the results
    python benchmarks/evaluate_fidelity.py --limit-images 2 --sigmas 30 \\
        --models dncnn/bias_free/0-10                             # smoke run

``--models`` takes comma-separated keys of ``published_metrics.json`` or shell-style
patterns (``'*/bias_free/*'``). Each finished (model, σ) result, and the speed run,
is cached in ``benchmarks/results/evaluate_fidelity.partial.json``, so an interrupted
run continues where it stopped (``--restart`` ignores the cache; the cache is only
reused for the same images, seed and precision). Results go to
``benchmarks/results/evaluate_fidelity.json`` and are printed as markdown tables.
Pass/fail is decided only on the full 68-image set.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from _common import (
    RESULTS_DIR,
    SHARED,
    parse_sigma_list,
    print_table,
    read_partial,
    write_partial,
    write_results,
)
from filterscope import load_checkpoint
from filterscope.evaluation import evaluate, load_image_folder
from filterscope.models.fast import PRECISIONS

NAME = "evaluate_fidelity"
PUBLISHED_SIGMAS = [10.0 * (i + 1) for i in range(10)]  # entry i of every published list
CHECKED_SIGMAS = [30.0, 90.0]  # every checkpoint; DnCNN at all of PUBLISHED_SIGMAS
PSNR_TOLERANCE_DB = 0.05
SSIM_TOLERANCE = 0.002
SPEED_TARGET_SECONDS = 600.0
FULL_SET_SIZE = 68
ARCHS = ("dncnn", "rcnn", "unet")
KINDS = ("bias", "bias_free")
RANGES = ("0-10", "0-30", "0-55", "0-100")
ALL_KEYS = [f"{a}/{k}/{r}" for a in ARCHS for k in KINDS for r in RANGES]
SPEED_MODEL = "dncnn/bias_free/0-55"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--models",
        default="*",
        help="comma-separated checkpoint keys or patterns, e.g. dncnn/bias_free/0-10 or "
        "'dncnn/*' (default: all 24)",
    )
    parser.add_argument(
        "--sigmas",
        default=None,
        help="comma-separated noise levels (0-255 scale) for every model (default: 30,90, "
        "and 10,20,...,100 for DnCNN)",
    )
    parser.add_argument(
        "--limit-images", type=int, default=None, help="use the first N BSD68 images"
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="arithmetic of the forward pass (filterscope.models.fast); default float32",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of the noise (default 0)")
    parser.add_argument(
        "--batch-size", type=int, default=1, help="images per forward pass (default 1)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--speed-model",
        default=SPEED_MODEL,
        help=f"checkpoint timed on a full 10-sigma sweep (default {SPEED_MODEL})",
    )
    parser.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    parser.add_argument(
        "--figures",
        action="store_true",
        help="also draw Figure 3 (DnCNN, bias against bias-free, PSNR and SSIM) from the "
        "checkpoints evaluated at 3 or more sigmas, into results/generalization/",
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=None,
        help="the shared folder (default: $FILTERSCOPE_SHARED, else ../shared)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--restart", action="store_true", help="ignore partial results of an earlier run"
    )
    args = parser.parse_args(argv)
    patterns = [p.strip() for p in args.models.split(",") if p.strip()]
    args.models = [k for k in ALL_KEYS if any(fnmatch.fnmatchcase(k, p) for p in patterns)]
    if not args.models:
        parser.error(f"--models: no checkpoint matches {patterns}; keys look like {ALL_KEYS[0]}")
    if args.sigmas is not None:
        args.sigmas = parse_sigma_list(parser, args.sigmas)
    if args.limit_images is not None and args.limit_images < 1:
        parser.error("--limit-images must be at least 1")
    if args.speed_model not in ALL_KEYS:
        parser.error(f"--speed-model: unknown checkpoint {args.speed_model!r}")
    return args


def draw_dncnn_figures(
    payload: dict, models: Models, out_dir: Path, *, precision: str
) -> list[Path]:
    """Figure 3 (output against input PSNR, and SSIM) of the DnCNN checkpoints evaluated
    at three or more σ; returns the files written (none if there is no such checkpoint).
    Architecture, bias and training range come from each checkpoint's card."""
    from filterscope.plotting.generalization import plot_generalization_grid

    by_model: dict[str, list[dict]] = {}
    for entry in payload["results"]:
        by_model.setdefault(entry["model"], []).append(entry)
    curves = [
        entry
        for model, entries in by_model.items()
        if model.startswith("dncnn/") and len(entries) >= 3
        for entry in entries
    ]
    if not curves:
        return []
    cards = {name: models[name].card for name in {entry["model"] for entry in curves}}
    described = {
        name: {
            "arch": card["arch"],
            "bias": card["bias"],
            "training_sigma_range_255": card["training"]["sigma_range_255"],
        }
        for name, card in cards.items()
    }
    images = payload["protocol"].get("num_images")
    title = f"BSD68 ({images} images), Gaussian noise, published DnCNN checkpoints, {precision}"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in ("psnr", "ssim"):
        path = out_dir / f"fig3_dncnn_bsd68_{metric}.png"
        plot_generalization_grid(
            {"protocol": payload["protocol"], "models": described, "results": curves},
            path,
            metric=metric,
            archs=("dncnn",),
            title=title,
        )
        written.append(path)
    return written


def sigmas_for(key: str, override: list[float] | None) -> list[float]:
    """The σ values checked for one checkpoint."""
    if override is not None:
        return override
    return PUBLISHED_SIGMAS if key.startswith("dncnn/") else CHECKED_SIGMAS


class Models:
    """Published checkpoints loaded and converted for inference once, on first use."""

    def __init__(self, pretrained: Path, precision: str):
        self.pretrained = pretrained
        self.precision = precision
        self._cache: dict[str, torch.nn.Module] = {}

    def path(self, key: str) -> Path:
        return self.pretrained / f"{key}.pt"

    def __getitem__(self, key: str) -> torch.nn.Module:
        if key not in self._cache:
            # Imported here: the fast path is an optional part of the library.
            from filterscope.models.fast import optimize_for_inference

            model = load_checkpoint(self.path(key))
            self._cache[key] = optimize_for_inference(model, precision=self.precision)
        return self._cache[key]


def load_partial(path: Path, config: dict) -> dict:
    """Cached ``{"done": {"key@sigma": entry}, "speed": {...} or None}`` of the same config."""
    saved = read_partial(path, config, NAME)
    if saved is None:
        return {"done": {}, "speed": None, "protocol": None}
    return {"done": dict(saved["done"]), "speed": saved.get("speed"), "protocol": saved["protocol"]}


def save_partial(path: Path, config: dict, cache: dict) -> None:
    write_partial(path, {"config": config, **cache})


def compare(entry: dict, published: dict, key: str, full_set: bool) -> dict:
    """One (model, σ) row: ours, published and the differences.

    ``within_tolerance`` is None on a subset of BSD68: the published values are means
    over all 68 images, so a subset's mean is not comparable.
    """
    sigma = entry["sigma"]
    row = {"model": key, "sigma": sigma, "psnr": entry["psnr"], "ssim": entry["ssim"]}
    row.update(psnr_in=entry["psnr_in"], ssim_in=entry["ssim_in"])
    if sigma not in PUBLISHED_SIGMAS or key not in published:
        return row
    i = PUBLISHED_SIGMAS.index(sigma)
    reference = published[key]
    row.update(
        psnr_published=reference["psnr"][i],
        delta_psnr=entry["psnr"] - reference["psnr"][i],
        ssim_published=reference["ssim"][i],
        delta_ssim=entry["ssim"] - reference["ssim"][i],
        delta_psnr_in=entry["psnr_in"] - (reference["psnr"][i] - reference["psnr_delta"][i]),
    )
    row["within_tolerance"] = (
        abs(row["delta_psnr"]) <= PSNR_TOLERANCE_DB and abs(row["delta_ssim"]) <= SSIM_TOLERANCE
        if full_set
        else None
    )
    return row


def convolution_flop(model: torch.nn.Module, height: int, width: int) -> float:
    """Floating-point operations (2 per multiply-add) of the convolutions of one pass.

    For networks of stride-1, size-preserving convolutions (DnCNN): every output pixel of
    a layer costs ``C_in / groups · k_h · k_w`` multiply-adds per output channel.
    """
    total = 0.0
    for conv in model.modules():
        if isinstance(conv, torch.nn.Conv2d):
            if conv.stride != (1, 1):
                raise ValueError("convolution_flop assumes stride-1 convolutions")
            out_channels, in_per_group, kh, kw = conv.weight.shape
            total += 2.0 * out_channels * in_per_group * kh * kw * height * width
    return total


def matmul_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """This CPU's dense matrix-product rate (GFLOP/s, best of ``repeats``): a reference
    for how close the network's convolutions run to what the machine can do."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dtype)
    b = torch.randn(size, size, generator=gen).to(dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def measure_speed(models: Models, key: str, images: list, args: argparse.Namespace) -> dict:
    """Wall time of one full 10-σ sweep of one checkpoint (noise, network, metrics), and
    the rate its convolutions reach against this CPU's dense matrix-product rate."""
    model = models[key]
    reference_gflops = matmul_gflops(PRECISIONS[args.precision])
    start = time.perf_counter()
    result = evaluate(
        {key: model},
        images,
        [s / 255.0 for s in PUBLISHED_SIGMAS],
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    network_seconds = sum(entry["seconds"] for entry in result["results"])
    flop = len(PUBLISHED_SIGMAS) * sum(
        convolution_flop(model, image.shape[-2], image.shape[-1]) for _, image in images
    )
    return {
        "model": key,
        "images": len(images),
        "sigmas": PUBLISHED_SIGMAS,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "network_seconds": network_seconds,
        "seconds_per_image_pass": seconds / (len(images) * len(PUBLISHED_SIGMAS)),
        "convolution_gflop_per_sweep": flop / 1e9,
        "convolution_gflops": flop / 1e9 / network_seconds,
        "matmul_gflops_same_precision": reference_gflops,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def headline(done: dict, full_set: bool) -> dict | None:
    """BF-DnCNN [0,10] minus DnCNN [0,10] at σ = 90 (the paper's claim: more than 10 dB)."""
    bias_free, bias = done.get("dncnn/bias_free/0-10@90"), done.get("dncnn/bias/0-10@90")
    if bias_free is None or bias is None:
        return None
    gap = bias_free["psnr"] - bias["psnr"]
    return {
        "gap_db_at_sigma_90": gap,
        "target_db": 10.0,
        "pass": (gap > 10.0) if full_set else None,
    }


@dataclass
class _Run:
    """What one invocation works on: the data, the checkpoints and the cache file."""

    published: dict
    images: list
    full_set: bool
    models: Models
    config: dict
    partial_path: Path


def _prepare(args: argparse.Namespace) -> _Run:
    """Find BSD68 and the published metrics (exit when absent) and load the images."""
    shared = (args.shared or SHARED).resolve()
    bsd68 = shared / "data" / "BSD68"
    reference = shared / "reference" / "bias_free_denoising"
    metrics_file = reference / "published_metrics.json"
    if not bsd68.is_dir() or not metrics_file.exists():
        sys.exit(f"{NAME}: BSD68 or published_metrics.json not found under {shared} (--shared)")
    published = json.loads(metrics_file.read_text())
    images = load_image_folder(bsd68, limit=args.limit_images)
    return _Run(
        published=published,
        images=images,
        full_set=len(images) == FULL_SET_SIZE,
        models=Models(reference / "pretrained", args.precision),
        config={"images": [n for n, _ in images], "seed": args.seed, "precision": args.precision},
        partial_path=RESULTS_DIR / f"{NAME}.partial.json",
    )


def _evaluate_pairs(run: _Run, cache: dict, todo: list, args: argparse.Namespace) -> None:
    """Evaluate each (model, σ) of ``todo`` into ``cache["done"]``, saving after each."""
    done = cache["done"]
    # σ outer, model inner: the noisy images of one σ are drawn once per model (cheap),
    # and every finished (model, σ) is saved at once, so an interruption loses one pass.
    for step, (key, sigma) in enumerate(sorted(todo, key=lambda t: (t[1], t[0])), start=1):
        t0 = time.perf_counter()
        result = evaluate(
            {key: run.models[key]},
            run.images,
            [sigma / 255.0],
            seed=args.seed,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
        (entry,) = result["results"]
        done[f"{key}@{sigma:g}"] = entry
        cache["protocol"] = result["protocol"]
        save_partial(run.partial_path, run.config, cache)
        print(
            f"{NAME}: [{step}/{len(todo)}] {key} sigma {sigma:g}: {entry['psnr']:.3f} dB "
            f"({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )


def _speed_result(run: _Run, cache: dict, args: argparse.Namespace) -> dict | None:
    """The speed run (cached, or measured now unless ``--no-speed``) with its verdict."""
    speed = cache.get("speed")
    if not args.no_speed and (speed is None or speed["model"] != args.speed_model):
        speed = measure_speed(run.models, args.speed_model, run.images, args)
        cache["speed"] = speed
        save_partial(run.partial_path, run.config, cache)
    if speed is None:
        return None
    return {
        **speed,
        "target_seconds": SPEED_TARGET_SECONDS,
        "pass": (speed["seconds"] < SPEED_TARGET_SECONDS) if run.full_set else None,
    }


def _fidelity(rows: list[dict], full_set: bool) -> dict:
    """The fidelity verdict over the rows compared with a published value."""
    checked = [r for r in rows if "delta_psnr" in r]
    return {
        "pass": all(r["within_tolerance"] for r in checked) if full_set and checked else None,
        "rule": f"|dPSNR| <= {PSNR_TOLERANCE_DB} dB and |dSSIM| <= {SSIM_TOLERANCE} for "
        "every checked (model, sigma), decided only on the full 68-image set",
        "checked": len(checked),
        "within_tolerance": sum(bool(r["within_tolerance"]) for r in checked) if full_set else None,
        "max_abs_delta_psnr": max((abs(r["delta_psnr"]) for r in checked), default=None),
        "max_abs_delta_ssim": max((abs(r["delta_ssim"]) for r in checked), default=None),
    }


def _payload(run: _Run, cache: dict, plan: list, speed: dict | None, start: float) -> dict:
    """The results file's content."""
    done = cache["done"]
    rows = [
        compare(done[f"{key}@{sigma:g}"], run.published, key, run.full_set) for key, sigma in plan
    ]
    protocol = cache["protocol"]
    if protocol is not None:  # the protocol of one pass, with the σ values of the whole run
        protocol = {**protocol, "sigmas_255": sorted({sigma for _, sigma in plan})}
    return {
        "benchmark": NAME,
        "description": (
            "filterscope's evaluation of the 24 published checkpoints of Mohan et al. "
            "(ICLR 2020) on BSD68 against published_metrics.json, and the time of a full "
            "10-sigma BSD68 sweep of one DnCNN checkpoint"
        ),
        "full_set": run.full_set,
        "fidelity": _fidelity(rows, run.full_set),
        "headline": headline(done, run.full_set),
        "speed": speed,
        "protocol": protocol,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "seconds_this_run": time.perf_counter() - start,
        },
        "rows": rows,
        "results": [done[f"{key}@{sigma:g}"] for key, sigma in plan],
    }


def _fmt(value, spec) -> str:
    return "" if value is None else format(value, spec)


VERDICT = {True: "PASS", False: "FAIL", None: "n/a (subset of BSD68)"}


def _print_rows(rows: list[dict]) -> None:
    print("\nBSD68 mean PSNR (dB) / SSIM, ours against published (sigma on the 0-255 scale)")
    table = [
        {
            "model": r["model"],
            "σ": f"{r['sigma']:g}",
            "PSNR ours": _fmt(r["psnr"], ".3f"),
            "PSNR published": _fmt(r.get("psnr_published"), ".3f"),
            "ΔPSNR": _fmt(r.get("delta_psnr"), "+.3f"),
            "SSIM ours": _fmt(r["ssim"], ".4f"),
            "SSIM published": _fmt(r.get("ssim_published"), ".4f"),
            "ΔSSIM": _fmt(r.get("delta_ssim"), "+.4f"),
            "ok": {True: "yes", False: "NO", None: ""}[r.get("within_tolerance")],
        }
        for r in rows
    ]
    print_table(table, list(table[0]))


def _print_speed(speed: dict) -> None:
    print(
        f"speed: {speed['model']}, {speed['images']} images x 10 sigmas in "
        f"{speed['seconds']:.1f} s ({speed['precision']}, {speed['threads']} threads): "
        f"{VERDICT[speed['pass']]} (target < {SPEED_TARGET_SECONDS:.0f} s on the full set)"
    )
    if "convolution_gflops" in speed:
        print(
            f"speed: convolutions at {speed['convolution_gflops']:.0f} GFLOP/s "
            f"({speed['convolution_gflop_per_sweep']:.0f} GFLOP per sweep); a dense "
            f"{speed['precision']} matrix product here: "
            f"{speed['matmul_gflops_same_precision']:.0f} GFLOP/s"
        )


def _print_report(payload: dict) -> None:
    """The comparison table, the verdicts, the headline gap and the speed."""
    _print_rows(payload["rows"])
    fidelity = payload["fidelity"]
    counted = (
        f"{fidelity['within_tolerance']} of {fidelity['checked']} within tolerance"
        if payload["full_set"]
        else f"{fidelity['checked']} compared, not judged"
    )
    print(
        f"\nfidelity: {VERDICT[fidelity['pass']]}: {counted}, "
        f"max |dPSNR| {_fmt(fidelity['max_abs_delta_psnr'], '.3f')} dB, "
        f"max |dSSIM| {_fmt(fidelity['max_abs_delta_ssim'], '.4f')}"
    )
    if payload["headline"] is not None:
        gap = payload["headline"]["gap_db_at_sigma_90"]
        print(f"headline: BF-DnCNN [0,10] - DnCNN [0,10] at sigma 90 = {gap:+.2f} dB (target > 10)")
    if payload["speed"] is not None:
        _print_speed(payload["speed"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run = _prepare(args)
    cache = (
        {"done": {}, "speed": None, "protocol": None}
        if args.restart
        else load_partial(run.partial_path, run.config)
    )
    plan = [(key, sigma) for key in args.models for sigma in sigmas_for(key, args.sigmas)]
    todo = [(key, sigma) for key, sigma in plan if f"{key}@{sigma:g}" not in cache["done"]]
    print(
        f"{NAME}: {len(run.images)} BSD68 images, {len(plan)} (model, sigma) pairs, "
        f"{len(todo)} to compute, precision {args.precision}, "
        f"{torch.get_num_threads()} threads",
        file=sys.stderr,
    )

    start = time.perf_counter()
    _evaluate_pairs(run, cache, todo, args)
    speed = _speed_result(run, cache, args)
    payload = _payload(run, cache, plan, speed, start)
    path = write_results(NAME, payload)
    _print_report(payload)
    print(f"results: {path}")
    if args.figures:
        for figure in draw_dncnn_figures(
            payload, run.models, RESULTS_DIR / "generalization", precision=args.precision
        ):
            print(f"figure: {figure}")
    # The partial file is kept: it caches finished (model, sigma) results for later runs.
    failed = payload["fidelity"]["pass"] is False or (speed is not None and speed["pass"] is False)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
