"""The findings of Mohan et al. (ICLR 2020, §3 and §6), measured with filterscope.analysis.

Run from the repository root (needs ../shared: published checkpoints and BSD68)::

    python benchmarks/paper_findings.py            # full run (~10-15 min on 2 cores)
    python benchmarks/paper_findings.py --quick    # smoke run: small patches, seconds

Findings, each a number in ``benchmarks/results/paper_findings.json``:

- ``slope``: log–log slope of the effective dimension ``d = Σ s_i²`` of 40×40 BSD68
  patches against σ = 10–100, BF-DnCNN [0, 100] (target −1.2 … −0.8);
- ``clean_energy_min``: smallest fraction of a clean patch's energy inside its signal
  subspace (target ≥ 0.9);
- ``nesting_min``: smallest fraction of a higher-σ signal subspace inside the σ = 10
  one, averaged over patches (target ≥ 0.95);
- ``filter_sum_max_deviation``: largest ``|Σ weights − 1|`` of the adaptive filters
  at pixels of a full-size BSD68 image (target ≤ 0.05);
- ``bias_growth``: net bias norm of DnCNN [0, 30] at σ = 80 over σ = 20 on 100 20×20
  patches (target > 10), and ``bias_free_bias_max`` for BF-DnCNN [0, 30] (≈ 0).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import filterscope  # noqa: E402
from _common import print_table, write_results  # noqa: E402
from filterscope.analysis import (  # noqa: E402
    adaptive_filters,
    decomposition_vs_sigma,
    fit_inverse_sigma,
    random_patches,
    spectrum_vs_sigma,
)
from filterscope.io import list_images, read_image, to_tensor  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PRETRAINED = SHARED / "reference/bias_free_denoising/pretrained/dncnn"
DATA = SHARED / "data/BSD68"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=5, help="BSD68 patches for the spectrum")
    parser.add_argument("--patch", type=int, default=40)
    parser.add_argument("--sigmas", default="10,20,40,60,80,100")
    args = parser.parse_args()
    if not (PRETRAINED.exists() and DATA.exists()):
        print(f"needs {PRETRAINED} and {DATA}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    if args.quick:
        args.images, args.patch, args.sigmas = 2, 12, "10,50,100"
    sigmas = [float(s) for s in args.sigmas.split(",")]
    bf100 = filterscope.load_checkpoint(PRETRAINED / "bias_free/0-100.pt")
    files = list_images(DATA)
    images = [to_tensor(read_image(f)[0])[0].double() for f in files]
    payload: dict = {"quick": args.quick, "patch": args.patch, "sigmas": sigmas}
    rows = []

    # Spectrum: effective dimension, clean energy, nesting (centre patches of images).
    start = time.perf_counter()
    per_image = []
    for k in range(args.images):
        x = images[k]
        h, w = x.shape[-2:]
        top, left = (h - args.patch) // 2, (w - args.patch) // 2
        clean = x[:, top : top + args.patch, left : left + args.patch]
        spectra, summary = spectrum_vs_sigma(bf100, clean, [s / 255 for s in sigmas], seed=k)
        per_image.append(
            {
                "image": files[k].name,
                "effective_dim": [s.effective_dim for s in spectra],
                "clean_energy_fraction": [s.clean_energy_fraction for s in spectra],
                "cosine_mean": [float(s.cosines.mean()) for s in spectra],
                "nesting": [n["fraction"] for n in summary["nesting"]],
            }
        )
    mean_d = [
        statistics.fmean(p["effective_dim"][i] for p in per_image) for i in range(len(sigmas))
    ]
    fit = fit_inverse_sigma(sigmas, mean_d)
    energy_min = min(min(p["clean_energy_fraction"]) for p in per_image)
    nest_mean = [
        statistics.fmean(p["nesting"][i] for p in per_image) for i in range(len(sigmas) - 1)
    ]
    payload["spectrum"] = {
        "per_image": per_image,
        "mean_effective_dim": mean_d,
        "fit": fit,
        "slope": fit["slope"],
        "clean_energy_min": energy_min,
        "nesting_mean_per_sigma": nest_mean,
        "nesting_min": min(nest_mean),
        "seconds": time.perf_counter() - start,
    }
    rows.append(
        {
            "finding": "slope of d vs sigma",
            "value": fit["slope"],
            "target": "-1.2..-0.8",
            "passed": -1.2 <= fit["slope"] <= -0.8,
        }
    )
    rows.append(
        {
            "finding": "clean energy in signal subspace (min)",
            "value": energy_min,
            "target": ">= 0.9",
            "passed": energy_min >= 0.9,
        }
    )
    rows.append(
        {
            "finding": "nesting in sigma=10 subspace (min)",
            "value": min(nest_mean),
            "target": ">= 0.95",
            "passed": min(nest_mean) >= 0.95,
        }
    )

    # Adaptive filters on a full-size image.
    start = time.perf_counter()
    x = images[0][None]
    h, w = x.shape[-2:]
    pixels = [(w // 4, h // 4), (w // 2, h // 2), (3 * w // 4, h // 3), (w // 3, 3 * h // 4)]
    sums = {}
    for sigma in (10.0, 50.0, 100.0) if not args.quick else (50.0,):
        y = filterscope.add_noise(x, sigma / 255, generator=0)
        sums[str(sigma)] = [f.sum for f in adaptive_filters(bf100, y, pixels)]
    deviation = max(abs(s - 1) for v in sums.values() for s in v)
    payload["filters"] = {
        "pixels": pixels,
        "sums": sums,
        "filter_sum_max_deviation": deviation,
        "seconds": time.perf_counter() - start,
    }
    rows.append(
        {
            "finding": "|filter sum - 1| (max)",
            "value": deviation,
            "target": "<= 0.05",
            "passed": deviation <= 0.05,
        }
    )

    # Net bias growth outside the training range.
    start = time.perf_counter()
    count = 8 if args.quick else 100
    patches = random_patches(
        [im for im in images], patch=20, count=count, generator=torch.Generator().manual_seed(0)
    )
    bias30 = filterscope.load_checkpoint(PRETRAINED / "bias/0-30.pt")
    bf30 = filterscope.load_checkpoint(PRETRAINED / "bias_free/0-30.pt")
    dec_bias = decomposition_vs_sigma(bias30, patches, [20 / 255, 80 / 255])
    dec_bf = decomposition_vs_sigma(bf30, patches, [20 / 255, 80 / 255])
    growth = dec_bias[1]["bias_norm"] / dec_bias[0]["bias_norm"]
    bf_bias = max(r["bias_norm"] for r in dec_bf)
    payload["net_bias"] = {
        "dncnn_0_30": dec_bias,
        "bf_dncnn_0_30": dec_bf,
        "bias_growth": growth,
        "bias_free_bias_max": bf_bias,
        "seconds": time.perf_counter() - start,
    }
    rows.append(
        {
            "finding": "net bias growth sigma 20 -> 80, DnCNN [0,30]",
            "value": growth,
            "target": "> 10",
            "passed": growth > 10,
        }
    )
    rows.append(
        {
            "finding": "net bias of BF-DnCNN [0,30] (max RMS, 0-255)",
            "value": bf_bias,
            "target": "~0 (< 1e-6)",
            "passed": bf_bias < 1e-6,
        }
    )

    payload["findings"] = {r["finding"]: r["value"] for r in rows}
    path = write_results("paper_findings_quick" if args.quick else "paper_findings", payload)
    print_table(rows, ["finding", "value", "target", "passed"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
