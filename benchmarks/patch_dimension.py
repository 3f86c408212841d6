"""Effective dimension of patches *inside their image* against σ (Mohan et al. 2020,
Figure 5; issue 32): the shipped default (bf-drunet-gray, blind) beside the published
BF-DnCNN [0, 100].

For each BSD68 image (the first ``--images``), the noisy whole image at each σ (seeded
Gaussian noise), and the centre ``--patch``×``--patch`` patch: the Jacobian block of
the patch inside the image (:func:`filterscope.analysis.patch_spectrum_in_image`, the
rows and columns of the patch of the full-image Jacobian of what ``denoise`` runs), its
effective dimension ``d = Σ s_i²``, its top singular value, and the log–log fit of ``d``
against σ (slope −1 for the paper's ``d ∝ 1/σ``). Run from the repository root (needs
../shared: BSD68 and the published checkpoints)::

    python benchmarks/patch_dimension.py

Results go to ``benchmarks/results/patch_dimension.json`` and are printed as a table.
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
from _common import SHARED, print_table, write_results  # noqa: E402
from filterscope.analysis import fit_inverse_sigma, patch_spectrum_in_image  # noqa: E402
from filterscope.io import list_images, read_image, to_tensor  # noqa: E402
from filterscope.noise import add_noise  # noqa: E402

PUBLISHED = SHARED / "reference/bias_free_denoising/pretrained/dncnn/bias_free/0-100.pt"
DATA = SHARED / "data/BSD68"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2, help="BSD68 images (default 2)")
    parser.add_argument("--patch", type=int, default=16, help="patch side (default 16)")
    parser.add_argument(
        "--sigmas", default="10,25,50,100", help="noise levels, 0-255 scale (default 10,25,50,100)"
    )
    args = parser.parse_args()
    if not DATA.is_dir() or not PUBLISHED.is_file():
        sys.exit(f"benchmarks/patch_dimension.py: needs {DATA} and {PUBLISHED}")
    sigmas = [float(s) for s in args.sigmas.split(",")]
    files = list_images(DATA)[: args.images]
    models = {
        "bf-drunet-gray (shipped default, blind)": filterscope.load_model("bf-drunet-gray"),
        "BF-DnCNN [0,100] (published)": filterscope.load_checkpoint(PUBLISHED),
    }
    torch.set_num_threads(2)
    results: dict = {}
    rows = []
    for label, model in models.items():
        per_image = []
        start = time.perf_counter()
        for k, path in enumerate(files):
            clean = to_tensor(read_image(path)[0]).double()
            height, width = clean.shape[-2:]
            top, left = (height - args.patch) // 2, (width - args.patch) // 2
            dims, tops = [], []
            for sigma in sigmas:
                y = add_noise(clean, sigma / 255.0, generator=k)
                found = patch_spectrum_in_image(
                    model, y, (top, left, args.patch, args.patch), sigma=sigma / 255.0
                ).to_dict()
                dims.append(found["effective_dim"])
                tops.append(found["top_singular_value"])
                print(
                    f"  {label} {path.name} sigma {sigma:g}: d = {dims[-1]:.1f}, "
                    f"s1 = {tops[-1]:.3f}",
                    flush=True,
                )
            fit = fit_inverse_sigma(sigmas, dims)
            per_image.append(
                {
                    "image": path.name,
                    "patch_box": [top, left, args.patch, args.patch],
                    "effective_dim": dims,
                    "top_singular_value": tops,
                    "fit_slope": fit["slope"],
                }
            )
        mean_dims = [
            statistics.mean(p["effective_dim"][i] for p in per_image) for i in range(len(sigmas))
        ]
        results[label] = {
            "per_image": per_image,
            "mean_effective_dim": mean_dims,
            "fit_of_means": fit_inverse_sigma(sigmas, mean_dims),
            "max_top_singular_value": max(max(p["top_singular_value"]) for p in per_image),
            "seconds": time.perf_counter() - start,
        }
        rows.append(
            {
                "model": label,
                **{f"d at {s:g}": f"{d:.1f}" for s, d in zip(sigmas, mean_dims, strict=True)},
                "slope": f"{results[label]['fit_of_means']['slope']:.2f}",
                "max s1": f"{results[label]['max_top_singular_value']:.2f}",
            }
        )
    payload = {
        "command": "python benchmarks/patch_dimension.py "
        f"--images {args.images} --patch {args.patch} --sigmas {args.sigmas}",
        "what": "effective dimension of the centre patch's Jacobian block inside its noisy "
        "BSD68 image (float32 Jacobian, float64 SVD); patch dimension "
        f"{args.patch * args.patch}",
        "sigmas_255": sigmas,
        "images": [f.name for f in files],
        "machine_note": "2 CPU cores shared with other jobs",
        "results": results,
    }
    path = write_results("patch_dimension", payload)
    print_table(rows, list(rows[0]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
