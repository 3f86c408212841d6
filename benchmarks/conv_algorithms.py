"""Why a float32 BSD68 sweep of a DnCNN cannot go much faster on this CPU.

One 64 → 64 channel 3×3 convolution of a 481×321 BSD68 image (18 of DnCNN's 20 layers
are this one) computed several ways, each timed (best of ``--repeats``) and checked
against PyTorch's convolution:

- ``direct``: ``torch.nn.functional.conv2d`` (oneDNN's direct convolution), in NCHW and
  in channels-last layout, float32 and bfloat16 (the evaluation's fast path uses
  channels-last);
- ``winograd F(4x4,3x3)`` built from PyTorch operations (Lavin and Gray, 2016): 6×6 input
  tiles, the transforms as matrix products with ``kron(Bᵀ, Bᵀ)`` and ``kron(Aᵀ, Aᵀ)``, and
  36 batched 64×64 products: 4 times fewer multiplications than the direct form. Each
  stage is timed on its own (pad, tile gather, input transform, batched product, output
  transform, scatter back to an image).

Beside them: the rate of a dense 2048×2048 float32 matrix product, the ceiling of what
the machine's matrix units do. Run from the repository root::

    python benchmarks/conv_algorithms.py --threads 2    # quiet machine

Results go to ``benchmarks/results/conv_algorithms.json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

from _common import print_table, write_results

HEIGHT, WIDTH, CHANNELS = 321, 481, 64  # one BSD68 image, DnCNN's hidden width

# Winograd F(4x4, 3x3) matrices (interpolation points 0, ±1, ±2, ∞)
B_T = [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
]
G = [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
]
A_T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]


class WinogradF43:
    """A 3×3, stride-1, zero-padded convolution by Winograd's F(4×4, 3×3), NHWC in and out."""

    def __init__(self, weight: torch.Tensor):
        b_t = torch.tensor(B_T, dtype=torch.float64)
        g = torch.tensor(G, dtype=torch.float64)
        a_t = torch.tensor(A_T, dtype=torch.float64)
        # vec(Bᵀ d B) = kron(Bᵀ, Bᵀ) vec(d) for row-major 6×6 tiles d
        self.input_transform = torch.kron(b_t, b_t).float()  # (36, 36)
        self.output_transform = torch.kron(a_t, a_t).float()  # (16, 36)
        u = torch.einsum("ai,kcij,bj->abck", g, weight.double(), g)  # (6, 6, C, K)
        self.weight = u.reshape(36, weight.shape[1], weight.shape[0]).float().contiguous()

    def stages(self, x: torch.Tensor) -> list[tuple[str, callable]]:
        """The stages as ``(name, function of the previous stage's result)``."""
        n, h, w, c = x.shape
        tiles_h, tiles_w = -(-h // 4), -(-w // 4)
        out_channels = self.weight.shape[2]
        return [
            ("pad", lambda _: F.pad(x, (0, 0, 1, 4 * tiles_w + 1 - w, 1, 4 * tiles_h + 1 - h))),
            (
                "gather tiles",
                lambda p: (
                    p.unfold(1, 6, 4).unfold(2, 6, 4).permute(4, 5, 0, 1, 2, 3).reshape(36, -1)
                ),
            ),
            ("input transform", lambda d: (self.input_transform @ d).view(36, -1, c)),
            ("batched product", lambda v: torch.bmm(v, self.weight)),
            ("output transform", lambda m: self.output_transform @ m.view(36, -1)),
            (
                "scatter to image",
                lambda y: (
                    y.view(4, 4, n, tiles_h, tiles_w, out_channels)
                    .permute(2, 3, 0, 4, 1, 5)
                    .reshape(n, 4 * tiles_h, 4 * tiles_w, out_channels)[:, :h, :w]
                    .contiguous()
                ),
            ),
        ]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        value = None
        for _, stage in self.stages(x):
            value = stage(value)
        return value


def best_time(function, repeats: int) -> float:
    function()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    args = parser.parse_args()
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be positive")
    torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, CHANNELS, HEIGHT, WIDTH, generator=gen)
    weight = torch.randn(CHANNELS, CHANNELS, 3, 3, generator=gen) * (2 / (9 * CHANNELS)) ** 0.5
    reference = F.conv2d(x.double(), weight.double(), padding=1)
    flop = 2.0 * CHANNELS * CHANNELS * 9 * HEIGHT * WIDTH

    def relative_error(out: torch.Tensor) -> float:
        return float((out.double() - reference).norm() / reference.norm())

    rows = []

    def add(name: str, seconds: float, error: float | None) -> None:
        rows.append(
            {
                "method": name,
                "ms": 1e3 * seconds,
                "direct-equivalent GFLOP/s": flop / seconds / 1e9,
                "relative error": error,
            }
        )

    last = x.contiguous(memory_format=torch.channels_last)
    for name, inp, w in [
        ("direct, float32, NCHW", x, weight),
        ("direct, float32, channels-last", last, weight),
        ("direct, bfloat16, channels-last", last.bfloat16(), weight.bfloat16()),
    ]:
        seconds = best_time(lambda inp=inp, w=w: F.conv2d(inp, w, padding=1), args.repeats)
        add(name, seconds, relative_error(F.conv2d(inp, w, padding=1)))

    winograd = WinogradF43(weight)
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    out = winograd(nhwc).permute(0, 3, 1, 2)
    add(
        "winograd F(4x4,3x3), PyTorch ops",
        best_time(lambda: winograd(nhwc), args.repeats),
        relative_error(out),
    )
    stages = []
    value = None
    for name, stage in winograd.stages(nhwc):
        seconds = best_time(lambda stage=stage, value=value: stage(value), args.repeats)
        stages.append({"stage": name, "ms": 1e3 * seconds})
        value = stage(value)

    size = 2048
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    matmul_gflops = 2.0 * size**3 / best_time(lambda: a @ b, args.repeats) / 1e9
    payload = {
        "benchmark": "conv_algorithms",
        "layer": f"{CHANNELS} -> {CHANNELS} channels, 3x3, {WIDTH}x{HEIGHT} image",
        "direct_gflop_per_layer": flop / 1e9,
        "threads": args.threads,
        "load_average": list(os.getloadavg()),
        "rows": rows,
        "winograd_stages": stages,
        "dense_matmul_float32_gflops": matmul_gflops,
    }
    print_table(rows, list(rows[0]))
    print_table(stages, ["stage", "ms"])
    print(f"dense {size}x{size} float32 matrix product: {matmul_gflops:.0f} GFLOP/s")
    print(f"wrote {write_results('conv_algorithms', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
