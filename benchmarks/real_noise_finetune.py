"""A real-noise fine-tune against the shipped default, side by side in one run.

Run from the repository root (needs ../shared/data: PolyU-Canon for evaluation only)::

    nice -n 10 python benchmarks/real_noise_finetune.py \
        --models bf-drunet-color,runs/bf-drunet-color-real/model.safetensors \
        --polyu 16 --gaussian 12

Each model runs blind (``sigma=None``, what ``filterscope denoise`` does) on

- ``--polyu`` of PolyU-Canon's 55 full 512x512 crops (spread over the set; real camera
  noise, the camera JPEG as input, the mean of many shots as reference), and
- the first ``--gaussian`` images of CBSD68 with i.i.d. Gaussian noise at each of
  ``--sigmas`` (0-255 scale), the papers' protocol (not clipped), noise fixed per
  (image, σ) by seed, the same for every model.

PSNR (dB, 0-255 over all channels) of the clipped estimate, mean over images. The first
model is the reference: the table gives the others' differences to it, and, for models
with a noise-map estimator, the mean of the map on the PolyU crops (0-255 scale).
Results: ``benchmarks/results/real_noise_finetune.json``. A checkpoint file
(``RUN_DIR/checkpoint.pt``) is accepted as a model, to follow a run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from _common import print_table, write_results
from real_noise import DATA, load_pairs, score

SHARED = Path(__file__).resolve().parents[2] / "shared"
CBSD68 = SHARED / "data" / "CBSD68"


def gaussian_pairs(
    count: int, sigmas: list[float]
) -> list[tuple[str, float, torch.Tensor, torch.Tensor]]:
    from filterscope.io import read_image, to_tensor

    pairs = []
    for index, path in enumerate(sorted(CBSD68.iterdir())[:count]):
        clean = to_tensor(read_image(path)[0])
        for sigma in sigmas:
            generator = torch.Generator().manual_seed(33_000 + 1000 * index + int(sigma * 10))
            noise = torch.randn(clean.shape, generator=generator) * (sigma / 255.0)
            pairs.append((path.stem, sigma, clean + noise, clean))
    return pairs


def run_model(spec: str, polyu, gaussian) -> dict:
    from filterscope.hub import load_model
    from filterscope.inference import denoise_tensor

    model = load_model(spec).eval()
    estimator = getattr(model, "estimate_noise_map", None)
    scores: dict = {"polyu": [], "gaussian": {}, "map_mean_255": []}
    start = time.perf_counter()
    with torch.inference_mode():
        for pair in polyu:
            scores["polyu"].append(score(denoise_tensor(model, pair.noisy), pair.clean)[0])
            level = estimator(pair.noisy) if estimator is not None else None
            if level is not None:
                scores["map_mean_255"].append(255.0 * float(level.mean()))
        for _, sigma, noisy, clean in gaussian:
            psnr = score(denoise_tensor(model, noisy), clean)[0]
            scores["gaussian"].setdefault(f"{sigma:g}", []).append(psnr)
    scores["seconds"] = round(time.perf_counter() - start, 1)
    return scores


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated model specs")
    parser.add_argument("--polyu", type=int, default=16, help="PolyU-Canon crops (of 55)")
    parser.add_argument("--gaussian", type=int, default=12, help="CBSD68 images")
    parser.add_argument("--sigmas", default="15,25,50", help="Gaussian sigmas (0-255)")
    parser.add_argument("--name", default="real_noise_finetune", help="results file name")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sigmas = [float(s) for s in args.sigmas.split(",")]
    if not models or min(args.polyu, args.gaussian) < 0:
        parser.error("--models: at least one; --polyu, --gaussian: not negative")
    polyu = load_pairs(DATA, args.polyu) if args.polyu else []
    gaussian = gaussian_pairs(args.gaussian, sigmas) if args.gaussian else []
    noisy = [score(pair.noisy, pair.clean)[0] for pair in polyu]
    results = {spec: run_model(spec, polyu, gaussian) for spec in models}
    rows = [{"model": "noisy input", "PolyU": _mean(noisy)}]
    reference = results[models[0]]
    for spec, scores in results.items():
        row = {"model": spec, "PolyU": _mean(scores["polyu"])}
        for sigma in sigmas:
            row[f"CBSD68 σ={sigma:g}"] = _mean(scores["gaussian"].get(f"{sigma:g}", []))
        row["map mean (0-255)"] = _mean(scores["map_mean_255"])
        rows.append(row)
        if spec != models[0]:
            delta = {"model": f"  {spec} - {models[0]}"}
            delta["PolyU"] = _mean(scores["polyu"]) - _mean(reference["polyu"]) if polyu else None
            for sigma in sigmas:
                key = f"{sigma:g}"
                if gaussian:
                    delta[f"CBSD68 σ={key}"] = _mean(scores["gaussian"][key]) - _mean(
                        reference["gaussian"][key]
                    )
            rows.append(delta)
    columns = ["model", "PolyU"] + [f"CBSD68 σ={s:g}" for s in sigmas] + ["map mean (0-255)"]
    print_table(rows, columns)
    write_results(
        args.name,
        {
            "command": "python benchmarks/real_noise_finetune.py " + " ".join(sys.argv[1:]),
            "polyu_crops": [pair.name for pair in polyu],
            "cbsd68_images": args.gaussian,
            "sigmas_255": sigmas,
            "noisy_psnr": noisy,
            "models": results,
            "table": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
