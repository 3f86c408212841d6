"""CPU throughput of DnCNN: plain float32 eager PyTorch against the fast inference path.

Run from the repository root::

    python benchmarks/throughput.py            # full run, a few minutes on 2 cores
    python benchmarks/throughput.py --quick    # smoke run: small sizes, 1 repeat

Cases (each configuration runs in a fresh subprocess, so its peak resident memory,
read with ``_common.peak_rss_gib``, is its own):

- gray 256×256 and 512×512, one image, processed whole;
- an RGB 3000×2000 image through :func:`filterscope.inference.denoise_tensor`
  (512-pixel tiles with a halo of the receptive radius), with a 3-channel DnCNN by
  default (``--rgb-model gray``: the gray DnCNN on each channel, 3× the work).

Variants: ``eager-float32`` (the model as defined, eval mode, NCHW), and the output
of :func:`filterscope.models.fast.optimize_for_inference` at ``float32`` and
``bfloat16``. Speed is measured on a freshly initialised bias-free DnCNN (20 layers,
64 channels); the weights do not change the arithmetic. The quality check loads the
published bias-free DnCNN (Mohan et al. 2020, trained on σ ∈ [0, 55]) when
``../shared`` is present, else uses random weights on a synthetic image and says so.

Throughput is in megapixels per second of image (an RGB pixel counts once), from the
best of the timed runs after a warm-up; ``speedup`` is against ``eager-float32`` on the
same case. Results go to ``benchmarks/results/throughput.json`` and are printed as
tables.
Timings on a loaded machine are meaningless; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import SHARED, peak_rss_gib, print_table, results_name, write_results

CHECKPOINT = SHARED / "reference/bias_free_denoising/pretrained/dncnn/bias_free/0-55.pt"
IMAGE_DIR = SHARED / "data/BSD68"
VARIANTS = ("eager-float32", "fast-float32", "fast-bfloat16")
BASELINE = "eager-float32"
SIGMA_255 = 25
NOISE_SEED = 0
TARGET_SPEEDUP = 3.0
TARGET_PSNR_DB = 0.02
WORKER_TAG = "RESULT "


# --------------------------------------------------------------------------- worker side


def _build(variant: str, model):
    if variant == BASELINE:
        return model
    from filterscope.models.fast import optimize_for_inference

    return optimize_for_inference(model, precision=variant.removeprefix("fast-"))


def _peak_rss_mb() -> float:
    return peak_rss_gib() * 1024


def run_speed_case(case: dict) -> dict:
    """Time one (size, variant) configuration; meant to run in its own process."""
    import torch

    from filterscope import create_model

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    model = create_model("dncnn", bias=False, in_channels=case["model_channels"]).eval()
    runner = _build(case["variant"], model)
    y = torch.rand((1, case["channels"], case["height"], case["width"]))

    forward, tiling = runner, "whole image"
    if case["tiled"]:
        try:
            from filterscope.inference import denoise_tensor
        except ImportError:  # older checkout without tiled inference: run it whole
            denoise_tensor = None
        if denoise_tensor is not None:
            tiling = f"denoise_tensor(tile={case['tile']})"

            def forward(image):
                return denoise_tensor(runner, image, tile=case["tile"])

    rss_before = _peak_rss_mb()
    times = []
    with torch.inference_mode():
        # Warm-up on a crop: oneDNN builds its kernels on the first call for each shape.
        forward(y[..., : min(case["height"], 552), : min(case["width"], 552)])
        for _ in range(case["repeats"]):
            start = time.perf_counter()
            forward(y)
            times.append(time.perf_counter() - start)
    megapixels = case["height"] * case["width"] / 1e6
    return {
        "best_s": min(times),
        "median_s": statistics.median(times),
        "mpx_per_s": megapixels / min(times),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_run_mb": rss_before,
        "threads": torch.get_num_threads(),
        "tiling": tiling,
    }


def _synthetic_image(height: int = 321, width: int = 481):
    """Smooth shading plus edges and texture: something a denoiser can be judged on."""
    import torch

    rows = torch.linspace(0, 1, height).view(-1, 1)
    cols = torch.linspace(0, 1, width).view(1, -1)
    image = 0.3 + 0.4 * rows * cols
    image = image + 0.2 * ((rows - 0.5) ** 2 + (cols - 0.5) ** 2 < 0.1).float()
    image = image + 0.1 * torch.sin(40 * cols) * (rows > 0.6).float()
    return image.clamp(0, 1)[None, None]


def run_psnr_case(case: dict) -> dict:
    """PSNR of every variant on the same noisy images (σ = 25/255, fixed seed)."""
    import torch

    from filterscope import add_noise, create_model, load_checkpoint, psnr, read_image
    from filterscope.io import to_tensor

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    if CHECKPOINT.exists():
        model, weights = load_checkpoint(CHECKPOINT), str(CHECKPOINT.relative_to(SHARED.parent))
    else:
        torch.manual_seed(0)
        model = create_model("dncnn", bias=False).eval()
        weights = "random (no ../shared): PSNR values are not meaningful, differences are"
    paths = sorted(IMAGE_DIR.glob("*.png"))[: case["images"]] if IMAGE_DIR.is_dir() else []
    if paths:
        clean = [to_tensor(read_image(path)[0]) for path in paths]
        names = [str(path.relative_to(SHARED.parent)) for path in paths]
    else:
        clean, names = [_synthetic_image()], ["synthetic 321x481"]
    noisy = [add_noise(x, SIGMA_255 / 255, generator=NOISE_SEED + i) for i, x in enumerate(clean)]

    scores = {}
    max_abs_diff = {}
    with torch.inference_mode():
        reference = [model(y) for y in noisy]
        for variant in VARIANTS:
            if variant == BASELINE:
                estimates = reference
            else:
                runner = _build(variant, model)
                estimates = [runner(y) for y in noisy]
            values = [float(psnr(e, x)) for e, x in zip(estimates, clean, strict=True)]
            scores[variant] = sum(values) / len(values)
            max_abs_diff[variant] = max(
                float((e - r).abs().max()) for e, r in zip(estimates, reference, strict=True)
            )
    return {
        "weights": weights,
        "images": names,
        "sigma_255": SIGMA_255,
        "psnr_db": scores,
        "max_abs_diff_vs_eager": max_abs_diff,
    }


# --------------------------------------------------------------------------- driver side


def run_in_subprocess(case: dict) -> dict:
    """Run one case in a fresh interpreter so memory peaks and caches do not mix."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(case)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith(WORKER_TAG)]
    return json.loads(lines[-1].removeprefix(WORKER_TAG))


def speed_cases(args: argparse.Namespace) -> list[dict]:
    if args.quick:
        gray_sizes, rgb_size, repeats, large_repeats = [(64, 64), (128, 128)], (300, 200), 1, 1
    else:
        gray_sizes, rgb_size = [(256, 256), (512, 512)], (3000, 2000)
        repeats, large_repeats = args.repeats, args.large_repeats
    cases = []
    for height, width in gray_sizes:
        cases.append(
            {"label": f"gray {width}x{height}", "channels": 1, "model_channels": 1,
             "height": height, "width": width, "tiled": False, "repeats": repeats}
        )  # fmt: skip
    width, height = rgb_size
    cases.append(
        {"label": f"RGB {width}x{height} ({args.rgb_model} model, tiled)", "channels": 3,
         "model_channels": 3 if args.rgb_model == "color" else 1,
         "height": height, "width": width, "tiled": True, "repeats": large_repeats}
    )  # fmt: skip
    return [
        {**case, "variant": variant, "threads": args.threads, "tile": args.tile}
        for case in cases
        for variant in VARIANTS
    ]


def machine_info() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "load_average_start": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (smoke run)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per small size")
    parser.add_argument("--large-repeats", type=int, default=2, help="timed runs, RGB image")
    parser.add_argument("--tile", type=int, default=512, help="tile side for the RGB image")
    parser.add_argument(
        "--rgb-model",
        choices=("color", "gray"),
        default="color",
        help="RGB image: a 3-channel DnCNN, or the gray DnCNN run on each channel",
    )
    parser.add_argument(
        "--psnr-images", type=int, default=1, help="BSD68 images for the PSNR check (test001...)"
    )
    parser.add_argument("--name", default="throughput", help="results/NAME.json", type=results_name)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        case = json.loads(args.worker)
        result = run_psnr_case(case) if case.get("kind") == "psnr" else run_speed_case(case)
        print(WORKER_TAG + json.dumps(result), flush=True)
        return 0

    meta = machine_info()
    rows = []
    for case in speed_cases(args):
        print(f"running {case['label']} {case['variant']} ...", file=sys.stderr, flush=True)
        rows.append({"case": case["label"], "variant": case["variant"], **run_in_subprocess(case)})
    baseline = {row["case"]: row["mpx_per_s"] for row in rows if row["variant"] == BASELINE}
    for row in rows:
        row["speedup"] = row["mpx_per_s"] / baseline[row["case"]]

    print("running PSNR check ...", file=sys.stderr, flush=True)
    quality = run_in_subprocess(
        {"kind": "psnr", "threads": args.threads, "images": args.psnr_images}
    )
    base_psnr = quality["psnr_db"][BASELINE]
    quality["psnr_diff_db"] = {v: p - base_psnr for v, p in quality["psnr_db"].items()}
    meta["load_average_end"] = list(os.getloadavg())

    fast = [row["speedup"] for row in rows if row["variant"] == "fast-bfloat16"]
    summary = {
        "min_speedup_bfloat16": min(fast),
        "psnr_diff_bfloat16_db": quality["psnr_diff_db"]["fast-bfloat16"],
        "target": f">= {TARGET_SPEEDUP}x throughput, |PSNR diff| <= {TARGET_PSNR_DB} dB",
    }
    summary["target_met"] = (
        summary["min_speedup_bfloat16"] >= TARGET_SPEEDUP
        and abs(summary["psnr_diff_bfloat16_db"]) <= TARGET_PSNR_DB
    )
    payload = {
        "benchmark": "throughput",
        "model": "DnCNN, bias-free, 20 layers, 64 channels, eval mode",
        "quick": args.quick,
        "machine": meta,
        "throughput": rows,
        "quality": quality,
        "summary": summary,
    }
    path = write_results(args.name, payload)

    print()
    print_table(
        rows,
        ["case", "variant", "threads", "mpx_per_s", "best_s", "median_s", "speedup",
         "peak_rss_mb"],
    )  # fmt: skip
    print()
    print(f"PSNR at sigma {SIGMA_255} (0-255 scale), {len(quality['images'])} image(s), "
          f"weights: {quality['weights']}")  # fmt: skip
    print_table(
        [
            {"variant": v, "psnr_db": f"{quality['psnr_db'][v]:.4f}",
             "diff_db": f"{quality['psnr_diff_db'][v]:+.5f}",
             "max_abs_diff": f"{quality['max_abs_diff_vs_eager'][v]:.2e}"}
            for v in VARIANTS
        ],
        ["variant", "psnr_db", "diff_db", "max_abs_diff"],
    )  # fmt: skip
    print()
    print(f"load average start {meta['load_average_start']}, end {meta['load_average_end']}")
    print(f"target met: {summary['target_met']} (min bf16 speed-up {min(fast):.2f}x)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
