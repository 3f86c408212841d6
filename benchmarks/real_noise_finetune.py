"""A real-noise fine-tune against the shipped default, side by side in one run.

Run from the repository root (needs ../shared/data: PolyU-Canon for evaluation only)::

    nice -n 10 python benchmarks/real_noise_finetune.py \
        --models bf-drunet-color,runs/bf-drunet-color-real/model.safetensors \
        --polyu 16 --gaussian 12

Each model runs blind (``sigma=None``, what ``filterscope denoise`` does) on

- ``--polyu`` of PolyU-Canon's 55 full 512x512 crops (spread over the set; real camera
  noise, the camera JPEG as input, the mean of many shots as reference), and
- with ``--pairs FOLDER``, every pair of a folder of held-out real noisy / clean pairs
  (``noisy/``, ``clean/``, as ``scripts/prepare_training_data.py --pairs`` writes them;
  a camera or scene the models did not train on): a validation set that is not the
  benchmark's, to choose a training stage by, and
- the first ``--gaussian`` images of CBSD68 with i.i.d. Gaussian noise at each of
  ``--sigmas`` (0-255 scale), the papers' protocol (not clipped), noise fixed per
  (image, σ) by seed, the same for every model.

PSNR (dB, 0-255 over all channels) of the clipped estimate, mean over images. The first
model is the reference: the table gives the others' differences to it, and, for models
with a noise-map estimator, the mean of the map on the PolyU crops (0-255 scale).
``--map-scales 2,4`` and ``--told 10,15`` also run each model on the PolyU crops with its
estimated map scaled, and told one σ: whether the blind gap is the estimate's level;
``--measured-map 4`` tells it the std map measured from noisy - clean (an oracle);
``--ensemble`` adds the blind path with the 8-fold self-ensemble (8 times the time);
``--pooled-scales 2,3`` tells each crop (PolyU and held-out) one level, that many times
the root mean square of its estimated map.
Results: ``benchmarks/results/real_noise_finetune.json``. A checkpoint file
(``RUN_DIR/checkpoint.pt``) is accepted as a model, to follow a run.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from _common import SHARED, parse_sigma_list, print_table, results_name, write_results
from real_noise import DATA, load_pairs, score

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


def run_model(spec: str, polyu, gaussian, probe: Probe, held_out=()) -> dict:
    from filterscope.hub import load_model
    from filterscope.inference import denoise_tensor
    from filterscope.training.data import measured_noise_std

    model = load_model(spec).eval()
    estimator = getattr(model, "estimate_noise_map", None)
    scores: dict = {"polyu": [], "gaussian": {}, "map_mean_255": [], "held_out": []}
    scores |= {"polyu_map_scaled": {}, "polyu_told": {}}  # the probes, when asked for
    scores |= {"polyu_measured_map": [], "polyu_ensemble": []}
    scores |= {"polyu_pooled": {}, "held_out_pooled": {}}
    start = time.perf_counter()
    with torch.inference_mode():
        for pair in polyu:
            scores["polyu"].append(score(denoise_tensor(model, pair.noisy), pair.clean)[0])
            level = estimator(pair.noisy) if estimator is not None else None
            if level is not None:
                scores["map_mean_255"].append(255.0 * float(level.mean()))
                for factor in probe.map_scales:
                    # A map input: the whole crop at once (denoise_tensor takes one σ).
                    psnr = score(model(pair.noisy, factor * level).clamp(0, 1), pair.clean)[0]
                    scores["polyu_map_scaled"].setdefault(f"{factor:g}", []).append(psnr)
                _pooled_probe(model, level, pair, probe, scores["polyu_pooled"])
            if probe.ensemble:
                psnr = score(denoise_tensor(model, pair.noisy, ensemble=True), pair.clean)[0]
                scores["polyu_ensemble"].append(psnr)
            if probe.measured_window:
                # The map a perfect estimator of the real noise's std would give.
                measured = measured_noise_std(pair.noisy, pair.clean, probe.measured_window)
                psnr = score(model(pair.noisy, measured).clamp(0, 1), pair.clean)[0]
                scores["polyu_measured_map"].append(psnr)
            for sigma in probe.told:
                psnr = score(denoise_tensor(model, pair.noisy, sigma=sigma / 255.0), pair.clean)[0]
                scores["polyu_told"].setdefault(f"{sigma:g}", []).append(psnr)
        for pair in held_out:
            scores["held_out"].append(score(denoise_tensor(model, pair.noisy), pair.clean)[0])
            if estimator is not None and probe.pooled_scales:
                level = estimator(pair.noisy)
                _pooled_probe(model, level, pair, probe, scores["held_out_pooled"])
        for _, sigma, noisy, clean in gaussian:
            psnr = score(denoise_tensor(model, noisy), clean)[0]
            scores["gaussian"].setdefault(f"{sigma:g}", []).append(psnr)
    scores["seconds"] = round(time.perf_counter() - start, 1)
    return scores


def _pooled_probe(model, level, pair, probe: Probe, table: dict) -> None:
    """The crop told one level everywhere: each of ``probe.pooled_scales`` times the
    root mean square of its estimated map (positively homogeneous like the map)."""
    from filterscope.models.noise_map import pooled_map

    if level is None:
        return
    pooled = pooled_map(level)
    for factor in probe.pooled_scales:
        psnr = score(model(pair.noisy, factor * pooled).clamp(0, 1), pair.clean)[0]
        table.setdefault(f"{factor:g}", []).append(psnr)


@dataclass(frozen=True)
class Probe:
    """Where the blind gap on PolyU comes from: each model also run with its own
    estimated map times each of ``map_scales``, told each single σ of ``told``
    (0-255; an oracle when picked for the set), and with ``measured_window`` > 0 told
    the std map measured from the crop's noisy - clean over a Gaussian window of that
    many pixels (an oracle: what a perfect noise-map estimator would give); with
    ``ensemble`` also blind with ``denoise --ensemble`` (the 8 flips and rotations);
    and told one level per crop, each of ``pooled_scales`` times the root mean square
    of its estimated map (PolyU and the held-out pairs)."""

    map_scales: tuple[float, ...] = ()
    told: tuple[float, ...] = ()
    measured_window: float = 0.0
    ensemble: bool = False
    pooled_scales: tuple[float, ...] = ()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated model specs")
    parser.add_argument("--polyu", type=int, default=16, help="PolyU-Canon crops (of 55)")
    parser.add_argument("--gaussian", type=int, default=12, help="CBSD68 images")
    parser.add_argument("--pairs", type=Path, help="a folder of held-out real pairs (all used)")
    parser.add_argument("--sigmas", default="15,25,50", help="Gaussian sigmas (0-255)")
    parser.add_argument(
        "--name", default="real_noise_finetune", help="results file name", type=results_name
    )
    parser.add_argument("--map-scales", default="", help="PolyU with the map times these")
    parser.add_argument("--told", default="", help="PolyU told these single sigmas (0-255)")
    parser.add_argument(
        "--measured-map",
        type=float,
        default=0.0,
        help="PolyU told the std map measured from noisy - clean over this window (px)",
    )
    parser.add_argument(
        "--ensemble", action="store_true", help="PolyU also blind with the 8-fold self-ensemble"
    )
    parser.add_argument(
        "--pooled-scales", default="", help="told these times the map's RMS, one level per crop"
    )
    args = parser.parse_args()
    probe = Probe(
        tuple(parse_sigma_list(parser, args.map_scales, option="--map-scales"))
        if args.map_scales
        else (),
        tuple(parse_sigma_list(parser, args.told, option="--told")) if args.told else (),
        args.measured_map,
        args.ensemble,
        tuple(parse_sigma_list(parser, args.pooled_scales, option="--pooled-scales"))
        if args.pooled_scales
        else (),
    )
    if not 0 <= args.measured_map <= 32:
        parser.error(f"--measured-map: a window of 0-32 pixels, got {args.measured_map:g}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sigmas = parse_sigma_list(parser, args.sigmas)
    if not models or min(args.polyu, args.gaussian) < 0:
        parser.error("--models: at least one; --polyu, --gaussian: not negative")
    polyu = load_pairs(DATA, args.polyu) if args.polyu else []
    gaussian = gaussian_pairs(args.gaussian, sigmas) if args.gaussian else []
    held_out = []
    if args.pairs is not None:
        if not (args.pairs / "noisy").is_dir() or not (args.pairs / "clean").is_dir():
            parser.error(f"--pairs: {args.pairs} has no noisy/ and clean/ folders")
        held_out = load_pairs(args.pairs, sys.maxsize)
    noisy = [score(pair.noisy, pair.clean)[0] for pair in polyu]
    noisy_held_out = [score(pair.noisy, pair.clean)[0] for pair in held_out]
    results = {spec: run_model(spec, polyu, gaussian, probe, held_out) for spec in models}
    rows = [
        {"model": "noisy input", "PolyU": _mean(noisy), "held-out pairs": _mean(noisy_held_out)}
    ]
    reference = results[models[0]]
    for spec, scores in results.items():
        row = {"model": spec, "PolyU": _mean(scores["polyu"])}
        row["held-out pairs"] = _mean(scores["held_out"])
        for sigma in sigmas:
            row[f"CBSD68 σ={sigma:g}"] = _mean(scores["gaussian"].get(f"{sigma:g}", []))
        row["map mean (0-255)"] = _mean(scores["map_mean_255"])
        rows.append(row)
        if spec != models[0]:
            delta = {"model": f"  {spec} - {models[0]}"}
            delta["PolyU"] = _mean(scores["polyu"]) - _mean(reference["polyu"]) if polyu else None
            if held_out:
                delta["held-out pairs"] = _mean(scores["held_out"]) - _mean(reference["held_out"])
            for sigma in sigmas:
                key = f"{sigma:g}"
                if gaussian:
                    delta[f"CBSD68 σ={key}"] = _mean(scores["gaussian"][key]) - _mean(
                        reference["gaussian"][key]
                    )
            rows.append(delta)
    columns = ["model", "PolyU", "held-out pairs"] + [f"CBSD68 σ={s:g}" for s in sigmas]
    columns.append("map mean (0-255)")
    print_table(rows, columns)
    probe_rows = [
        {
            "model": spec,
            "probe": f"{kind} {key}",
            "PolyU": _mean(values),
            "held-out pairs": _mean(scores["held_out_pooled"].get(key, []))
            if kind == "pooled map ×"
            else None,
        }
        for spec, scores in results.items()
        for kind, table in (
            ("map ×", scores["polyu_map_scaled"]),
            ("told σ =", scores["polyu_told"]),
            ("measured map,", {f"{probe.measured_window:g} px": scores["polyu_measured_map"]}),
            ("blind,", {"--ensemble": scores["polyu_ensemble"]}),
            ("pooled map ×", scores["polyu_pooled"]),
        )
        for key, values in table.items()
        if values
    ]
    if probe_rows:
        print_table(probe_rows, ["model", "probe", "PolyU", "held-out pairs"])
    write_results(
        args.name,
        {
            "command": "python benchmarks/real_noise_finetune.py " + " ".join(sys.argv[1:]),
            "polyu_crops": [pair.name for pair in polyu],
            "cbsd68_images": args.gaussian,
            "sigmas_255": sigmas,
            "noisy_psnr": noisy,
            "held_out_pairs": str(args.pairs) if held_out else None,
            "held_out_names": [pair.name for pair in held_out],
            "held_out_noisy_psnr": noisy_held_out,
            "models": results,
            "table": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
