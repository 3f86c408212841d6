"""Peak memory of ``ntk denoise`` (NTK filter, Monte-Carlo SURE): whole images against tiles.

Each case runs in a fresh Python process on a synthetic noisy image (σ = 25) and reports
its peak resident memory above the process's own baseline (torch loaded, image made),
next to the estimate of :func:`filterscope.ntk.tiling.estimate_bytes` that decides
when to tile. A tiled run's peak is that of one tile plus image-sized arrays, whatever
the image size; a whole image's grows like (pixels)². The budget of the tiled cases is
set so that tiles of ``--tile`` pixels are chosen (small here, so that the benchmark
fits in minutes on two cores); with the default 4 GiB budget a 12-megapixel photo gets
512-pixel tiles. Writes ``benchmarks/results/ntk_memory.json`` and prints a table.

    python benchmarks/ntk_memory.py [--tile 128] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "ntk_memory.json"

CHILD = r"""
import json, sys, time
import torch
sys.path.insert(0, sys.argv[2])
from _common import peak_rss_gib
from filterscope.ntk.denoiser import denoise
torch.set_num_threads(2)
height, width, channels, budget = json.loads(sys.argv[1])
yy, xx = torch.meshgrid(torch.linspace(0, 1, height, dtype=torch.float64),
                        torch.linspace(0, 1, width, dtype=torch.float64), indexing="ij")
x = (0.5 + 0.3 * torch.sin(12 * xx) * torch.cos(9 * yy))[None].repeat(channels, 1, 1)
g = torch.Generator().manual_seed(0)
y = x + 25 / 255 * torch.randn(x.shape, generator=g, dtype=torch.float64)
base = peak_rss_gib() * 2**30
start = time.perf_counter()
x_hat, info = denoise(y, sigma=25 / 255, stop="sure", max_bytes=budget)
peak = peak_rss_gib() * 2**30
mse = float((x_hat.clamp(0, 1) - x).pow(2).mean())
print(json.dumps({"base_bytes": base, "peak_bytes": peak, "seconds": time.perf_counter() - start,
                  "tiles": info.get("tiles", 1), "tile": info.get("tile"),
                  "psnr": -10 * __import__("math").log10(mse)}))
"""


def run_case(height: int, width: int, channels: int, budget: int | None) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            json.dumps([height, width, channels, budget]),
            str(Path(__file__).resolve().parent),  # for _common
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from filterscope.ntk.tiling import IMAGE_BYTES_PER_PIXEL_CHANNEL, OVERLAP, estimate_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=128, help="tile side of the tiled cases")
    parser.add_argument("--quick", action="store_true", help="only the smallest tiled case")
    args = parser.parse_args()
    tile, step = args.tile, args.tile - OVERLAP
    sizes = [(tile, tile), (tile + step, tile + step), (tile + step, tile + 3 * step)]
    if args.quick:
        sizes = sizes[:2]
    rows = []
    for height, width in sizes:
        arrays = IMAGE_BYTES_PER_PIXEL_CHANNEL * height * width
        budget = arrays + estimate_bytes(tile, tile, 1, columns=0.02) + (1 << 20)
        whole = height == tile
        result = run_case(height, width, 1, None if whole else budget)
        result.update(
            height=height,
            width=width,
            mode="whole" if whole else "tiled",
            above_base_mib=(result["peak_bytes"] - result["base_bytes"]) / 2**20,
            estimate_whole_mib=estimate_bytes(height, width, 1, columns=0.02) / 2**20,
            budget_mib=None if whole else budget / 2**20,
        )
        rows.append(result)
    RESULTS.parent.mkdir(exist_ok=True)
    from _common import machine_record

    payload = {"tile": tile, "overlap": OVERLAP, "cases": rows, "machine": machine_record()}
    RESULTS.write_text(json.dumps(payload, indent=2))
    print(
        f"{'image':>10} {'mode':>6} {'tiles':>5} {'peak-base MiB':>13} "
        f"{'whole estimate MiB':>18} {'s':>6} {'PSNR':>6}"
    )
    for r in rows:
        print(
            f"{r['width']:>4}x{r['height']:<5} {r['mode']:>6} {r['tiles']:>5} "
            f"{r['above_base_mib']:>13.0f} {r['estimate_whole_mib']:>18.0f} "
            f"{r['seconds']:>6.1f} {r['psnr']:>6.2f}"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
