"""Published fidelity: our evaluation of the published DnCNNs against published_metrics.json.

Mohan et al. (ICLR 2020) published mean PSNR/SSIM on BSD68 (68 gray images) at
σ = 10, 20, …, 100 (0–255 scale) for their checkpoints. This script loads the
published bias-free DnCNN and DnCNN trained on σ ∈ [0, 55] through
:func:`filterscope.load_checkpoint`, evaluates them with
:func:`filterscope.evaluation.evaluate` (same protocol: unclipped noisy input, estimate
clipped to [0, 1], data range 1, 7×7 uniform SSIM, input quality on the clipped noisy
image) and compares with the published numbers. It passes when |ΔPSNR| ≤ 0.05 dB at
every σ; different noise draws alone move a 68-image mean by about 0.01 dB.

Run from the repository root::

    python benchmarks/bsd68_published.py                      # full: 68 images x 10 σ
    python benchmarks/bsd68_published.py --images 2 --sigmas 30,90   # smoke run
    python benchmarks/bsd68_published.py --model bf-dncnn-gray        # + a shipped model

Extra models (``--model NAME_OR_PATH``, repeatable) are evaluated on the same noisy
images and shown side by side; they have no published numbers.

The full run takes a while on a CPU (about 2 × 680 DnCNN passes on 481×321 images).
Finished (model, σ) results are cached in ``benchmarks/results/bsd68_published.partial.json``;
rerunning continues from there, and adding a ``--model`` computes only that model
(``--restart`` ignores the cache). Results go to
``benchmarks/results/bsd68_published.json`` and are printed as markdown tables.
Pass/fail is only decided on the full 68-image set: the published values are means
over all 68 images, so a subset's mean is not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from _common import (
    RESULTS_DIR,
    SHARED,
    parse_sigma_list,
    print_table,
    read_partial,
    write_partial,
    write_results,
)
from filterscope import load_checkpoint
from filterscope.evaluation import evaluate, load_image_folder

NAME = "bsd68_published"
PUBLISHED_SIGMAS = [10.0 * (i + 1) for i in range(10)]  # entry i of every published list
TOLERANCE_DB = 0.05
FULL_SET_SIZE = 68

#: Display label -> key of published_metrics.json (also the checkpoint's path).
PUBLISHED_MODELS = {
    "BF-DnCNN [0,55]": "dncnn/bias_free/0-55",
    "DnCNN [0,55]": "dncnn/bias/0-55",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, default=None, help="use the first N BSD68 images (default: all 68)"
    )
    parser.add_argument(
        "--sigmas",
        default=",".join(f"{s:g}" for s in PUBLISHED_SIGMAS),
        help="comma-separated noise levels on the 0-255 scale (default: 10,20,...,100)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="arithmetic of the forward pass (filterscope.models.fast); default float32",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME_OR_PATH",
        help="extra model to evaluate alongside (shipped name or checkpoint path); repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of the noise (default 0)")
    parser.add_argument(
        "--batch-size", type=int, default=1, help="images per forward pass (default 1)"
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=None,
        help="the shared folder (default: $FILTERSCOPE_SHARED, else ../shared)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--restart", action="store_true", help="ignore partial results of an earlier run"
    )
    args = parser.parse_args(argv)
    args.sigmas = parse_sigma_list(parser, args.sigmas)
    if args.images is not None and args.images < 1:
        parser.error("--images must be at least 1")
    return args


def prepare(model: torch.nn.Module, precision: str) -> tuple[torch.nn.Module, str]:
    """The model converted for inference at ``precision``; eager float32 as a fallback."""
    try:
        # Imported here: the fast path is an optional part of the library.
        from filterscope.models.fast import optimize_for_inference
    except ImportError:
        if precision != "float32":
            sys.exit(f"{NAME}: --precision {precision} needs filterscope.models.fast")
        return model.eval(), "float32 (eager)"
    return optimize_for_inference(model, precision=precision), precision


def load_models(args: argparse.Namespace, shared: Path) -> tuple[dict, dict]:
    from filterscope.models.zoo import load_model

    pretrained = shared / "reference" / "bias_free_denoising" / "pretrained"
    models, sources = {}, {}
    for label, key in PUBLISHED_MODELS.items():
        path = pretrained / f"{key}.pt"
        models[label] = load_checkpoint(path)
        sources[label] = {"source": str(path), "published_key": key}
    for name in args.model:
        # A shipped name labels itself; a path is shortened to its last parts for the table.
        label = name if not Path(name).exists() else "/".join(Path(name).parts[-3:])
        while label in models:
            label += "'"
        models[label] = load_model(name)
        sources[label] = {"source": name, "published_key": None}
    return models, sources


def run_config(args: argparse.Namespace, images: list, precision: str) -> dict:
    """What must match for partial results to be reused (models are cached one by one)."""
    return {
        "images": [name for name, _ in images],
        "seed": args.seed,
        "precision": precision,
    }


def load_partial(path: Path, config: dict) -> dict[str, dict]:
    """Finished (model, σ) results of earlier runs with the same configuration.

    Keys are ``f"{label}@{sigma:g}"``, so adding a model to a finished run only
    computes the new model.
    """
    saved = read_partial(path, config, NAME)
    return {} if saved is None else dict(saved["done"])


def save_partial(path: Path, config: dict, done: dict[str, dict], protocol: dict) -> None:
    write_partial(path, {"config": config, "protocol": protocol, "done": done})


def compare(results: list[dict], published: dict, sources: dict, full_set: bool) -> dict:
    """Per published model: ours vs published at every σ of the run, and the verdict."""
    comparison = {}
    for label, info in sources.items():
        key = info["published_key"]
        if key is None:
            continue
        reference = published[key]
        rows = []
        for entry in (r for r in results if r["model"] == label):
            sigma = entry["sigma"]
            if sigma not in PUBLISHED_SIGMAS:
                continue  # no published value at this noise level
            i = PUBLISHED_SIGMAS.index(sigma)
            pub_psnr, pub_ssim = reference["psnr"][i], reference["ssim"][i]
            pub_psnr_in = pub_psnr - reference["psnr_delta"][i]
            pub_ssim_in = pub_ssim - reference["ssim_delta"][i]
            rows.append(
                {
                    "sigma": sigma,
                    "psnr": entry["psnr"],
                    "psnr_published": pub_psnr,
                    "delta_psnr": entry["psnr"] - pub_psnr,
                    "ssim": entry["ssim"],
                    "ssim_published": pub_ssim,
                    "delta_ssim": entry["ssim"] - pub_ssim,
                    "psnr_in": entry["psnr_in"],
                    "psnr_in_published": pub_psnr_in,
                    "delta_psnr_in": entry["psnr_in"] - pub_psnr_in,
                    "ssim_in": entry["ssim_in"],
                    "ssim_in_published": pub_ssim_in,
                }
            )
        max_delta = max((abs(r["delta_psnr"]) for r in rows), default=None)
        verdict = None
        if full_set and rows:
            verdict = bool(max_delta <= TOLERANCE_DB)
        comparison[label] = {
            "published_key": key,
            "per_sigma": rows,
            "max_abs_delta_psnr": max_delta,
            "tolerance_db": TOLERANCE_DB,
            "pass": verdict,
        }
    return comparison


def print_tables(results: list[dict], comparison: dict, labels: list[str], sigmas: list[float]):
    """One markdown table per metric: σ rows; published / ours / Δ per model, extras after."""
    ours = {(r["model"], r["sigma"]): r for r in results}
    published = {
        (label, row["sigma"]): row for label, c in comparison.items() for row in c["per_sigma"]
    }
    for metric, digits in (("psnr", 3), ("ssim", 4)):

        def cell(value, sign="", digits=digits):
            return "" if value is None else f"{value:{sign}.{digits}f}"

        rows = []
        for sigma in sigmas:
            reference = next((published[k] for k in published if k[1] == sigma), None)
            row = {
                "σ": f"{sigma:g}",
                "input ours": cell(ours[(labels[0], sigma)][f"{metric}_in"]),
                "input published": cell(reference and reference[f"{metric}_in_published"]),
            }
            for label in labels:
                value = ours[(label, sigma)][metric]
                if label in comparison:
                    match = published.get((label, sigma))
                    row[f"{label} published"] = cell(match and match[f"{metric}_published"])
                    row[f"{label} ours"] = cell(value)
                    row[f"{label} Δ"] = cell(match and match[f"delta_{metric}"], "+")
                else:
                    row[label] = cell(value)
            rows.append(row)
        unit = "dB" if metric == "psnr" else "data range 1"
        print(f"\nBSD68 mean {metric.upper()} ({unit}), σ on the 0-255 scale")
        print_table(rows, list(rows[0]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shared = (args.shared or SHARED).resolve()
    bsd68 = shared / "data" / "BSD68"
    metrics_file = shared / "reference" / "bias_free_denoising" / "published_metrics.json"
    if not bsd68.is_dir() or not metrics_file.exists():
        sys.exit(f"{NAME}: BSD68 or published_metrics.json not found under {shared} (--shared)")
    published = json.loads(metrics_file.read_text())

    images = load_image_folder(bsd68, limit=args.images)
    models, sources = load_models(args, shared)
    precision = args.precision
    runners = {}
    for label, model in models.items():
        runners[label], precision = prepare(model, args.precision)
    labels = list(runners)
    full_set = len(images) == FULL_SET_SIZE
    print(
        f"{NAME}: {len(images)} BSD68 images x {len(args.sigmas)} sigmas x {len(labels)} models, "
        f"precision {precision}, {torch.get_num_threads()} threads",
        file=sys.stderr,
    )

    config = run_config(args, images, precision)
    partial_path = RESULTS_DIR / f"{NAME}.partial.json"
    done = {} if args.restart else load_partial(partial_path, config)
    protocol = None
    start = time.perf_counter()
    for step, sigma in enumerate(args.sigmas, start=1):
        todo = {label: runners[label] for label in labels if f"{label}@{sigma:g}" not in done}
        if not todo:
            print(f"{NAME}: sigma {sigma:g} already done (partial results)", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        result = evaluate(
            todo,
            images,
            [sigma / 255.0],
            seed=args.seed,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
        protocol = result["protocol"]
        for entry in result["results"]:
            done[f"{entry['model']}@{sigma:g}"] = entry
        save_partial(partial_path, config, done, protocol)
        summary = ", ".join(f"{r['model']} {r['psnr']:.3f} dB" for r in result["results"])
        print(
            f"{NAME}: [{step}/{len(args.sigmas)}] sigma {sigma:g}: {summary} "
            f"({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )
    if protocol is None:  # everything came from the partial file
        protocol = json.loads(partial_path.read_text())["protocol"]
    protocol = {**protocol, "sigmas_255": args.sigmas, "precision": precision}

    results = [done[f"{label}@{s:g}"] for label in labels for s in args.sigmas]
    comparison = compare(results, published, sources, full_set)
    verdicts = [c["pass"] for c in comparison.values()]
    overall = all(verdicts) if full_set and verdicts and None not in verdicts else None
    payload = {
        "benchmark": NAME,
        "description": (
            "Mean PSNR/SSIM on BSD68 of the published DnCNN checkpoints of Mohan et al. "
            "(ICLR 2020), evaluated by filterscope, against published_metrics.json"
        ),
        "pass": overall,
        "pass_rule": f"|ours - published| <= {TOLERANCE_DB} dB mean PSNR at every sigma, "
        "decided only on the full 68-image set",
        "full_set": full_set,
        "models": sources,
        "comparison": comparison,
        "protocol": protocol,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "seconds": time.perf_counter() - start,
        },
        "results": results,
    }
    path = write_results(NAME, payload)
    # The partial file is kept: it caches finished (model, sigma) results for later runs.

    print_tables(results, comparison, labels, args.sigmas)
    print()
    for label, item in comparison.items():
        worst = item["max_abs_delta_psnr"]
        verdict = {True: "PASS", False: "FAIL", None: "n/a (subset of BSD68)"}[item["pass"]]
        worst_text = "" if worst is None else f", max |ΔPSNR| = {worst:.3f} dB"
        print(f"{label}: {verdict}{worst_text} (tolerance {TOLERANCE_DB} dB)")
    print(f"results: {path}")
    return 1 if overall is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
