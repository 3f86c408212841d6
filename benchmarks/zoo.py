"""Scores of the shipped model zoo on the standard test sets, beside a classical baseline.

Run from the repository root::

    python benchmarks/zoo.py                 # color sets (CBSD68, Kodak24, McMaster)
    python benchmarks/zoo.py --images 2      # smoke run on the first 2 images of each

The gray models are scored on BSD68 side by side with the published DnCNNs by
``benchmarks/bsd68_published.py --model bf-dncnn-gray --model dncnn-gray`` (its
cache makes that one run of all four models on the same noisy images); this script
reads that file to report the gap of the shipped bias-free gray model to the published
BF-DnCNN [0, 55] (target: within 0.3 dB at every σ = 10, …, 100).

Color: the shipped color model (``bf-dncnn-color``, RGB bias-free DnCNN trained on
CBSD432 with σ ∈ [0, 55]) and non-local means (scikit-image, given the true σ) on
CBSD68, Kodak24 and McMaster at σ = 15, 25, 50 (the usual color benchmark levels).
Same protocol as ``filterscope evaluate`` (noise fixed per image and σ by the seed,
estimate clipped, data range 1). BM3D is left out:
about 15 s per color image on one core here, hours for the three sets; run
``filterscope evaluate --model bm3d ...`` for it. Finished (set, model, σ) results are
cached in ``benchmarks/results/zoo.partial.json``; results go to
``benchmarks/results/zoo.json``.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from _common import RESULTS_DIR, SHARED, print_table, read_partial, write_partial, write_results
from filterscope.evaluation import evaluate
from filterscope.evaluation.runner import load_folder
from filterscope.evaluation.specs import resolve_model

COLOR_SETS = ("CBSD68", "Kodak24", "McMaster")
COLOR_MODELS = ("bf-dncnn-color", "nlm")
COLOR_SIGMAS = (15.0, 25.0, 50.0)
GRAY_TARGET_DB = 0.3
GRAY_REFERENCE = "BF-DnCNN [0,55]"
GRAY_MODEL = "bf-dncnn-gray"


def gray_gap() -> dict | None:
    """Gap of the shipped gray model to the published BF-DnCNN [0,55], per σ."""
    path = RESULTS_DIR / "bsd68_published.json"
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    psnr = {(r["model"], r["sigma"]): r["psnr"] for r in payload["results"]}
    rows = []
    for (model, sigma), value in sorted(psnr.items(), key=lambda item: item[0][1]):
        if model != GRAY_MODEL or (GRAY_REFERENCE, sigma) not in psnr:
            continue
        row = {"sigma": sigma, "ours": value, "published_model": psnr[(GRAY_REFERENCE, sigma)]}
        row["gap_db"] = row["published_model"] - value
        if ("dncnn-gray", sigma) in psnr:
            row["dncnn-gray (bias)"] = psnr[("dncnn-gray", sigma)]
        rows.append(row)
    if not rows:
        return None
    worst = max(r["gap_db"] for r in rows)
    return {
        "source": "benchmarks/results/bsd68_published.json",
        "target_db": GRAY_TARGET_DB,
        "max_gap_db": worst,
        "pass": worst <= GRAY_TARGET_DB,
        "per_sigma": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="first N images of each set")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--restart", action="store_true", help="ignore cached results")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    partial_path = RESULTS_DIR / "zoo.partial.json"
    config = {"images": args.images, "seed": 0}  # keys name the set, model and σ
    saved = None if args.restart else read_partial(partial_path, config, "zoo")
    done: dict[str, dict] = dict(saved["done"]) if saved else {}

    specs = {name: resolve_model(name) for name in COLOR_MODELS}
    rows = []
    for dataset in COLOR_SETS:
        folder = SHARED / "data" / dataset
        if not folder.is_dir():
            print(f"zoo: {folder} missing; skipped", file=sys.stderr)
            continue
        images = None
        for name, spec in specs.items():
            for sigma in COLOR_SIGMAS:
                key = f"{dataset}|{name}|{sigma:g}"
                if key not in done:
                    images = images or load_folder(folder, limit=args.images)
                    result = evaluate(
                        {name: spec.denoiser},
                        images,
                        [sigma / 255.0],
                        precision="float32",
                        progress=not args.no_progress,
                    )
                    entry = result["results"][0]
                    done[key] = {k: v for k, v in entry.items() if k != "per_image"}
                    done[key]["num_images"] = len(images)
                    write_partial(partial_path, {"config": config, "done": done})
                rows.append({"dataset": dataset, **done[key]})

    table = []
    for dataset in COLOR_SETS:
        for sigma in COLOR_SIGMAS:
            cells = {r["model"]: r for r in rows if r["dataset"] == dataset and r["sigma"] == sigma}
            if not cells:
                continue
            line = {"set": dataset, "σ": f"{sigma:g}"}
            line["input"] = next(iter(cells.values()))["psnr_in"]
            for name in COLOR_MODELS:
                if name in cells:
                    line[f"{name} PSNR"] = cells[name]["psnr"]
                    line[f"{name} SSIM"] = cells[name]["ssim"]
            table.append(line)

    gray = gray_gap()
    payload = {
        "command": "python benchmarks/zoo.py" + (f" --images {args.images}" if args.images else ""),
        "color": {"models": list(COLOR_MODELS), "sigmas": list(COLOR_SIGMAS), "results": rows},
        "gray_vs_published": gray,
    }
    if args.images is None:
        write_results("zoo", payload)
    print("\nColor test sets: mean PSNR (dB) / SSIM, σ on the 0-255 scale")
    print_table(table, list(table[0]) if table else ["set"])
    if gray is not None:
        print(f"\nBSD68: shipped {GRAY_MODEL} against published {GRAY_REFERENCE}")
        print_table(gray["per_sigma"], list(gray["per_sigma"][0]))
        verdict = "met" if gray["pass"] else "NOT met"
        print(f"largest gap {gray['max_gap_db']:.2f} dB; target {GRAY_TARGET_DB} dB {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
