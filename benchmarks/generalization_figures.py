"""Figures 3, 11, 12, 18 and 19 of Mohan et al. (ICLR 2020), from our own evaluation.

Every published checkpoint (DnCNN, recurrent CNN, UNet; with and without bias; trained
on σ ∈ [0, 10], [0, 30], [0, 55], [0, 100]), our two shipped gray models and the
classical baselines (BM3D and NLM, given the true σ) are evaluated with
:func:`filterscope.evaluation.evaluate_models` — the ``filterscope evaluate`` protocol —
on the first ``--images`` BSD68 images at σ = 10, 20, …, 100, with Gaussian noise and
with uniform noise of the same standard deviation. Then:

- ``fig3_dncnn_psnr.png``: DnCNN with and without bias, output PSNR against input PSNR,
  one panel per training range (shaded) — Figure 3;
- ``fig11_psnr.png`` / ``fig12_ssim.png``: the same for every architecture — Figures 11
  and 12 (there is no published simplified DenseNet checkpoint, so three rows, not four);
- ``fig18_dncnn_uniform.png`` / ``fig19_uniform.png``: Gaussian-trained networks on
  uniform noise — Figures 18 and 19;
- ``ours_psnr.png``: our shipped ``bf-dncnn-gray`` and ``dncnn-gray`` (both trained on
  [0, 55] with the CPU recipe) beside BM3D and NLM;

all under ``benchmarks/results/generalization/``, with the two evaluation results
(``gaussian.json``, ``uniform.json``, the ``filterscope evaluate --json`` format) and a
summary ``benchmarks/results/generalization_figures.json``.

The figure protocol trades images for coverage: 24 checkpoints × 10 σ × 2 noise kinds on
all 68 images would take about 40 hours of the 2 CPU cores in float32. Defaults: 3
images, networks in bfloat16 (:mod:`filterscope.models.fast`; it moves a DnCNN's PSNR by
about 0.02 dB and SSIM by about 0.004 at σ = 90, invisible at the scale of these figures,
whose bias/bias-free gaps are several dB). ``--images 68 --precision float32`` is the full
protocol (for a GPU, or days of CPU). The numbers against the published ones are checked
by ``benchmarks/evaluate_fidelity.py``, not here.

Run from the repository root::

    python benchmarks/generalization_figures.py                 # about an hour on 2 cores
    python benchmarks/generalization_figures.py --images 1 --sigmas 30,90 --models 'dncnn/*/0-10'

Each finished (noise, model) sweep is cached in
``benchmarks/results/generalization_figures.partial.json`` (same images, σ, seed and
precision only), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import sys
import time
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
from filterscope.evaluation import evaluate_models

REPO = Path(__file__).resolve().parent.parent
NAME = "generalization_figures"
OUT_DIR = RESULTS_DIR / "generalization"
ARCHS = ("dncnn", "rcnn", "unet")
KINDS = ("bias", "bias_free")
RANGES = ("0-10", "0-30", "0-55", "0-100")
PUBLISHED_KEYS = [f"{a}/{k}/{r}" for a in ARCHS for k in KINDS for r in RANGES]
OURS = ("bf-dncnn-gray", "dncnn-gray")
BASELINES = ("bm3d", "nlm")
NOISES = ("gaussian", "uniform")
SIGMAS = [10.0 * (i + 1) for i in range(10)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--images", type=int, default=3, help="first N BSD68 images (default 3)")
    parser.add_argument(
        "--sigmas", default=None, help="comma-separated σ on the 0-255 scale (default 10..100)"
    )
    parser.add_argument(
        "--models",
        default="*",
        help="published checkpoint keys or patterns (default all 24), e.g. 'dncnn/*'",
    )
    parser.add_argument("--no-ours", action="store_true", help="skip our shipped models")
    parser.add_argument("--no-baselines", action="store_true", help="skip BM3D and NLM")
    parser.add_argument(
        "--noise", choices=(*NOISES, "both"), default="both", help="noise kinds (default both)"
    )
    parser.add_argument(
        "--precision", choices=("float32", "bfloat16"), default="bfloat16", help="networks"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of the noise")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--shared",
        type=Path,
        default=None,
        help="the shared folder (default: $FILTERSCOPE_SHARED, else ../shared)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--restart", action="store_true", help="ignore cached sweeps")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    args.sigmas = SIGMAS if args.sigmas is None else parse_sigma_list(parser, args.sigmas)
    patterns = [p.strip() for p in args.models.split(",") if p.strip()]
    args.models = [k for k in PUBLISHED_KEYS if any(fnmatch.fnmatchcase(k, p) for p in patterns)]
    args.noises = list(NOISES) if args.noise == "both" else [args.noise]
    return args


def model_specs(args: argparse.Namespace, shared: Path) -> list[str]:
    """Model specs as ``filterscope evaluate`` takes them, paths relative to the repo."""
    pretrained = shared / "reference" / "bias_free_denoising" / "pretrained"
    specs = [os.path.relpath(pretrained / f"{key}.pt", REPO) for key in args.models]
    if not args.no_ours:
        specs += list(OURS)
    if not args.no_baselines:
        specs += list(BASELINES)
    return specs


def merge(sweeps: list[dict]) -> dict:
    """One evaluation result holding the models of several single-model sweeps."""
    merged = {"protocol": dict(sweeps[0]["protocol"]), "models": {}, "results": []}
    for sweep in sweeps:
        merged["models"].update(sweep.get("models", {}))
        merged["results"].extend(sweep["results"])
    return merged


def subset(result: dict, names: list[str]) -> dict:
    """The part of an evaluation result about the models ``names``."""
    keep = set(names)
    return {
        "protocol": result["protocol"],
        "models": {k: v for k, v in result["models"].items() if k in keep},
        "results": [r for r in result["results"] if r["model"] in keep],
    }


# (file, metric, architecture rows or None for all) per noise kind
FIGURES = {
    "gaussian": [
        ("fig3_dncnn_psnr.png", "psnr", ("dncnn",)),
        ("fig11_psnr.png", "psnr", None),
        ("fig12_ssim.png", "ssim", None),
    ],
    "uniform": [
        ("fig18_dncnn_uniform_psnr.png", "psnr", ("dncnn",)),
        ("fig19_uniform_psnr.png", "psnr", None),
    ],
}


def draw_figures(
    results: dict[str, dict], out_dir: Path, *, images: int, precision: str
) -> list[Path]:
    """Every figure the evaluated models allow; returns the files written.

    Our shipped models share architecture and training range with the published
    DnCNN [0, 55] pair, so they get a figure of their own beside the baselines instead
    of a place in the grids.
    """
    from filterscope.plotting.generalization import plot_generalization, plot_generalization_grid

    written = []
    for noise, result in results.items():
        title = f"BSD68 (first {images} images), {noise} noise, networks in {precision}"
        names = list(result["models"])
        published = [n for n in names if n not in OURS]
        archs_present = {a for a in ARCHS for n in published if f"/{a}/" in n}
        if archs_present:
            grid = subset(result, published)
            for file_name, metric, archs in FIGURES[noise]:
                if archs is not None and not set(archs) & archs_present:
                    continue
                path = out_dir / file_name
                plot_generalization_grid(grid, path, metric=metric, archs=archs, title=title)
                written.append(path)
        ours = [n for n in (*OURS, *BASELINES) if n in names]
        if any(n in OURS for n in ours):
            path = out_dir / f"ours_{noise}_psnr.png"
            plot_generalization(result, path, models=ours, title=title)
            written.append(path)
    return written


def summary_rows(result: dict, noise: str) -> list[dict]:
    rows = []
    for entry in result["results"]:
        name = entry["model"]
        short = name.split("pretrained/")[-1].removesuffix(".pt")
        rows.append(
            {
                "noise": noise,
                "model": short,
                "sigma": entry["sigma"],
                "psnr_in": round(entry["psnr_in"], 3),
                "psnr": round(entry["psnr"], 3),
                "ssim_in": round(entry["ssim_in"], 4),
                "ssim": round(entry["ssim"], 4),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shared = args.shared or SHARED
    data = shared / "data" / "BSD68"
    if not data.is_dir():
        print(f"{NAME}: no BSD68 folder at {data}; pass --shared", file=sys.stderr)
        return 2
    specs = model_specs(args, shared)
    config = {
        "images": args.images,
        "sigmas": args.sigmas,
        "seed": args.seed,
        "precision": args.precision,
    }
    cache_path = RESULTS_DIR / f"{NAME}.partial.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    saved = None if args.restart else read_partial(cache_path, config, NAME)
    done = {} if saved is None else dict(saved["done"])
    start = time.perf_counter()
    results = {}
    for noise in args.noises:
        sweeps = []
        for spec in specs:
            key = f"{noise}|{spec}"
            if key not in done:
                t0 = time.perf_counter()
                sweep = evaluate_models(
                    [spec],
                    data,
                    [s / 255.0 for s in args.sigmas],
                    noise=noise,
                    seed=args.seed,
                    precision=args.precision,
                    limit=args.images,
                    progress=not args.no_progress,
                )
                sweep["seconds"] = time.perf_counter() - t0
                done[key] = sweep
                write_partial(cache_path, {"config": config, "done": done})
                print(f"{NAME}: {noise} {spec}: {sweep['seconds']:.0f} s", flush=True)
            sweeps.append(done[key])
        results[noise] = merge(sweeps)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for noise, result in results.items():
        (OUT_DIR / f"{noise}.json").write_text(json.dumps(result, indent=1) + "\n")
    figures = draw_figures(results, OUT_DIR, images=args.images, precision=args.precision)

    rows = [row for noise, result in results.items() for row in summary_rows(result, noise)]
    payload = {
        "benchmark": NAME,
        "config": {**config, "models": specs, "noises": args.noises, "data": "BSD68"},
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "seconds_this_run": time.perf_counter() - start,
        "figures": [os.path.relpath(p, REPO) for p in figures],
        "rows": rows,
    }
    path = write_results(NAME, payload)
    wanted = {10.0, 50.0, 90.0}
    print_table(
        [r for r in rows if r["sigma"] in wanted],
        ["noise", "model", "sigma", "psnr_in", "psnr", "ssim"],
    )
    print(f"\nwrote {os.path.relpath(path, REPO)} and {len(figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
