"""Which bias-free architecture learns most per CPU-second? Learning curves at equal compute.

Run from the repository root (needs ../shared)::

    python benchmarks/architectures.py                 # 360 CPU-seconds per candidate
    python benchmarks/architectures.py --budget 60     # a quick look
    python benchmarks/architectures.py --jobs 2        # candidates in parallel processes

Every candidate trains with the same recipe — Adam 1e-3 after a linear warm-up over
``--warmup`` steps (200, as the shipped recipes), batches of 16 BSD400 patches 64×64,
σ ~ U[0, 100] (0–255 scale), bfloat16 autocast, channels-last, one thread —
on the *same* stream of batches (same patch and noise generators), for the same
process CPU time (``time.process_time``: robust to other jobs on the machine, which
only stretch the wall time). Every ``--every`` CPU-seconds it is scored blind on the
first 4 Set12 images at σ = 25 (fixed noise); scoring time is not counted.

The best candidate at the budget is drawn thick; the table also says which
architecture the shipped default uses, so a disagreement shows. Results:
``benchmarks/results/architectures.json`` (curves, throughput, parameters) and
``benchmarks/results/architectures.png`` (PSNR against CPU-seconds), plus a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from _common import RESULTS_DIR, SHARED, print_table, write_results
from filterscope.models import create_model
from filterscope.training import TrainConfig
from filterscope.training.data import PatchSampler, load_validation_images
from filterscope.training.trainer import learning_rate, make_batch, training_step, validate

DATA = SHARED / "data"
CANDIDATES = {
    "bf-dncnn (20 layers, 64 ch)": ("dncnn", {}),
    "bf-unet (paper, A.3)": ("unet", {}),
    "bf-drunet (32/64/128/256, 2 blocks)": (
        "drunet",
        {"widths": [32, 64, 128, 256], "blocks": 2, "noise_map": True},
    ),
}
SHIPPED = "bf-drunet (32/64/128/256, 2 blocks)"


def learning_curve(name: str, args) -> dict:
    """Train one candidate for ``args.budget`` CPU-seconds; PSNR every ``args.every``."""
    arch, options = CANDIDATES[name]
    torch.set_num_threads(1)
    sampler = PatchSampler(DATA / "BSD400", patch_size=64, channels=1)
    val_images = load_validation_images(DATA / "Set12", channels=1, limit=4)
    config = TrainConfig(
        arch=arch,
        sigma_range=[0.0, 100.0],
        batch_size=16,
        patch_size=64,
        lr=1e-3,
        warmup_steps=args.warmup,
        lr_milestones=[],
    )
    torch.manual_seed(0)
    model = create_model(arch, bias=False, in_channels=1, **options)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    patches, noise = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    cpu = 0.0
    steps = 0
    curve = [{"cpu_seconds": 0.0, "steps": 0, **validate(model, val_images, [25.0])}]
    next_score = args.every
    while cpu < args.budget:
        noisy, clean, *_ = make_batch(sampler, config, config.batch_size, patches, noise)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, steps)
        start = time.process_time()
        noisy = noisy.contiguous(memory_format=torch.channels_last)
        training_step(model, optimizer, noisy, clean, precision="bfloat16")
        cpu += time.process_time() - start
        steps += 1
        if cpu >= next_score or cpu >= args.budget:
            curve.append(
                {"cpu_seconds": round(cpu, 1), "steps": steps} | validate(model, val_images, [25.0])
            )
            print(f"  {arch}: {cpu:.0f} CPU-s, {steps} steps, {curve[-1]['val_psnr_25']:.2f} dB")
            next_score += args.every
    return {
        "arch": arch,
        "options": options,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "kpx_per_cpu_second": round(steps * 16 * 64 * 64 / cpu / 1e3, 1),
        "curve": curve,
    }


def plot(results: dict, best: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        xs = [p["cpu_seconds"] for p in result["curve"]]
        ys = [p["val_psnr_25"] for p in result["curve"]]
        label = name + (" (shipped)" if name == SHIPPED else "")
        ax.plot(xs, ys, marker="o", lw=2.5 if name == best else 1.2, label=label)
    ax.set_xlabel("training CPU-seconds (one thread)")
    ax.set_ylabel("PSNR (dB), Set12[:4], σ = 25, blind")
    ax.set_title("Bias-free architectures at equal compute (thick: best at the budget)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=360.0, help="CPU-seconds per candidate")
    parser.add_argument("--every", type=float, default=60.0, help="CPU-seconds between scores")
    parser.add_argument("--warmup", type=int, default=200, help="learning-rate warm-up steps")
    parser.add_argument("--jobs", type=int, default=1, help="candidates trained at once")
    args = parser.parse_args()
    if not (DATA / "BSD400").is_dir():
        print(f"needs {DATA}/BSD400 and Set12", file=sys.stderr)
        return 2
    names = list(CANDIDATES)
    with ProcessPoolExecutor(args.jobs) as pool:
        curves = list(pool.map(learning_curve, names, [args] * len(names)))
    results = dict(zip(names, curves, strict=True))
    rows = [
        {
            "candidate": name,
            "parameters": r["parameters"],
            "kpx/CPU-s": r["kpx_per_cpu_second"],
            "steps": r["steps"],
            "PSNR at half budget": next(
                p["val_psnr_25"] for p in r["curve"] if p["cpu_seconds"] >= args.budget / 2
            ),
            "PSNR at budget": r["curve"][-1]["val_psnr_25"],
        }
        for name, r in results.items()
    ]
    best = max(results, key=lambda n: results[n]["curve"][-1]["val_psnr_25"])
    payload = {
        "protocol": "bf16 autocast, channels-last, 1 thread, Adam 1e-3 after a linear warm-up "
        f"of {args.warmup} steps, 16x64x64 BSD400 patches, sigma ~ U[0,100]; blind PSNR on "
        "Set12[:4] at sigma 25",
        "budget_cpu_seconds": args.budget,
        "parallel_jobs": args.jobs,
        "shipped": SHIPPED,
        "best_at_budget": best,
        "candidates": results,
    }
    write_results("architectures", payload)
    plot(results, best, RESULTS_DIR / "architectures.png")
    print_table(rows, list(rows[0]))
    print(f"best at the budget: {best}; shipped: {SHIPPED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
