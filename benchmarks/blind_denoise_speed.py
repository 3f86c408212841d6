"""Speed and memory of plain ``filterscope denoise`` on RGB photos, by how it chooses.

Run from the repository root on a quiet machine (timings on a loaded one mean nothing)::

    python benchmarks/blind_denoise_speed.py            # a few minutes on 2 cores
    python benchmarks/blind_denoise_speed.py --quick    # 256x256 and 512x384 only
    python benchmarks/blind_denoise_speed.py --gray     # gray photos (the gray models)

``filterscope.denoise(image)`` (what the command line runs) with no model named reads the
image's noise before choosing the shipped default or the shipped real-noise model
(``noise_type="auto"``). Side by side, each case in a fresh process (so its peak resident
memory, ``_common.peak_rss_gib``, is its own), on a synthetic scene:

- ``gaussian``: ``noise_type="gaussian"``, the default alone: the blind path as it was
  before the choice existed (the baseline of the speed target);
- ``auto, white noise``: the choice on white Gaussian noise (σ = 15), which keeps the
  default: the choice's own cost;
- ``auto, camera-like noise``: the choice on correlated noise, which takes the real-noise
  model;
- ``real``: ``noise_type="real"``, the real-noise model without the choice;
- ``gaussian, float32``: the default alone in float32 arithmetic, as ``filterscope.denoise``
  ran before it took the command line's numeric path (``precision="auto"``: bfloat16
  where the CPU has it natively, float32 elsewhere, where the two rows are one path).

Each scene is saved once as an 8-bit PNG (a photo as people have it) and read back by every
case. 512x512: ``filterscope.denoise`` on the decoded image, median of ``--repeats`` runs
after one warm-up. 3000x2000: the command line, ``filterscope denoise in.png -o out.png
--noise-type ...``, one run in a fresh process (decoding, model loading and the PNG
encoding included), whose peak is what a user's photo costs. ``ratio`` is each case's
time over ``gaussian`` at the same size. Targets (issue 33): the
blind default no more than 20% slower than before on a 512x512 photo, and a 3000x2000
photo within 1 GiB. Results: ``benchmarks/results/blind_denoise_speed.json``
(``--gray``: the scene's luminance, the gray default and ``bf-drunet-gray-real``;
``blind_denoise_speed_gray.json``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import peak_rss_gib, print_table, run_fresh, write_results

#: (label, noise_type, noise added to the scene, precision)
CASES = (
    ("gaussian", "gaussian", "white", "auto"),
    ("auto, white noise", "auto", "white", "auto"),
    ("auto, camera-like noise", "auto", "correlated", "auto"),
    ("real", "real", "correlated", "auto"),
    ("gaussian, float32", "gaussian", "white", "float32"),
)
TARGET_RATIO = 1.2
TARGET_PEAK_GIB = 1.0


def noisy_scene(height: int, width: int, noise: str, channels: int = 3):
    """A smooth RGB scene with edges (``channels`` = 1: its luminance) plus white (σ = 15)
    or correlated noise, (H, W, channels) float32 in [0, 1], the same for every case of a
    size."""
    import numpy as np
    import torch

    from filterscope.camera_noise import NoiseOptions, correlated_noise, luminance

    rows = torch.linspace(0, 1, height)[:, None]
    cols = torch.linspace(0, 1, width)[None, :]
    scene = torch.stack(
        [
            0.3 + 0.4 * rows * cols,
            0.5 + 0.2 * torch.sin(12 * cols) * (rows > 0.5),
            0.6 - 0.3 * rows + 0.1 * (cols > 0.3),
        ]
    )[None]
    if channels == 1:
        scene = luminance(scene)
    generator = torch.Generator().manual_seed(0)
    if noise == "white":
        noisy = scene + 15 / 255 * torch.randn(scene.shape, generator=generator)
    else:
        options = NoiseOptions(correlation_width_range=(1.5, 1.5), channel_mixing_range=(0.5, 0.5))
        noisy, _ = correlated_noise(scene, 8 / 255, options=options, generator=generator)
    return np.ascontiguousarray(noisy[0].permute(1, 2, 0).clamp(0, 1).numpy())


def save_scene(folder: Path, height: int, width: int, noise: str, channels: int = 3) -> Path:
    """:func:`noisy_scene` as an 8-bit PNG in ``folder`` (made once per size and noise)."""
    from filterscope.io import write_image

    path = folder / f"{noise}-{width}x{height}x{channels}.png"
    if not path.exists():
        write_image(path, noisy_scene(height, width, noise, channels), dtype="uint8")
    return path


def child(noise_type: str, path: str, repeats: int, precision: str) -> dict:
    """One case, in this process: median seconds of ``filterscope.denoise`` on the
    decoded image and the process's peak memory."""
    import filterscope as fs
    from filterscope.io import read_image

    image = read_image(path)[0]
    options = {"noise_type": noise_type, "precision": precision}
    fs.denoise(image[:64, :64], **options)  # loads the models, warms up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fs.denoise(image, **options)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "peak_gib": peak_rss_gib()}


def child_cli(noise_type: str, path: str, precision: str) -> dict:
    """One case, in this process: the command line on the file, its seconds and the
    process's peak memory."""
    from filterscope.cli.main import main

    out = Path(path).with_name(f"denoised-{noise_type}-{precision}.png")
    start = time.perf_counter()
    argv = ["denoise", path, "-o", str(out), "--noise-type", noise_type, "--force"]
    argv += ["--precision", precision]
    if main(argv) != 0:
        raise RuntimeError(f"filterscope {' '.join(argv)} failed")
    return {"seconds": time.perf_counter() - start, "peak_gib": peak_rss_gib()}


def run_case(noise_type: str, path: Path, repeats: int, precision: str, *, cli: bool) -> dict:
    if cli:
        call = f"child_cli({noise_type!r}, {str(path)!r}, {precision!r})"
    else:
        call = f"child({noise_type!r}, {str(path)!r}, {repeats}, {precision!r})"
    return run_fresh("blind_denoise_speed", call)


#: Sizes above this many pixels run as the command line (a photo file to a file).
CLI_ABOVE_PIXELS = 1_000_000


def run_size(folder: Path, height: int, width: int, repeats: int, channels: int) -> list[dict]:
    """Every case of :data:`CASES` at one size; ``ratio`` against the first."""
    cli = height * width > CLI_ABOVE_PIXELS
    rows, baseline = [], None
    for label, noise_type, noise, precision in CASES:
        path = save_scene(folder, height, width, noise, channels)
        result = run_case(noise_type, path, repeats, precision, cli=cli)
        baseline = baseline or result["seconds"]
        rows.append(
            {
                "image": f"{width}x{height}x{channels}",
                "case": label,
                "run": "command line" if cli else "filterscope.denoise",
                "precision": precision,
                "seconds": round(result["seconds"], 3),
                "ratio": round(result["seconds"] / baseline, 3),
                "peak_gib": round(result["peak_gib"], 3),
            }
        )
        print(f"  {rows[-1]}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs at the small size")
    parser.add_argument("--gray", action="store_true", help="gray photos (the gray models)")
    args = parser.parse_args()
    sizes = [(256, 256, 1), (384, 512, 1)] if args.quick else [(512, 512, args.repeats)]
    if not args.quick:
        sizes.append((2000, 3000, 1))
    rows = []
    with tempfile.TemporaryDirectory(prefix="blind_denoise_speed-") as folder:
        for height, width, repeats in sizes:
            rows += run_size(Path(folder), height, width, repeats, 1 if args.gray else 3)
    payload = {
        "command": " ".join(["python benchmarks/blind_denoise_speed.py"] + sys.argv[1:]),
        "targets": {"ratio_512": TARGET_RATIO, "peak_gib_3000x2000": TARGET_PEAK_GIB},
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    name = "blind_denoise_speed_gray" if args.gray else "blind_denoise_speed"
    path = write_results(name, payload)
    print_table(rows, ["image", "case", "run", "precision", "seconds", "ratio", "peak_gib"])
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
