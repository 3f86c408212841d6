"""What the blind path costs against the same network told σ, on noise as files store it.

Run from the repository root (needs ../shared/data/BSD68 and Set12)::

    nice -n 10 python benchmarks/blind_estimate_cost.py --images 6
    nice -n 10 python benchmarks/blind_estimate_cost.py --model path/to/new.safetensors

For each set, σ and storage of the noisy image, the mean PSNR of the model run blind
(``sigma=None``, what ``filterscope denoise`` does) and told the true σ, and the cost
(told − blind, dB; the target is ≤ 0.1 at every σ). Three storages of the same noise:

- ``float``: the papers' protocol, Gaussian noise added and nothing else (values outside
  [0, 1] kept; the noise of ``benchmarks/denoiser_quality.py``, seeded per image and σ);
- ``8-bit``: that noisy image clipped to [0, 1] and rounded to 8 bits, as a PNG/JPEG
  stores it (:func:`filterscope.camera_noise.quantize`);
- ``16-bit``: clipped and rounded to 16 bits.

``mean σ̂`` is the noise level the blind path reads, on the 0-255 scale: the mean of the
model's noise map where it has an estimator, else the wavelet estimate of
:func:`filterscope.noise.estimate_noise_level`. Per-image results are cached in
``benchmarks/results/blind_estimate_cost.partial.json`` (keyed by the model's weights
and the estimator's source); results: ``benchmarks/results/blind_estimate_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from _common import RESULTS_DIR, SHARED, estimator_tag, parse_sigma_list, print_table, write_results

CACHE = RESULTS_DIR / "blind_estimate_cost.partial.json"
STORAGES = {"float": None, "8-bit": 8, "16-bit": 16}


def noisy_image(clean: torch.Tensor, index: int, sigma: float, bits: int | None) -> torch.Tensor:
    """The sweep's Gaussian noisy image (σ on 0-255), stored at ``bits`` (None: float)."""
    from filterscope.camera_noise import quantize
    from filterscope.evaluation.sweep import noise_seed
    from filterscope.noise import add_noise

    noisy = add_noise(clean, sigma / 255.0, generator=noise_seed(0, index, sigma / 255.0))
    return noisy if bits is None else quantize(noisy, bits)


def blind_level(model: torch.nn.Module, y: torch.Tensor) -> float:
    """The noise level (0-255) the blind path reads from ``y``."""
    from filterscope.noise import estimate_noise_level

    estimate = getattr(model, "estimate_noise_map", None)
    level = estimate(y) if estimate is not None else None
    if level is None:
        level = estimate_noise_level(y)
    return 255.0 * float(level.float().mean())


def measure(model, tag: str, sets: dict[str, list], sigmas, cache: dict, save) -> list[dict]:
    """Score what is missing and return one row per (set, σ, storage)."""
    from filterscope.inference import denoise_tensor
    from filterscope.metrics import psnr

    rows = []
    for set_name, images in sets.items():
        for sigma in sigmas:
            for storage, bits in STORAGES.items():
                blind, told, levels = [], [], []
                for index, (name, clean) in enumerate(images):
                    key = f"{tag}|{set_name}|{name}|{sigma:g}|{storage}"
                    if key not in cache:
                        start = time.perf_counter()
                        y = noisy_image(clean, index, sigma, bits)
                        with torch.inference_mode():
                            x_blind = denoise_tensor(model, y, sigma=None)
                            x_told = denoise_tensor(model, y, sigma=sigma / 255.0)
                            level = blind_level(model, y)
                        cache[key] = [
                            float(psnr(x_blind, clean)[0]),
                            float(psnr(x_told, clean)[0]),
                            level,
                        ]
                        save(cache)
                        seconds = time.perf_counter() - start
                        blind_db, told_db = cache[key][:2]
                        print(f"  {key}: {blind_db:.3f} / {told_db:.3f} dB ({seconds:.0f} s)")
                    b, t, level = cache[key]
                    blind.append(b)
                    told.append(t)
                    levels.append(level)
                rows.append(
                    {
                        "set": set_name,
                        "images": len(images),
                        "sigma": sigma,
                        "storage": storage,
                        "told": round(statistics.fmean(told), 3),
                        "blind": round(statistics.fmean(blind), 3),
                        "cost": round(statistics.fmean(told) - statistics.fmean(blind), 3),
                        "mean σ̂": round(statistics.fmean(levels), 2),
                    }
                )
    return rows


def _save(cache: dict) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=0) + "\n")
    tmp.replace(CACHE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="gray model spec (default: shipped)")
    parser.add_argument("--sets", default="Set12,BSD68", help="folders of ../shared/data")
    parser.add_argument("--images", type=int, default=0, help="first N images per set (0: all)")
    parser.add_argument("--sigmas", default="5,15,25,50,75,100", help="σ on 0-255")
    args = parser.parse_args()
    sigmas = parse_sigma_list(parser, args.sigmas)
    if args.images < 0 or 0 in sigmas:
        parser.error("--images must be >= 0 and --sigmas > 0")
    set_names = [s.strip() for s in args.sets.split(",") if s.strip()]
    missing = [s for s in set_names if not (SHARED / "data" / s).is_dir()]
    if not set_names or missing:
        print(f"filterscope: error: needs {SHARED}/data/{{{','.join(missing)}}}", file=sys.stderr)
        return 2
    from filterscope.errors import FilterscopeError
    from filterscope.hub import load_model
    from filterscope.io import list_images, read_image, to_tensor
    from filterscope.machine import machine_info
    from filterscope.models.zoo import default_model_name

    spec = default_model_name(1) if args.model == "default" else args.model
    try:
        model = load_model(spec).eval()
    except FilterscopeError as exc:
        print(f"filterscope: error: {exc}", file=sys.stderr)
        return 2
    from real_noise import weights_tag

    tag = f"{spec}#{weights_tag(model)}#estimator:{estimator_tag()}"
    sets = {}
    for set_name in set_names:
        files = list_images(SHARED / "data" / set_name)
        files = files[: args.images] if args.images else files
        sets[set_name] = [(p.name, to_tensor(read_image(p)[0])) for p in files]
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    rows = measure(model, tag, sets, sigmas, cache, _save)
    print(f"{spec}: blind vs told the true σ, mean PSNR (dB); cost = told − blind")
    print_table(rows, ["set", "images", "sigma", "storage", "told", "blind", "cost", "mean σ̂"])
    worst = max(rows, key=lambda r: r["cost"])
    where = f"{worst['set']}, σ={worst['sigma']:g}, {worst['storage']}"
    print(f"largest cost: {worst['cost']} dB ({where})")
    write_results(
        "blind_estimate_cost",
        {
            "command": " ".join(["python benchmarks/blind_estimate_cost.py"] + sys.argv[1:]),
            "model": tag,
            "target": "cost <= 0.1 dB at every sigma, float and 8-bit (issue 33)",
            "machine": machine_info(),
            "torch": torch.__version__,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
