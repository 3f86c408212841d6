"""Speed and accuracy of the Jacobian analysis (filterscope.analysis).

Run from the repository root on an otherwise idle machine::

    python benchmarks/jacobian.py                # full run (~4-6 min on 2 cores)
    python benchmarks/jacobian.py --quick        # smoke run: tiny random model, seconds

Cases:

1. **Dense patch Jacobian**: the 1600×1600 Jacobian of a 40×40 noisy BSD68 patch
   (σ = 50) through the published BF-DnCNN [0, 100], in float32 with receptive-field
   crops (:func:`~filterscope.analysis.dense_jacobian`); against float64 (relative
   Frobenius error), against a plain batched ``vmap(vjp)`` on the whole patch, and
   against the published notebook's loop (one forward + backward per row), timed on
   ``--naive-rows`` rows and extrapolated to all rows. Target: < 20 s, 1e-5 relative.
2. **Matrix-free accuracy** on a 64×64 crop: probe estimate of ``d`` (64 probes)
   against the exact ``Σ s_i²``, and the top-10 singular values by block Krylov
   against the dense SVD. Targets: 5% and 1%.
3. **Matrix-free speed**: ``d`` of a 256×256 image to ±5% (``rtol=0.05``). Target < 60 s.

Results: ``benchmarks/results/jacobian.json`` (``jacobian_quick.json`` for --quick)
and a markdown table. Peak resident memory is recorded; timings on a loaded machine
are meaningless, so the load average is recorded too.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import filterscope  # noqa: E402
from _common import SHARED, print_table, write_results  # noqa: E402
from filterscope.analysis import (  # noqa: E402
    dense_jacobian,
    estimate_effective_dim,
    top_singular_triplets,
)

CHECKPOINT = SHARED / "reference/bias_free_denoising/pretrained/dncnn/bias_free/0-100.pt"
IMAGE = SHARED / "data/BSD68"


def load_model(quick: bool, checkpoint: Path) -> tuple[torch.nn.Module, str]:
    if quick or not checkpoint.exists():
        torch.manual_seed(0)
        model = filterscope.create_model("dncnn", bias=False, num_layers=4, hidden=8).eval()
        return model, "random tiny DnCNN (4 layers, 8 channels)"
    return filterscope.load_checkpoint(checkpoint), str(checkpoint)


def load_image() -> torch.Tensor:
    files = sorted(IMAGE.glob("*.png")) if IMAGE.exists() else []
    if files:
        from filterscope.io import read_image, to_tensor

        return to_tensor(read_image(files[0])[0])
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 1, 321, 481, generator=g)


def crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, :, top : top + size, left : left + size].contiguous()


def naive_rows(model: torch.nn.Module, y: torch.Tensor, rows: int) -> float:
    """Seconds per row of the published notebook's loop: forward + backward per pixel."""
    n = y.numel()
    picks = torch.linspace(0, n - 1, rows).long().tolist()
    start = time.perf_counter()
    for i in picks:
        inp = y.clone().requires_grad_(True)
        out = model(inp)
        (grad,) = torch.autograd.grad(out.reshape(-1)[i], inp)
    del grad
    return (time.perf_counter() - start) / rows


@dataclass
class _Noisy:
    """Noisy centre crops of one image at σ = 50, drawn in turn from one seeded generator."""

    image: torch.Tensor
    sigma: float = 50 / 255
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    def __call__(self, size: int) -> torch.Tensor:
        x = crop(self.image, size)
        return x + self.sigma * torch.randn(x.shape, generator=self.generator)


def _timed(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` and the seconds it took."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def dense_case(
    model: torch.nn.Module, y: torch.Tensor, *, naive_rows_timed: int, skip_plain: bool
) -> tuple[dict, list[dict]]:
    """Case 1: the dense patch Jacobian in float32 against float64, plain vmap and the loop."""
    patch = y.shape[-1]
    dense_jacobian(model, y[..., :8, :8])  # warm-up
    j32, t32 = _timed(dense_jacobian, model, y, dtype=torch.float32)
    j64, t64 = _timed(dense_jacobian, model, y, dtype=torch.float64)
    rel = float((j32.double() - j64).norm() / j64.norm())
    plain = None
    if not skip_plain:
        jp, plain = _timed(dense_jacobian, model, y, radius=None, dtype=torch.float32)
        assert float((jp - j32).abs().max()) < 1e-4
        del jp
    naive_total = naive_rows(model, y, naive_rows_timed) * y.numel()
    del j32, j64
    result = {
        "patch": patch,
        "n": y.numel(),
        "float32_seconds": t32,
        "float64_seconds": t64,
        "relative_error_float32_vs_float64": rel,
        "plain_vmap_vjp_seconds": plain,
        "naive_loop_rows_timed": naive_rows_timed,
        "naive_loop_seconds_extrapolated": naive_total,
        "speedup_vs_naive": naive_total / t32,
        "speedup_vs_plain_vmap": None if plain is None else plain / t32,
        "target_seconds": 20.0,
        "target_relative_error": 1e-5,
        "passed": t32 < 20.0 and rel < 1e-5,
    }
    rows = [
        {
            "case": f"dense J {patch}x{patch} float32",
            "seconds": t32,
            "value": rel,
            "target": "< 20 s, rel < 1e-5",
            "passed": result["passed"],
        },
        {"case": "  float64 reference", "seconds": t64},
        {"case": "  plain vmap(vjp), no crops", "seconds": plain},
        {
            "case": f"  naive loop (from {naive_rows_timed} rows)",
            "seconds": naive_total,
            "value": naive_total / t32,
            "target": "ratio",
        },
    ]
    return result, rows


def accuracy_case(model: torch.nn.Module, y: torch.Tensor) -> tuple[dict, list[dict]]:
    """Case 2: the probe estimate of ``d`` and the Krylov top-10 against the dense SVD."""
    small = y.shape[-1]
    jac, t_dense = _timed(dense_jacobian, model, y, dtype=torch.float32)
    s = torch.linalg.svdvals(jac.double())
    del jac
    exact = float(s.pow(2).sum())
    est = estimate_effective_dim(model, y, probes=64, batch=8, seed=1)
    d_err = abs(est["effective_dim"] - exact) / exact
    (_, s_top, _), t_top = _timed(
        top_singular_triplets, model, y, 10, oversample=10, power_iters=6, seed=1
    )
    top_err = float(((s_top - s[:10]).abs() / s[:10]).max())
    result = {
        "size": small,
        "dense_jacobian_seconds": t_dense,
        "exact_effective_dim": exact,
        "probe_estimate": est["effective_dim"],
        "probe_interval": est["interval"],
        "probes": est["probes"],
        "probe_relative_error": d_err,
        "probe_seconds": est["seconds"],
        "top10_exact": s[:10].tolist(),
        "top10_krylov": s_top.tolist(),
        "top10_max_relative_error": top_err,
        "top10_seconds": t_top,
        "passed": d_err < 0.05 and top_err < 0.01,
    }
    rows = [
        {
            "case": f"probe d, {small}x{small}, 64 probes",
            "seconds": est["seconds"],
            "value": d_err,
            "target": "< 0.05",
            "passed": d_err < 0.05,
        },
        {
            "case": "top-10 singular values (Krylov)",
            "seconds": t_top,
            "value": top_err,
            "target": "< 0.01",
            "passed": top_err < 0.01,
        },
    ]
    return result, rows


def large_case(model: torch.nn.Module, y: torch.Tensor) -> tuple[dict, list[dict]]:
    """Case 3: the probe estimate of ``d`` on a large image to ±5%."""
    large = y.shape[-1]
    est = estimate_effective_dim(model, y, probes=64, batch=4, rtol=0.05, seed=2)
    half = (est["interval"][1] - est["interval"][0]) / 2 / est["effective_dim"]
    passed = est["seconds"] < 60 and half <= 0.05
    result = {
        "size": large,
        **{k: v for k, v in est.items() if k != "samples"},
        "relative_half_width": half,
        "passed": passed,
    }
    row = {
        "case": f"probe d, {large}x{large}, rtol 0.05",
        "seconds": est["seconds"],
        "value": half,
        "target": "< 60 s, ±5%",
        "passed": passed,
    }
    return result, [row]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and sizes (smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--naive-rows", type=int, default=16)
    parser.add_argument("--skip-plain", action="store_true", help="skip the plain vmap(vjp) run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    patch, small, large = (12, 24, 48) if args.quick else (40, 64, 256)
    model, model_name = load_model(args.quick, args.checkpoint)
    noisy = _Noisy(load_image())
    payload = {
        "model": model_name,
        "threads": args.threads,
        "quick": args.quick,
        "load_average": os.getloadavg(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    payload["dense_patch_jacobian"], rows = dense_case(
        model, noisy(patch), naive_rows_timed=args.naive_rows, skip_plain=args.skip_plain
    )
    payload["matrix_free_accuracy"], more = accuracy_case(model, noisy(small))
    rows += more
    payload["matrix_free_large"], more = large_case(model, noisy(large))
    rows += more

    payload["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path = write_results("jacobian_quick" if args.quick else "jacobian", payload)
    print_table(rows, ["case", "seconds", "value", "target", "passed"])
    print(f"peak RSS {payload['peak_rss_mib']:.0f} MiB; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
