"""Does a coarse-scale σ estimate let the Gaussian default denoise real camera noise?

Real camera noise (PolyU-Canon) is strongly low-pass: the finest wavelet band reads
0.1-0.7 on the 0-255 scale where the per-pixel noise std is 2-5 and the std of 8x8
block means, times 8, is 8-24. This script tries the *multi-scale* estimate
``σ_ms = max over s of s · estimate_noise_level(avg_pool(y, s))`` (s = 1, 2, 4, 8, or up
to 4), a white-noise-equivalent level at the coarsest band, as the σ given to

- the shipped colour default (``def_s8``, ``def_s4``),
- the real-noise model ``bf-drunet-color-real`` in place of its own estimator (``real_s8``),

beside ``bf-drunet-color-real`` blind (what ``denoise`` runs on camera noise today), on
two sets:

- ``polyu``: 11 PolyU-Canon crops spread over the 55 (real noise);
- ``camera``: the first 8 CBSD68 images with this package's synthetic camera noise
  (in-camera smoothing and JPEG as in ``recipes/cpu-bf-drunet-color-real-smoothing.toml``),
  textured scenes where the coarse estimate also reads image structure.

Results: ``benchmarks/results/real_noise_multiscale.json`` (PSNR per image and mean gain
over the noisy input). Exploratory: nothing shipped depends on it.

    python benchmarks/real_noise_multiscale.py [--images 11]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from _common import SHARED, print_table, write_results

DATA = SHARED / "data"
METHODS = ("real_blind", "def_s8", "def_s4", "real_s8")


def scale_levels(y: torch.Tensor) -> dict[int, float]:
    """s · (wavelet σ of y averaged over s×s blocks) for s = 1, 2, 4, 8."""
    from filterscope.noise import estimate_noise_level

    levels = {}
    for s in (1, 2, 4, 8):
        pooled = torch.nn.functional.avg_pool2d(y, s) if s > 1 else y
        levels[s] = s * float(estimate_noise_level(pooled)[0])
    return levels


def multiscale_sigma(levels: dict[int, float], top: int) -> float:
    """The largest of :func:`scale_levels`' levels over the scales up to ``top``."""
    return max(level for s, level in levels.items() if s <= top)


def polyu_items(images: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    from real_noise import load_pairs

    return [(p.name, p.noisy, p.clean) for p in load_pairs(DATA / "PolyU-Canon", images)]


def camera_items(images: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    from filterscope.camera_noise import NoiseOptions, camera_noise
    from filterscope.io import read_image, to_tensor

    options = NoiseOptions(
        luma_smoothing_range=(0.0, 1.2), chroma_smoothing_range=(0.0, 4.0), jpeg_probability=0.7
    )
    generator = torch.Generator().manual_seed(1)
    items = []
    for path in sorted((DATA / "CBSD68").iterdir())[:images]:
        x = to_tensor(read_image(path)[0])
        y = camera_noise(x, options=options, generator=generator)[0]
        items.append((path.name, y.clamp(0, 1), x))
    return items


def evaluate(items) -> list[dict]:
    from filterscope.hub import load_model
    from filterscope.inference import denoise_tensor
    from filterscope.metrics import psnr
    from filterscope.models.zoo import default_model_name

    default = load_model(default_model_name(3)).eval()
    real = load_model("bf-drunet-color-real").eval()

    def score(model, y, x, sigma=None) -> float:
        with torch.inference_mode():
            return float(psnr(denoise_tensor(model, y, sigma=sigma).clamp(0, 1), x))

    rows = []
    for name, y, x in items:
        levels = scale_levels(y)
        s8, s4 = multiscale_sigma(levels, 8), multiscale_sigma(levels, 4)
        row = {
            "image": name,
            "noisy": float(psnr(y, x)),
            "sigma_s8": 255 * s8,
            "sigma_s4": 255 * s4,
            "real_blind": score(real, y, x),
            "def_s8": score(default, y, x, s8),
            "def_s4": score(default, y, x, s4),
            "real_s8": score(real, y, x, s8),
        }
        print(row, file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=11, help="PolyU crops (spread)")
    args = parser.parse_args()
    if args.images < 1:
        parser.error("--images: need at least 1")
    sets = {"polyu": evaluate(polyu_items(args.images)), "camera": evaluate(camera_items(8))}
    summary = [
        {
            "set": name,
            "images": len(rows),
            **{m: statistics.mean(r[m] - r["noisy"] for r in rows) for m in METHODS},
        }
        for name, rows in sets.items()
    ]
    print_table(summary, ["set", "images", *METHODS])
    write_results("real_noise_multiscale", {"gain_db_over_noisy": summary, "per_image": sets})
    return 0


if __name__ == "__main__":
    sys.exit(main())
