"""Plug-and-play deblurring on Set12: denoisers as the prior of DPIR's half-quadratic splitting.

Run from the repository root::

    python benchmarks/pnp_deblur.py                       # 12 images, shipped default
    python benchmarks/pnp_deblur.py --images 1 --model runs/x/model.safetensors

Each Set12 image is blurred circularly by a Gaussian of width (standard deviation) 1.6
pixels and gets white Gaussian noise of σ_n = 0.02 (image scale, 5.1 on the 0-255
scale), fixed per image by the seed. The same loop,
:func:`filterscope.restoration.hqs_deblur` (DPIR, Zhang et al., TPAMI 2022: 8
iterations, σ_k log-spaced from 49/255 down to σ_n, exact FFT data step), then runs
with three priors:

- ``model``: a filterscope network (``--model``: shipped name or checkpoint path;
  default: the shipped default for gray images), told σ_k at each iteration (a blind
  model ignores it);
- ``bm3d``: BM3D given σ_k (``bm3d`` package, ``profile="np"``);
- ``published``: the published blind BF-DnCNN trained on σ ∈ [0, 100] (Mohan et al.,
  ICLR 2020), which cannot be told σ_k.

PSNR (estimate clipped to [0, 1], data range 1) of the blurred input and of each result,
per image and on average; the time of each (image, prior) run, as CPU seconds of its
one-thread worker (what a quiet core would take; the wall time is recorded too). Images
run in parallel over ``--workers`` processes (one torch thread each), BM3D first since
it is the slow part (8 BM3D calls per image). deepinv's own ``DPIR`` is not used: deepinv is not
installed in this project's environment. Results: ``benchmarks/results/pnp_deblur.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from _common import SHARED, print_table, write_results

SET12 = SHARED / "data" / "Set12"
PUBLISHED = SHARED / "reference/bias_free_denoising/pretrained/dncnn/bias_free/0-100.pt"
BLUR_WIDTH = 1.6
NOISE_SIGMA = 0.02
PRIORS = ("model", "bm3d", "published")

_denoisers: dict[str, torch.nn.Module] = {}  # loaded once per worker process


def _denoiser(prior: str, model_spec: str):
    if prior not in _denoisers:
        if prior == "model":
            from filterscope.models.zoo import load_model

            _denoisers[prior] = load_model(model_spec).eval()
        elif prior == "bm3d":
            from filterscope.evaluation.baselines import BM3DDenoiser

            _denoisers[prior] = BM3DDenoiser(sigma_source="true")
        else:
            from filterscope.models.checkpoints import load_checkpoint

            _denoisers[prior] = load_checkpoint(PUBLISHED).eval()
    return _denoisers[prior]


def _degrade(path: Path, index: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean image and its blurred, noisy observation (noise fixed by seed and index)."""
    from filterscope.io import read_image, to_tensor
    from filterscope.restoration import circular_blur, gaussian_blur_kernel

    image, _ = read_image(path)
    x = to_tensor(image[..., :1])
    generator = torch.Generator().manual_seed(seed + index)
    noise = NOISE_SIGMA * torch.randn(x.shape, generator=generator)
    return x, circular_blur(x, gaussian_blur_kernel(BLUR_WIDTH)) + noise


def _run(task: tuple[str, Path, int, int, str, int]) -> dict:
    """One (image, prior) deblurring in a worker process."""
    from filterscope.metrics import psnr
    from filterscope.restoration import gaussian_blur_kernel, hqs_deblur

    prior, path, index, seed, model_spec, iterations = task
    torch.set_num_threads(1)
    x, y = _degrade(path, index, seed)
    denoiser = _denoiser(prior, model_spec)
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        x_hat = hqs_deblur(
            denoiser, y, gaussian_blur_kernel(BLUR_WIDTH), NOISE_SIGMA, iterations=iterations
        )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "image": path.name,
        "prior": prior,
        "size": list(x.shape[-2:]),
        "psnr_in": float(psnr(y, x)[0]),
        "psnr": float(psnr(x_hat, x)[0]),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12, help="first N images of Set12")
    parser.add_argument(
        "--model",
        default=None,
        help="filterscope model: shipped name or checkpoint path (default: the shipped "
        "default for gray images)",
    )
    parser.add_argument(
        "--priors",
        default=",".join(PRIORS),
        help=f"comma-separated subset of {','.join(PRIORS)} (default: all)",
    )
    parser.add_argument("--iterations", type=int, default=8, help="HQS iterations (DPIR: 8)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    args = parser.parse_args(argv)
    priors = [p.strip() for p in args.priors.split(",") if p.strip()]
    unknown = sorted(set(priors) - set(PRIORS))
    if unknown or not priors:
        parser.error(f"--priors: unknown {unknown}; choose from {', '.join(PRIORS)}")
    if not SET12.is_dir():
        print(f"pnp_deblur: {SET12} missing; skipped (set FILTERSCOPE_SHARED)", file=sys.stderr)
        return 0
    if "published" in priors and not PUBLISHED.exists():
        print(f"pnp_deblur: {PUBLISHED} missing; the published prior is skipped", file=sys.stderr)
        priors.remove("published")

    from filterscope.io import list_images
    from filterscope.models.zoo import default_model_name

    model_spec = args.model or default_model_name(1)
    from filterscope.errors import FilterscopeError

    model_card = {}
    if "model" in priors:  # fail here, in one line, rather than in every worker
        try:
            model_card = getattr(_denoiser("model", model_spec), "card", {})
        except FilterscopeError as exc:
            parser.error(f"--model: {exc}")
    paths = list_images(SET12)[: args.images]
    # The slow prior first, so the workers finish together.
    tasks = [
        (prior, path, index, args.seed, model_spec, args.iterations)
        for prior in sorted(priors, key=lambda p: p != "bm3d")
        for index, path in enumerate(paths)
    ]
    start = time.perf_counter()
    # Fresh worker processes (spawn): forking a process that has run torch can hang.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
        runs = list(pool.map(_run, tasks))
    wall = time.perf_counter() - start
    cpu_total = sum(run["cpu_seconds"] for run in runs)

    names = {"model": model_spec, "bm3d": "BM3D (given σ_k)", "published": "BF-DnCNN [0,100]"}
    per_image = []
    for path in paths:
        row = {"image": path.name}
        for run in runs:
            if run["image"] == path.name:
                row["blurred"] = run["psnr_in"]
                row[names[run["prior"]]] = run["psnr"]
        per_image.append(row)
    summary = []
    for prior in priors:
        mine = [r for r in runs if r["prior"] == prior]
        summary.append(
            {
                "prior": names[prior],
                "mean_psnr": sum(r["psnr"] for r in mine) / len(mine),
                "mean_psnr_in": sum(r["psnr_in"] for r in mine) / len(mine),
                "cpu_s_per_image_256": _mean(
                    [r["cpu_seconds"] for r in mine if r["size"][0] == 256]
                ),
                "cpu_s_per_image_512": _mean(
                    [r["cpu_seconds"] for r in mine if r["size"][0] == 512]
                ),
                "cpu_seconds": sum(r["cpu_seconds"] for r in mine),
            }
        )
    command = "python benchmarks/pnp_deblur.py" + "".join(
        f" {flag} {value}"
        for flag, value in (("--images", args.images), ("--model", args.model))
        if value is not None
    )
    payload = {
        "command": command,
        "setup": {
            "images": [p.name for p in paths],
            "blur": f"Gaussian, width (std) {BLUR_WIDTH} px, circular boundary",
            "noise_sigma": NOISE_SIGMA,
            "noise_sigma_255": NOISE_SIGMA * 255,
            "iterations": args.iterations,
            "schedule": "DPIR: sigma_k log-spaced 49/255 -> noise_sigma, mu_k = 0.23 "
            "noise_sigma^2 / sigma_k^2",
            "seed": args.seed,
            "workers": args.workers,
            "torch_threads_per_worker": 1,
        },
        "model": {"spec": model_spec, "description": model_card.get("description")},
        "wall_seconds": wall,
        "cpu_seconds": cpu_total,
        "summary": summary,
        "runs": runs,
    }
    path = write_results("pnp_deblur", payload)
    print(f"\nPlug-and-play deblurring, Set12 ({len(paths)} images): PSNR (dB)")
    print_table(per_image, ["image", "blurred", *(names[p] for p in priors)])
    print()
    print_table(
        summary,
        ["prior", "mean_psnr_in", "mean_psnr", "cpu_s_per_image_256", "cpu_s_per_image_512"],
    )
    print(
        f"\n{wall:.0f} s wall on {args.workers} workers, {cpu_total:.0f} CPU seconds "
        f"(about {cpu_total / args.workers:.0f} s on {args.workers} quiet cores); results in {path}"
    )
    return 0


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


if __name__ == "__main__":
    sys.exit(main())
