"""How `denoise` tells white Gaussian noise from camera noise, and what the choice costs.

Run from the repository root (needs ../shared/data)::

    nice -n 10 python benchmarks/noise_type_choice.py               # a few minutes
    nice -n 10 python benchmarks/noise_type_choice.py --images 4    # a quick look
    nice -n 10 python benchmarks/noise_type_choice.py --model RUN/model.safetensors --name X

With no model named, ``denoise`` takes the shipped real-noise model when the evidence
(:func:`filterscope.inference.real_noise_evidence`: the real model's estimated noise map
over the wavelet white-noise estimate) reaches the model's threshold
(:func:`filterscope.inference.real_noise_threshold`: its card's ``noise_type_threshold``,
else ``REAL_NOISE_RATIO``). This measures the
evidence, side by side, on

- **calibration** (Set9color, the training recipes' validation set): i.i.d. Gaussian
  noise at σ = 5…75 (0-255), unclipped as in the papers and clipped and stored as 8-bit;
  and synthetic camera noise (:func:`filterscope.camera_noise.camera_noise` with the
  noise options of the model's training recipe, from its card) at nominal σ = 2…30; the
  threshold is set between the two (or just above the Gaussian cases where they overlap:
  Gaussian noise keeps the default);
- **held-out checks**: the same Gaussian cases on CBSD68 (``--images`` of them) and the
  real camera noise of PolyU-Canon (every crop, evaluation only).

A gray real-noise model (``--gray`` picks the shipped one; a ``--model`` of one channel
is gray) is measured the same way on the gray sets: Set12 (calibration, the gray recipes'
validation set), BSD68 (held out) and PolyU-Canon as gray photos
(``real_noise.gray_photo``: each crop's luminance, stored at 8 bits).

Reported per case: the evidence's minimum, median and maximum and the fraction of images
that take the real-noise model with the shipped threshold. Results:
``benchmarks/results/noise_type_choice.json`` (with the machine record).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

from _common import SHARED, machine_record, print_table, results_name, write_results
from filterscope.camera_noise import NoiseOptions, camera_noise, quantize
from filterscope.hub import load_model
from filterscope.inference import real_noise_evidence, real_noise_threshold
from filterscope.io import read_image, to_tensor
from filterscope.models.zoo import real_noise_model_name
from real_noise import gray_photo

DATA = SHARED / "data"
GAUSSIAN_SIGMAS = (5.0, 10.0, 15.0, 25.0, 35.0, 50.0, 75.0)
CAMERA_SIGMAS = (2.0, 4.0, 8.0, 15.0, 30.0)
CROP = 256  # centre crops, as the evidence reads an image (inference.EVIDENCE_SIDE)


def _images(folder: Path, count: int | None) -> list[torch.Tensor]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".tif"))
    images = []
    for path in files[:count]:
        x = to_tensor(read_image(path)[0])
        top, left = max(0, (x.shape[2] - CROP) // 2), max(0, (x.shape[3] - CROP) // 2)
        images.append(x[:, :, top : top + CROP, left : left + CROP])
    return images


def _gaussian_cases(images, seed: int) -> dict[str, list[torch.Tensor]]:
    cases = {}
    for sigma in GAUSSIAN_SIGMAS:
        generator = torch.Generator().manual_seed(seed + int(sigma))
        noisy = [x + sigma / 255 * torch.randn(x.shape, generator=generator) for x in images]
        cases[f"gaussian σ={sigma:g}"] = noisy
        cases[f"gaussian σ={sigma:g} 8-bit"] = [quantize(y, 8) for y in noisy]
    return cases


def _camera_cases(images, options: NoiseOptions, seed: int) -> dict[str, list[torch.Tensor]]:
    cases = {}
    for sigma in CAMERA_SIGMAS:
        generator = torch.Generator().manual_seed(seed + int(sigma))
        noisy = [
            camera_noise(x, sigma=sigma / 255, options=options, generator=generator)[0]
            for x in images
        ]
        cases[f"camera σ={sigma:g}"] = noisy
    return cases


def _polyu(count: int | None, channels: int) -> list[torch.Tensor]:
    folder = DATA / "PolyU-Canon" / "noisy"
    files = sorted(folder.iterdir())[:count]
    crops = [to_tensor(read_image(path)[0]) for path in files]
    return crops if channels == 3 else [gray_photo(y, y)[0] for y in crops]


#: (calibration, held-out) folders of ../shared/data per channel count
SETS = {3: ("Set9color", "CBSD68"), 1: ("Set12", "BSD68")}


def _row(group: str, case: str, evidence: list[float], threshold: float) -> dict:
    real = sum(e >= threshold for e in evidence)
    return {
        "set": group,
        "case": case,
        "images": len(evidence),
        "min": round(min(evidence), 2),
        "median": round(statistics.median(evidence), 2),
        "max": round(max(evidence), 2),
        "real": f"{real}/{len(evidence)}",
        "_evidence": evidence,
    }


def suggested_threshold(gaussian_max: float, camera_min: float) -> float:
    """Midway on a log scale between the largest Gaussian and the smallest camera
    evidence when they are apart; when they overlap, 10% above the largest Gaussian
    value: white Gaussian noise (the papers' benchmarks) must keep the default."""
    if camera_min > gaussian_max:
        return math.sqrt(gaussian_max * camera_min)
    return 1.1 * gaussian_max


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12, help="CBSD68 images (held out)")
    parser.add_argument("--polyu", type=int, default=None, help="PolyU crops (default: all)")
    parser.add_argument(
        "--model", default=None, help="real-noise model spec (default: the shipped one)"
    )
    parser.add_argument("--gray", action="store_true", help="the shipped gray real model")
    parser.add_argument(
        "--name", default="noise_type_choice", help="results file stem", type=results_name
    )
    args = parser.parse_args()
    name = args.model or real_noise_model_name(1 if args.gray else 3)
    if name is None:
        print("filterscope: error: no real-noise model ships", file=sys.stderr)
        return 2
    model = load_model(name).eval()
    channels = int(getattr(model, "in_channels", 3))
    calibration_set, held_out_set = SETS[channels]
    # The camera noise the model was trained on (its card's recipe).
    recipe = getattr(model, "card", {}).get("training", {}).get("recipe", {})
    options = NoiseOptions.from_dict(recipe.get("noise_options", {}))
    calibration = _images(DATA / calibration_set, None)
    held_out = _images(DATA / held_out_set, args.images)
    plan = [
        (
            calibration_set,
            _gaussian_cases(calibration, 0) | _camera_cases(calibration, options, 100),
        ),
        (held_out_set, _gaussian_cases(held_out, 1000)),
        ("PolyU-Canon", {"real camera noise": _polyu(args.polyu, channels)}),
    ]
    threshold = real_noise_threshold(model)
    rows = []
    for group, cases in plan:
        for case, noisy in cases.items():
            evidence = [real_noise_evidence(model, y) for y in noisy]
            rows.append(_row(group, case, evidence, threshold))
            print(f"  {group} {case}: median {rows[-1]['median']}", flush=True)
    gaussian = [
        e
        for r in rows[: len(plan[0][1])]
        if r["case"].startswith("gaussian")
        for e in r["_evidence"]
    ]
    camera = [
        e
        for r in rows
        if r["set"] == calibration_set and r["case"].startswith("camera")
        for e in r["_evidence"]
    ]
    suggested = suggested_threshold(max(gaussian), min(camera))
    payload = {
        "machine": machine_record(),
        "model": name,
        "threshold": threshold,
        "suggested_threshold": round(suggested, 3),
        "calibration": {"gaussian_max": max(gaussian), "camera_min": min(camera)},
        "crop": CROP,
        "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
    }
    path = write_results(args.name, payload)
    print_table(payload["rows"], ["set", "case", "images", "min", "median", "max", "real"])
    print(
        f"\nthe model's threshold {threshold:g}; calibration: Gaussian max "
        f"{max(gaussian):.2f}, camera min {min(camera):.2f}, midway {suggested:.2f}"
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
