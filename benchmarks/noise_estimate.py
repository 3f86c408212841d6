"""How should the blind default estimate σ? ``flat_fraction`` of the noise-level estimator.

Run from the repository root (needs ../shared)::

    python benchmarks/noise_estimate.py                       # about 12 minutes on 2 cores
    python benchmarks/noise_estimate.py --fractions 0.25,0.1 --sigmas 5 --images 12

Two measurements of :func:`filterscope.noise.estimate_noise_level` at each
``flat_fraction``:

1. **Accuracy on the training images** (every 4th BSD400 image, 180×180, Gaussian noise
   from a fixed generator): bias and root-mean-square of the relative error σ̂/σ − 1.
   A fraction is chosen here, on data the network was trained on, not on the test set.
2. **What it does to the default** on BSD68 (the noisy images of
   ``benchmarks/denoiser_quality.py``): mean PSNR of the gray default told σ, and run
   non-blind with σ̂ at each fraction (the shipped blind path is the row of the
   estimator's default fraction).

Results: ``benchmarks/results/noise_estimate.json``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor

import torch

from _common import SHARED, print_table, write_results


def accuracy(fractions: list[float], sigmas: list[float]) -> list[dict]:
    """Bias and rms of σ̂/σ − 1 over every 4th BSD400 image, one row per σ."""
    from filterscope.io import read_image, to_tensor
    from filterscope.noise import estimate_noise_level

    files = sorted((SHARED / "data/BSD400").glob("*.png"))[::4]
    cleans = [to_tensor(read_image(p)[0]) for p in files]
    generator = torch.Generator().manual_seed(0)
    rows = []
    for sigma in sigmas:
        errors: dict[float, list[float]] = {f: [] for f in fractions}
        for clean in cleans:
            noisy = clean + torch.randn(clean.shape, generator=generator) * sigma / 255
            for fraction in fractions:
                estimate = float(estimate_noise_level(noisy, flat_fraction=fraction)) * 255
                errors[fraction].append(estimate / sigma - 1)
        row: dict = {"sigma": sigma}
        for fraction, values in errors.items():
            row[f"bias {fraction}"] = round(100 * statistics.fmean(values), 2)
            row[f"rms {fraction}"] = round(100 * statistics.fmean(v * v for v in values) ** 0.5, 2)
        rows.append(row)
    return rows


@functools.cache
def _default_gray_model():
    from denoiser_quality import _load
    from filterscope.models.zoo import default_model_name

    torch.set_num_threads(1)
    return _load(default_model_name(1))


def _image_psnrs(job: tuple[str, int, float, list[float]]) -> dict[str, float]:
    """PSNR of the default on one noisy BSD68 image: told σ and with σ̂ per fraction."""
    from denoiser_quality import _noisy
    from filterscope.io import read_image, to_tensor
    from filterscope.metrics import psnr
    from filterscope.noise import estimate_noise_level

    path, index, sigma, fractions = job
    model = _default_gray_model()
    clean = to_tensor(read_image(path)[0])
    noisy = _noisy(clean, index, sigma)
    with torch.inference_mode():
        scores = {"told": float(psnr(model(noisy, sigma / 255).float(), clean)[0])}
        for fraction in fractions:
            estimate = estimate_noise_level(noisy, flat_fraction=fraction)
            scores[str(fraction)] = float(psnr(model(noisy, estimate).float(), clean)[0])
    return scores


def quality(fractions: list[float], sigmas: list[float], images: int, jobs: int) -> list[dict]:
    files = sorted((SHARED / "data/BSD68").glob("*.png"))[:images]
    work = [(str(p), i, s, fractions) for s in sigmas for i, p in enumerate(files)]
    with ProcessPoolExecutor(jobs) as pool:
        scores = list(pool.map(_image_psnrs, work))
    rows = []
    for sigma in sigmas:
        mine = [row for (_, _, s, _), row in zip(work, scores, strict=True) if s == sigma]
        rows.append(
            {"sigma": sigma, **{k: round(statistics.fmean(r[k] for r in mine), 4) for k in mine[0]}}
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", default="0.25,0.15,0.1", help="flat_fraction values")
    parser.add_argument("--sigmas", default="5,10,25,50,100", help="sigmas (0-255)")
    parser.add_argument("--images", type=int, default=68, help="first N BSD68 images")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the BSD68 part")
    args = parser.parse_args()
    try:
        fractions = [float(f) for f in args.fractions.split(",")]
        sigmas = [float(s) for s in args.sigmas.split(",")]
    except ValueError:
        print("--fractions, --sigmas: comma-separated numbers", file=sys.stderr)
        return 2
    if args.images < 1 or any(s <= 0 for s in sigmas):
        print(
            f"--images must be >= 1 and --sigmas > 0, got {args.images}, {args.sigmas}",
            file=sys.stderr,
        )
        return 2
    if not (SHARED / "data/BSD68").is_dir() or not (SHARED / "data/BSD400").is_dir():
        print(f"needs {SHARED}/data/BSD68 and BSD400", file=sys.stderr)
        return 2
    if any(not 0 < f <= 1 for f in fractions):
        print(f"--fractions: each must be in (0, 1], got {args.fractions}", file=sys.stderr)
        return 2
    accuracy_rows = accuracy(fractions, sigmas)
    print("Relative error of the estimate on BSD400 (every 4th image), % (bias, rms)")
    print_table(accuracy_rows, list(accuracy_rows[0]))
    quality_rows = quality(fractions, sigmas, args.images, args.jobs)
    title = f"Default gray model on BSD68 ({args.images} images), mean PSNR (dB)"
    print(f"\n{title}: told σ, and σ̂ at each fraction")
    print_table(quality_rows, list(quality_rows[0]))
    write_results(
        "noise_estimate",
        {
            "command": " ".join(["python benchmarks/noise_estimate.py"] + sys.argv[1:]),
            "bsd400_relative_error_percent": accuracy_rows,
            "bsd68_psnr": {"images": args.images, "rows": quality_rows},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
