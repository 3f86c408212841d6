"""Neural-tangent and NLM non-local filters on Set9color at σ = 25 (Table 1's setting).

Run from the repository root::

    python benchmarks/ntk_set9.py             # full run
    python benchmarks/ntk_set9.py --quick     # smoke run: 64×64 crops of 2 images

Quality: for each image (noise seed = its index), the Nyström filter of the
one-hidden-layer 11×11 CNN (1×1 output layer, equation 16; 2% columns) with oracle and
Monte-Carlo SURE stopping (and the trace SURE for reference), and NLM (equation 4,
7×7 patches, h = σ/2) with row and Sinkhorn normalisation, plain (t = 1) and with twicing
(oracle t), through the same code path. Targets: NTK oracle mean ≥ 28.3 dB (the paper's
Nyström row), SURE within 0.3 dB of oracle.

Speed and memory (``--speed``): the NTK denoiser with SURE stopping on a 256×256 and a
512×512 colour image, each in a fresh subprocess (peak RSS from ``getrusage``). Targets:
≤ 3 s and ≤ 15 s on 2 cores, peak < 4 GiB at 512×512. Timings on a loaded machine are
meaningless; the load average is recorded.

Results go to ``benchmarks/results/ntk_set9.json`` and are printed as tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import print_table, write_results

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "Set9color"
SIGMA_255 = 25
TARGET_ORACLE_DB = 28.3
TARGET_SURE_GAP_DB = 0.3
NTK = dict(method="ntk", depth=2, kernel_size=11, output_kernel=1, columns=0.02)
NLM = dict(method="nlm", kernel_size=7, columns=0.02)


def _load(path: Path, crop: int | None) -> torch.Tensor:
    from filterscope.io import read_image

    image, _ = read_image(path)
    x = torch.from_numpy(image.transpose(2, 0, 1).copy()).double()
    if crop:
        x = x[:, :crop, :crop].contiguous()
    return x


def _cases(rxr: bool) -> list[tuple[str, dict, object]]:
    cases = [
        ("ntk-oracle", NTK, "oracle"),
        ("ntk-sure", NTK, "sure"),
        ("ntk-sure-trace", NTK, "sure-trace"),
        ("nlm-row", dict(NLM, normalize="row"), 1.0),
        ("nlm-row-twicing", dict(NLM, normalize="row"), "oracle"),
        ("nlm-sinkhorn", dict(NLM, normalize="sinkhorn"), 1.0),
        ("nlm-sinkhorn-twicing", dict(NLM, normalize="sinkhorn"), "oracle"),
        ("nlm-sinkhorn-twicing-sure", dict(NLM, normalize="sinkhorn"), "sure"),
    ]
    if rxr:
        cases.append(("ntk-rxr-output-oracle", dict(NTK, output_kernel=None), "oracle"))
    return cases


def quality(images: list[Path], crop: int | None, rxr: bool) -> tuple[list[dict], dict]:
    from filterscope.metrics import psnr
    from filterscope.noise import add_noise
    from filterscope.ntk import denoise

    sigma = SIGMA_255 / 255.0
    rows = []
    for index, path in enumerate(images):
        x = _load(path, crop)
        y = add_noise(x, sigma, generator=index)
        row = {"image": path.stem, "size": f"{x.shape[2]}x{x.shape[1]}"}
        for name, options, stop in _cases(rxr):
            x_hat, info = denoise(y, sigma=sigma, clean=x, stop=stop, **options)
            row[name] = float(psnr(x_hat[None].float(), x[None].float()))
            row[f"{name}_t"] = info["t"]
            row[f"{name}_s"] = info["seconds"]
        rows.append(row)
        print(f"{path.stem}: " + ", ".join(f"{n} {row[n]:.2f}" for n, _, _ in _cases(rxr)))
    means = {n: sum(r[n] for r in rows) / len(rows) for n, _, _ in _cases(rxr)}
    return rows, means


WORKER = r"""
import json, resource, sys, time, torch
from filterscope.noise import add_noise
from filterscope.ntk import denoise
sys.path.insert(0, {bench!r})
from ntk_set9 import _load, NTK
from pathlib import Path
x = _load(Path({path!r}), {crop!r})
y = add_noise(x, 25 / 255, generator=0)
start = time.perf_counter()
x_hat, info = denoise(y, sigma=25 / 255, stop={stop!r}, **NTK)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT " + json.dumps({{"seconds": seconds, "peak_bytes": peak, "rank": info["rank"]}}))
"""


def speed(cases: list[tuple[Path, int | None]], stop: str) -> list[dict]:
    rows = []
    for path, crop in cases:
        code = WORKER.format(bench=str(Path(__file__).parent), path=str(path), crop=crop, stop=stop)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])
        size = crop or "full"
        rows.append(
            {
                "image": path.stem,
                "crop": size,
                "stop": stop,
                **result,
                "peak_gib": result["peak_bytes"] / 2**30,
            }
        )
        print(rows[-1])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64x64 crops of 2 images")
    parser.add_argument("--crop", type=int, default=None, help="crop every image to NxN")
    parser.add_argument("--speed", action="store_true", help="also time 256² and 512² images")
    parser.add_argument("--rxr", action="store_true", help="also the r×r-output kernel (slow)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"{DATA} not found; nothing to do", file=sys.stderr)
        return 1
    images = sorted(DATA.glob("*.png"))
    crop = args.crop
    if args.quick:
        images, crop = images[:2], crop or 64
    start = time.time()
    rows, means = quality(images, crop, args.rxr)
    payload = {
        "benchmark": "ntk_set9",
        "sigma_255": SIGMA_255,
        "images": len(images),
        "crop": crop,
        "quick": args.quick,
        "load_average": os.getloadavg(),
        "threads": torch.get_num_threads(),
        "rows": rows,
        "mean_psnr": means,
        "targets": {
            "ntk_oracle_mean_db": TARGET_ORACLE_DB,
            "ntk_oracle_met": means["ntk-oracle"] >= TARGET_ORACLE_DB,
            "sure_gap_db": means["ntk-oracle"] - means["ntk-sure"],
            "sure_gap_met": means["ntk-oracle"] - means["ntk-sure"] <= TARGET_SURE_GAP_DB,
        },
    }
    if args.speed:
        house = DATA / "image_House256rgb.png"
        lena = DATA / "image_Lena512rgb.png"
        cases = [(house, 64), (house, 128)] if args.quick else [(house, None), (lena, None)]
        payload["speed"] = speed(cases, "sure")
    payload["seconds"] = time.time() - start
    payload["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    path = write_results("ntk_set9" + ("_quick" if args.quick else ""), payload)
    names = [n for n, _, _ in _cases(args.rxr)]
    print_table(rows + [{"image": "mean", **means}], ["image", "size", *names])
    if args.speed:
        print_table(payload["speed"], ["image", "crop", "stop", "seconds", "peak_gib", "rank"])
    print(f"targets: {payload['targets']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
