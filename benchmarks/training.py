"""Training speed and memory: pipeline overhead, numeric paths, memory as the data grows.

Run from the repository root::

    python benchmarks/training.py            # full run, about 10 minutes on 2 cores
    python benchmarks/training.py --quick    # smoke run: few steps, small network
    python benchmarks/training.py --recipe recipes/cpu-bf-drunet-gray.toml --ab-steps 300

``--recipe`` picks the network, batch, precision and layout (default: the DnCNN CPU
recipe). ``--ab-steps N`` adds a paired quality A/B: the recipe trained N steps on the
same batches as float32 NCHW and as bfloat16 channels-last, validation PSNR compared.

Three measurements (issue 3 targets), each case in a fresh subprocess so its timing and
peak resident memory are its own:

1. **Pipeline overhead.** ``bare``: the same network and batch shape, one fixed batch
   already in memory, forward + backward (``bare-fwd-bwd``) and forward + backward +
   Adam step (``bare-step``), median time per step. ``pipeline``:
   :func:`filterscope.training.train` on BSD400 with the recipe (patch sampling,
   augmentation, per-patch σ, noise, step, loss logging; validation off), the median
   interval between the training callbacks (so start-up, decoding the images, is
   excluded), plus the cost of one checkpoint (the last step writes one; its interval
   less the median) spread over the recipe's ``checkpoint_every`` steps.
   Target: pipeline ≥ 90% of the bare forward+backward throughput.
2. **Numeric paths** for a training step of the same network: float32 NCHW (the
   default), float32 channels-last, bfloat16 autocast, bfloat16 autocast with
   channels-last; with the top operators of a profiled step for each, which is where
   the answer to "why is bfloat16 training slow on this CPU" comes from.
3. **Memory as the data grows.** Peak RSS of a short training run (small network) on a
   data folder of 100, 400 and 1600 images (BSD400, repeated under new names through
   symbolic links in a temporary folder), with a 64 MB image cache: memory must stay
   bounded while the data grows 16×.

Training pixels per second count one pixel per patch pixel (a 50×50 patch is 2500
pixels whatever the channels). Results: ``benchmarks/results/training.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED, peak_rss_gib, print_table, write_results

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "cpu-bf-dncnn-gray.toml"
WORKER_TAG = "RESULT "
TARGET_PIPELINE_FRACTION = 0.9


# --------------------------------------------------------------------------- worker side


def _peak_rss_mb() -> float:
    return peak_rss_gib() * 1024


def _network(case: dict, channels_last: bool = False):
    import torch

    from filterscope import create_model

    torch.manual_seed(0)
    model = create_model(
        case["arch"], bias=False, in_channels=case["in_channels"], **case["arch_options"]
    ).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def run_bare(case: dict) -> dict:
    """Fixed batch in memory; per-step time of forward+backward (and the Adam step)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(case["threads"])
    model = _network(case, channels_last=case["channels_last"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    shape = (case["batch_size"], case["in_channels"], case["patch_size"], case["patch_size"])
    clean = torch.rand(shape, generator=generator)
    noisy = clean + 0.1 * torch.randn(shape, generator=generator)
    if case["channels_last"]:
        noisy = noisy.contiguous(memory_format=torch.channels_last)
    with_step = case["variant"] == "bare-step"
    bf16 = case["precision"] == "bfloat16"
    times = []
    for index in range(case["steps"] + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            estimate = model(noisy)
        loss = F.mse_loss(estimate.float(), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if with_step:
            optimizer.step()
        if index:  # the first step warms up the allocator and kernels
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    pixels = case["batch_size"] * case["patch_size"] ** 2
    return {"seconds_per_step": seconds, "pixels_per_s": pixels / seconds}


def run_pipeline(case: dict) -> dict:
    """:func:`filterscope.training.train` for a few steps, timed inside the loop."""
    from filterscope.training import load_recipe, train

    recipe = load_recipe(case["recipe"])
    config = load_recipe(
        case["recipe"],
        steps=case["steps"] + 2,
        threads=case["threads"],
        arch_options=case["arch_options"],
        val_dir="",
        tensorboard=False,
        checkpoint_every=case["steps"] + 2,  # only the last step writes one
        warmup_steps=0,
        data_dir=case.get("data_dir", str(SHARED / "data/BSD400")),
        cache_mb=case.get("cache_mb", 1024.0),
    )
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as run_dir:
        train(
            config,
            run_dir,
            progress=False,
            callback=lambda step, loss: stamps.append(time.perf_counter()),
        )
    intervals = [later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)]
    step_seconds = statistics.median(intervals[:-1])
    checkpoint_seconds = max(intervals[-1] - step_seconds, 0.0)
    # A checkpoint every `checkpoint_every` steps, as the recipe writes them, is loop work.
    seconds = step_seconds + checkpoint_seconds / recipe.checkpoint_every
    pixels = config.batch_size * config.patch_size**2
    return {
        "seconds_per_step": seconds,
        "pixels_per_s": pixels / seconds,
        "checkpoint_seconds": checkpoint_seconds,
        "checkpoint_every": recipe.checkpoint_every,
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_numeric(case: dict) -> dict:
    """One training step (forward, backward, Adam) on a numeric path, plus a profile."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(case["threads"])
    channels_last = case["variant"].endswith("channels-last")
    bf16 = case["variant"].startswith("bfloat16")
    model = _network(case, channels_last=channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    shape = (case["batch_size"], case["in_channels"], case["patch_size"], case["patch_size"])
    clean = torch.rand(shape, generator=generator)
    noisy = clean + 0.1 * torch.randn(shape, generator=generator)
    if channels_last:
        clean = clean.contiguous(memory_format=torch.channels_last)
        noisy = noisy.contiguous(memory_format=torch.channels_last)

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.mse_loss(model(noisy).float(), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    step()
    times = []
    for _ in range(case["steps"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = [
        {"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:6]
    ]
    pixels = case["batch_size"] * case["patch_size"] ** 2
    return {"seconds_per_step": seconds, "pixels_per_s": pixels / seconds, "top_ops": top}


def _link_dataset(folder: Path, count: int) -> Path:
    """``count`` image names in ``folder`` linking to BSD400 images (cycled)."""
    sources = sorted((SHARED / "data/BSD400").glob("*.png"))
    folder.mkdir(parents=True)
    for index in range(count):
        source = sources[index % len(sources)]
        (folder / f"{index:05d}_{source.name}").symlink_to(source)
    return folder


def run_memory(case: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = _link_dataset(Path(tmp) / "data", case["images"])
        result = run_pipeline({**case, "data_dir": str(data)})
    return result


def run_ab(case: dict) -> dict:
    """The recipe trained ``steps`` steps at one numeric path; its last validation."""
    from filterscope.training import load_recipe, train

    config = load_recipe(
        case["recipe"],
        steps=case["steps"],
        threads=case["threads"],
        precision=case["precision"],
        channels_last=case["channels_last"],
        val_every=case["steps"],
        tensorboard=False,
        checkpoint_every=case["steps"],
    )
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(config, run_dir, progress=False)
    return {"validation": result["validation"], "pixels_per_s": result["pixels_per_s"]}


WORKERS = {
    "bare": run_bare,
    "pipeline": run_pipeline,
    "numeric": run_numeric,
    "memory": run_memory,
    "ab": run_ab,
}


# --------------------------------------------------------------------------- driver side


def run_in_subprocess(case: dict) -> dict:
    command = [sys.executable, __file__, "--worker", json.dumps(case)]
    env = dict(os.environ, OMP_NUM_THREADS=str(case["threads"]))
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(WORKER_TAG):
            return json.loads(line[len(WORKER_TAG) :])
    raise RuntimeError(f"worker failed for {case}:\n{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, small network")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="training recipe (TOML)")
    parser.add_argument("--ab-steps", type=int, default=0, help="paired float32/bf16 A/B")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        case = json.loads(args.worker)
        result = WORKERS[case["kind"]](case)
        print(WORKER_TAG + json.dumps(result))
        return 0
    if not (SHARED / "data/BSD400").is_dir():
        print(f"benchmarks/training.py needs {SHARED}/data/BSD400", file=sys.stderr)
        return 2

    from filterscope.training import load_recipe

    recipe = load_recipe(args.recipe)
    quick_options = {"dncnn": {"num_layers": 5, "hidden": 16}, "drunet": {"widths": [8, 16]}}
    arch = quick_options[recipe.arch] if args.quick else dict(recipe.arch_options)
    steps = 3 if args.quick else 16
    base = {
        "threads": args.threads,
        "arch": recipe.arch,
        "in_channels": recipe.in_channels,
        "arch_options": arch,
        "precision": recipe.precision,
        "channels_last": recipe.channels_last,
        "batch_size": recipe.batch_size,
        "patch_size": recipe.patch_size,
        "recipe": str(args.recipe),
        "steps": steps,
    }

    overhead = []
    for kind, variant in (("bare", "bare-fwd-bwd"), ("bare", "bare-step"), ("pipeline", "train")):
        result = run_in_subprocess({**base, "kind": kind, "variant": variant})
        overhead.append({"variant": variant, **result})
        print(f"{variant}: {result['pixels_per_s']:.0f} px/s", file=sys.stderr)
    bare = overhead[0]["pixels_per_s"]
    for row in overhead:
        row["fraction_of_bare_fwd_bwd"] = row["pixels_per_s"] / bare
    pipeline_fraction = overhead[-1]["fraction_of_bare_fwd_bwd"]

    numeric = []
    variants = ("float32", "float32-channels-last", "bfloat16", "bfloat16-channels-last")
    for variant in variants:
        result = run_in_subprocess({**base, "kind": "numeric", "variant": variant})
        numeric.append({"variant": variant, **result})
        print(f"{variant}: {result['pixels_per_s']:.0f} px/s", file=sys.stderr)
    for row in numeric:
        row["speed_vs_float32"] = row["pixels_per_s"] / numeric[0]["pixels_per_s"]

    memory = []
    sizes = (50, 100, 200) if args.quick else (100, 400, 1600)
    small = {"num_layers": 5, "hidden": 16}
    for images in sizes:
        case = {**base, "kind": "memory", "arch": "dncnn", "arch_options": small, "steps": 3}
        case.update(images=images, recipe=str(RECIPE), in_channels=1)
        case["cache_mb"] = 64.0
        result = run_in_subprocess(case)
        memory.append({"images": images, "cache_mb": 64.0, **result})
        print(f"{images} images: {result['peak_rss_mb']:.0f} MB", file=sys.stderr)

    ab = []
    for precision, channels_last in (("float32", False), ("bfloat16", True)):
        if args.ab_steps <= 0:
            break
        case = {**base, "kind": "ab", "steps": args.ab_steps}
        case.update(precision=precision, channels_last=channels_last)
        result = run_in_subprocess(case)
        ab.append({"precision": precision, "channels_last": channels_last, **result})
        print(f"A/B {precision}: {result['validation']}", file=sys.stderr)

    payload = {
        "command": "python benchmarks/training.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "network": {"arch": recipe.arch, "bias": False, **arch},
        "recipe": str(args.recipe),
        "numeric_path_of_recipe": {
            "precision": recipe.precision,
            "channels_last": recipe.channels_last,
        },
        "batch": {"batch_size": recipe.batch_size, "patch_size": recipe.patch_size},
        "targets": {"pipeline_fraction_of_bare": TARGET_PIPELINE_FRACTION},
        "pipeline_fraction_of_bare": pipeline_fraction,
        "pipeline_target_met": pipeline_fraction >= TARGET_PIPELINE_FRACTION,
        "overhead": overhead,
        "numeric_paths": numeric,
        "memory": memory,
        "quality_ab": ab,
    }
    if not args.quick:
        name = "training" if args.recipe == RECIPE else f"training_{args.recipe.stem}"
        write_results(name, payload)
    print("\nPipeline overhead (training pixels/s, same network and batch):")
    columns = ["variant", "seconds_per_step", "pixels_per_s", "fraction_of_bare_fwd_bwd"]
    print_table(overhead, columns)
    print("\nNumeric paths (one training step):")
    print_table(numeric, ["variant", "seconds_per_step", "pixels_per_s", "speed_vs_float32"])
    for row in numeric:
        ops = ", ".join(f"{op['op']} {100 * op['share']:.0f}%" for op in row["top_ops"][:4])
        print(f"  {row['variant']}: {ops}")
    print("\nPeak memory of a short run as the data grows (64 MB image cache):")
    print_table(memory, ["images", "cache_mb", "peak_rss_mb", "pixels_per_s"])
    if ab:
        print(f"\nPaired A/B, {args.ab_steps} steps on the same batches (validation PSNR):")
        rows = [{"path": f"{r['precision']}, channels_last={r['channels_last']}"} for r in ab]
        for row, result in zip(rows, ab, strict=True):
            row.update(result["validation"], pixels_per_s=result["pixels_per_s"])
        print_table(rows, list(rows[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
