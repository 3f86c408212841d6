"""Table 1 of Tachella et al. (CVPR 2021): single-image networks, Adam against gradient descent.

Run from the repository root::

    python benchmarks/dip_table1.py            # CPU recipe (about an hour on 2 idle cores)
    python benchmarks/dip_table1.py --full     # the paper's protocol, for a GPU (hours)
    python benchmarks/dip_table1.py --quick    # smoke run of a few seconds; writes nothing

What is measured, on Set9color at σ = 25 (noise seed = the image's index, as in
``ntk_set9.py``):

1. **Table 1**: the vanilla CNN, the U-Net and the autoencoder, each with noise or the
   image at the input, trained with Adam and with gradient descent, PSNR of the iterate
   kept by the oracle (the paper's protocol), plus the Nyström NTK filter of the vanilla
   CNN (equation 16, 2% columns, oracle twicing time) for both inputs. SURE stopping is
   evaluated in the same runs for the cells listed in ``SURE_CELLS`` (``--sure-all``:
   every cell; SURE doubles the cost of a run).
2. **Speed**: iterations per second of each network (Adam, noise input, PSNR logged every
   step) on the 256×256 colour House image, and the share of the loop's time spent
   outside forward and backward passes.
3. **Weight change** (Figure 4): the autoencoder with noise input on House, trained for a
   fixed number of steps at several widths with GD and with Adam; the log–log slope of the
   mean ``‖w^t − w^0‖₂`` of the intermediate layers against the width.
4. **Theory**: the relative gap between a gradient-descent-trained vanilla CNN (image
   input) and NTK twicing (:func:`filterscope.dip.ntk_gap`) against the width.
5. **Figures** (not with ``--quick``, needs matplotlib): Figure 4, Figure 5 (leading
   eigenvectors of the last pre-activations' covariance after 500 steps) and the theory
   gap, as ``benchmarks/results/dip_*.png``.

Recipes (every number is ours; the paper's appendix H is not in the text we have):

- CPU: centre crops of 64×64 pixels, width 32, Adam ≤ 1500 steps, GD ≤ 3000 steps, both
  stopping after 500 steps without a better PSNR; speed at width 32; weight change at
  widths 16–128 after 200 steps; theory on a 32×32 gray crop.
- ``--full``: whole images, width 128, Adam ≤ 20000 steps (patience 3000), GD ≤ 100000
  steps (patience 10000), trajectory evaluated every 10 steps; speed at width 128; weight
  change at widths 16–256 after 2000 steps, 3 seeds; theory on a 48×48 crop up to width
  4096.

Gradient descent uses the largest stable step, ``η = n / (2 λ_max(Θ⁰))`` (the linearised
filter's top eigenvalue is 1; it scales as ``1/c``), unless ``--gd-lr`` gives a width-free
rate (step ``lr / width``). Adam uses ``β = (0.9, 0.99)`` and the defaults of
:data:`filterscope.dip.fit.DEFAULT_ADAM_LR`.

Results go to ``benchmarks/results/dip_table1.json`` and are printed beside the paper's.
Timings on a loaded machine are not comparable; the load average is recorded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from _common import RESULTS_DIR, print_table, write_results

REPO = Path(__file__).resolve().parent.parent
SIGMA_255 = 25
ARCHS = ("vanilla", "unet", "autoencoder")
INPUTS = ("noise", "image")
OPTIMIZERS = ("adam", "gd")

# Table 1 of Tachella, Tang & Davies, "The neural tangent link between CNN denoisers and
# non-local filters", CVPR 2021: mean PSNR (dB) on the 9 colour images at σ = 25.
PAPER_TABLE1 = {
    ("vanilla", "noise", "adam"): 19.6,
    ("vanilla", "image", "adam"): 27.4,
    ("unet", "noise", "adam"): 28.3,
    ("unet", "image", "adam"): 28.1,
    ("autoencoder", "noise", "adam"): 29.2,
    ("autoencoder", "image", "adam"): 29.3,
    ("vanilla", "noise", "gd"): 15.2,
    ("vanilla", "image", "gd"): 27.5,
    ("unet", "noise", "gd"): 16.5,
    ("unet", "image", "gd"): 27.1,
    ("autoencoder", "noise", "gd"): 15.0,
    ("autoencoder", "image", "gd"): 26.8,
    ("nystrom", "noise", None): 15.2,
    ("nystrom", "image", None): 28.3,
}

# cells whose runs also estimate SURE (doubling their cost) unless --sure-all
SURE_CELLS = {
    ("autoencoder", "noise", "adam"),
    ("autoencoder", "image", "adam"),
    ("vanilla", "image", "gd"),
}

RECIPES = {
    "quick": dict(
        images=2, crop=32, width=8, iters={"adam": 20, "gd": 20}, patience=None, log_every=1,
        speed_size=64, speed_width=8, speed_iters=3,
        weight_widths=(8, 16), weight_iters=10, weight_seeds=(0,),
        theory_crop=16, theory_widths=(8, 64), theory_kernel=3, figures=False,
    ),
    "cpu": dict(
        images=None, crop=64, width=32, iters={"adam": 1500, "gd": 3000}, patience=500,
        log_every=1, speed_size=None, speed_width=32, speed_iters=20,
        weight_widths=(16, 32, 64, 128), weight_iters=200, weight_seeds=(0,),
        theory_crop=32, theory_widths=(16, 64, 256, 1024), theory_kernel=11, figures=True,
    ),
    "full": dict(
        images=None, crop=None, width=128, iters={"adam": 20000, "gd": 100000},
        patience={"adam": 3000, "gd": 10000}, log_every=10, speed_size=None,
        speed_width=128, speed_iters=200,
        weight_widths=(16, 32, 64, 128, 256), weight_iters=2000, weight_seeds=(0, 1, 2),
        theory_crop=48, theory_widths=(16, 64, 256, 1024, 4096), theory_kernel=11,
        figures=True,
    ),
}  # fmt: skip


def data_dir() -> Path:
    """Set9color: under ``$FILTERSCOPE_SHARED/data`` or ``../shared/data`` of the repository."""
    shared = os.environ.get("FILTERSCOPE_SHARED")
    root = Path(shared) if shared else REPO.parent / "shared"
    return root / "data" / "Set9color"


def load(path: Path, crop: int | None) -> torch.Tensor:
    """``(C, H, W)`` float64 image, centre-cropped to ``crop × crop`` when given."""
    from filterscope.io import read_image

    image, _ = read_image(path)
    x = torch.from_numpy(image.transpose(2, 0, 1).copy()).double()
    if crop:
        _, h, w = x.shape
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        x = x[:, top : top + crop, left : left + crop].contiguous()
    return x


def _cell_name(arch: str, net_input: str, optimizer: str | None) -> str:
    return f"{arch}/{net_input}" + (f"/{optimizer}" if optimizer else "")


def table1(images, recipe, args) -> tuple[list[dict], dict]:
    from filterscope.dip import fit_single_image
    from filterscope.metrics import psnr
    from filterscope.noise import add_noise
    from filterscope.ntk import denoise

    sigma = SIGMA_255 / 255.0
    rows = []
    for index, path in enumerate(images):
        x = load(path, recipe["crop"])
        y = add_noise(x, sigma, generator=index)
        for arch in ARCHS:
            for net_input in INPUTS:
                for optimizer in OPTIMIZERS:
                    cell = (arch, net_input, optimizer)
                    patience = recipe["patience"]
                    if isinstance(patience, dict):
                        patience = patience[optimizer]
                    result = fit_single_image(
                        y,
                        arch=arch,
                        input=net_input,
                        optimizer=optimizer,
                        iters=recipe["iters"][optimizer],
                        lr=args.gd_lr if optimizer == "gd" else None,
                        width=recipe["width"],
                        sigma=sigma,
                        clean=x,
                        stop="oracle",
                        estimate_sure=args.sure_all or cell in SURE_CELLS,
                        patience=patience,
                        log_every=recipe["log_every"],
                        seed=index,
                        device=args.device,
                    )
                    row = {
                        "image": path.stem,
                        "cell": _cell_name(*cell),
                        "oracle_psnr": result.choices["oracle_psnr"],
                        "oracle_iteration": result.choices["oracle_iteration"],
                        "sure_psnr": result.choices.get("sure_psnr"),
                        "sure_iteration": result.choices.get("sure_iteration"),
                        "iterations": result.timing["iterations"],
                        "seconds": result.timing["total_s"],
                        "lr_effective": result.config["lr_effective"],
                    }
                    rows.append(row)
                    sure = row["sure_psnr"]
                    sure_text = "" if sure is None else f", SURE {sure:.2f}"
                    print(
                        f"{path.stem} {row['cell']}: oracle {row['oracle_psnr']:.2f} dB at "
                        f"{row['oracle_iteration']}{sure_text} ({row['iterations']} steps, "
                        f"{row['seconds']:.1f} s)",
                        flush=True,
                    )
        for net_input in INPUTS:
            row = {"image": path.stem, "cell": _cell_name("nystrom", net_input, None)}
            start = time.perf_counter()
            for stop in ("oracle", "sure"):
                x_hat, info = denoise(
                    y,
                    sigma=sigma,
                    clean=x,
                    stop=stop,
                    method="ntk",
                    depth=2,
                    kernel_size=11,
                    output_kernel=1,
                    input=net_input,
                    columns=0.02,
                )
                row[f"{stop}_psnr"] = float(psnr(x_hat[None].float(), x[None].float()))
                row[f"{stop}_t"] = info["t"]
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
            print(
                f"{path.stem} {row['cell']}: oracle {row['oracle_psnr']:.2f} dB, "
                f"SURE {row['sure_psnr']:.2f}",
                flush=True,
            )
    return rows, _means(rows)


def _means(rows: list[dict]) -> dict:
    means: dict = {}
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell]
        entry = {}
        for key in ("oracle_psnr", "sure_psnr"):
            values = [r[key] for r in mine if r.get(key) is not None]
            if values:
                entry[key] = sum(values) / len(values)
        entry["images"] = len({r["image"] for r in mine})
        means[cell] = entry
    return means


def speed(recipe, args) -> list[dict]:
    from filterscope.dip import fit_single_image

    house = load(data_dir() / "image_House256rgb.png", recipe["speed_size"])
    rows = []
    for arch in ARCHS:
        result = fit_single_image(
            house,
            arch=arch,
            input="noise",
            optimizer="adam",
            iters=recipe["speed_iters"],
            width=recipe["speed_width"],
            clean=house,
            seed=0,
            device=args.device,
        )
        t = result.timing
        rows.append(
            {
                "arch": arch,
                "size": f"{house.shape[2]}x{house.shape[1]}",
                "width": recipe["speed_width"],
                "iterations_per_s": t["iterations_per_s"],
                "outside_share": t["outside_share"],
                "forward_backward_s": t["forward_backward_s"],
                "optimizer_s": t["optimizer_s"],
                "total_s": t["total_s"],
            }
        )
        print(
            f"speed {arch}: {t['iterations_per_s']:.2f} it/s, "
            f"{100 * t['outside_share']:.1f}% outside forward+backward",
            flush=True,
        )
    return rows


def weight_change(recipe, args) -> dict:
    from filterscope.dip import fit_single_image, loglog_slope

    crop = recipe["crop"]
    house = load(data_dir() / "image_House256rgb.png", crop)
    y = house + (SIGMA_255 / 255.0) * torch.randn(
        house.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    rows = []
    for optimizer in OPTIMIZERS:
        for width in recipe["weight_widths"]:
            for seed in recipe["weight_seeds"]:
                iters = recipe["weight_iters"]
                result = fit_single_image(
                    y,
                    arch="autoencoder",
                    input="noise",
                    optimizer=optimizer,
                    iters=iters,
                    lr=args.gd_lr if optimizer == "gd" else None,
                    width=width,
                    clean=house,
                    stop="oracle",
                    weight_log_every=iters,
                    seed=seed,
                    device=args.device,
                )
                last = result.weights[-1]
                rows.append(
                    {
                        "optimizer": optimizer,
                        "width": width,
                        "seed": seed,
                        "l2": last["l2_mean"],
                        "linf": last["linf_mean"],
                        "psnr": result.choices["oracle_psnr"],
                    }
                )
                print(
                    f"weights {optimizer} c={width} seed {seed}: l2 {last['l2_mean']:.3g}, "
                    f"linf {last['linf_mean']:.3g}, PSNR {result.choices['oracle_psnr']:.2f}",
                    flush=True,
                )
    slopes = {}
    for optimizer in OPTIMIZERS:
        mine = [r for r in rows if r["optimizer"] == optimizer]
        slopes[optimizer] = {
            key: loglog_slope([r["width"] for r in mine], [r[key] for r in mine])
            for key in ("l2", "linf")
        }
    return {"rows": rows, "slopes": slopes, "iterations": recipe["weight_iters"]}


def theory(recipe) -> dict:
    from filterscope.dip import ntk_gap

    crop = recipe["theory_crop"]
    gray = load(data_dir() / "image_House256rgb.png", crop).mean(0, keepdim=True)
    noise = torch.randn(gray.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = gray + (SIGMA_255 / 255.0) * noise
    result = ntk_gap(
        y, widths=recipe["theory_widths"], iters=20, kernel_size=recipe["theory_kernel"]
    )
    pairs = zip(result["widths"], result["gap"], strict=True)
    gaps = ", ".join(f"c={w}: {g:.3f}" for w, g in pairs)
    print(f"theory gap: {gaps}; slope {result['slope']:.2f}")
    return result


def figures(recipe, weights: dict, gap: dict, args) -> list[str]:
    """Figures 4 and 5 and the theory gap, as PNG files in benchmarks/results."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib missing: no figures", file=sys.stderr)
        return []
    from filterscope.dip import fit_single_image, preactivation_eigenvectors
    from filterscope.plotting.dip import (
        plot_ntk_gap,
        plot_preactivation_eigenvectors,
        plot_weight_change,
    )

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_weight_change(
            weights["rows"], RESULTS_DIR / "dip_figure4.png", title="autoencoder, noise input"
        ),
        plot_ntk_gap(gap, RESULTS_DIR / "dip_ntk_gap.png", title="vanilla CNN, GD, image input"),
    ]
    house = load(data_dir() / "image_House256rgb.png", recipe["crop"])
    y = house + (SIGMA_255 / 255.0) * torch.randn(
        house.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    panels = {}
    for optimizer in OPTIMIZERS:
        for net_input in INPUTS:
            result = fit_single_image(
                y,
                arch="autoencoder",
                input=net_input,
                optimizer=optimizer,
                iters=500,
                width=recipe["width"],
                device=args.device,
            )
            _, vecs = preactivation_eigenvectors(result.network, result.network_input, count=3)
            panels[f"{optimizer}, {net_input}"] = vecs
    paths.append(
        plot_preactivation_eigenvectors(
            panels, RESULTS_DIR / "dip_figure5.png", title="after 500 steps"
        )
    )
    return [str(p) for p in paths]


def targets(means: dict, speed_rows: list[dict], weights: dict) -> dict:
    def cell(arch, net_input, optimizer):
        return means.get(_cell_name(arch, net_input, optimizer), {}).get("oracle_psnr")

    out = {}
    for arch in ("unet", "autoencoder"):
        adam, gd = cell(arch, "noise", "adam"), cell(arch, "noise", "gd")
        out[f"{arch}_noise_adam_minus_gd_db"] = adam - gd
        out[f"{arch}_noise_adam_beats_gd_by_8db"] = adam - gd >= 8.0
    gap = abs(cell("vanilla", "image", "adam") - cell("vanilla", "image", "gd"))
    out["vanilla_image_adam_gd_gap_db"] = gap
    out["vanilla_image_within_1_5db"] = gap <= 1.5
    network_cells = {(a, i, o): cell(a, i, o) for a in ARCHS for i in INPUTS for o in OPTIMIZERS}
    best = max(network_cells, key=network_cells.get)
    out["best_network_cell"] = _cell_name(*best)
    out["autoencoder_adam_best"] = best[0] == "autoencoder" and best[2] == "adam"
    sure_gaps = [
        m["oracle_psnr"] - m["sure_psnr"]
        for name, m in means.items()
        if "sure_psnr" in m and not name.startswith("nystrom")
    ]
    if sure_gaps:
        out["sure_minus_oracle_mean_db"] = -sum(sure_gaps) / len(sure_gaps)
        out["sure_within_0_5db"] = sum(sure_gaps) / len(sure_gaps) <= 0.5
    out["gd_weight_slope"] = weights["slopes"]["gd"]["l2"]
    out["adam_weight_slope"] = weights["slopes"]["adam"]["l2"]
    out["gd_slope_near_minus_half"] = abs(out["gd_weight_slope"] + 0.5) <= 0.15
    out["adam_slope_not_minus_half"] = abs(out["adam_weight_slope"] + 0.5) > 0.25
    out["outside_share_max"] = max(r["outside_share"] for r in speed_rows)
    out["outside_share_under_10pct"] = out["outside_share_max"] < 0.10
    return out


def print_table1(means: dict) -> None:
    """Our mean PSNR beside the paper's, in the layout of Table 1."""
    columns = ["row"] + [f"{a}/{i}" for a in ARCHS for i in INPUTS]
    rows = []
    for optimizer, label in (("adam", "Adam"), ("gd", "Gradient descent"), (None, "Nyström")):
        row = {"row": f"{label}: ours (paper)"}
        for a in ARCHS if optimizer else ("nystrom",):
            for i in INPUTS:
                ours = means.get(_cell_name(a, i, optimizer), {}).get("oracle_psnr")
                paper = PAPER_TABLE1.get((a, i, optimizer))
                key = f"{'vanilla' if a == 'nystrom' else a}/{i}"
                row[key] = f"{ours:.2f} ({paper})" if ours is not None else ""
        rows.append(row)
    print_table(rows, columns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke run; writes nothing")
    mode.add_argument("--full", action="store_true", help="the paper's protocol (GPU)")
    parser.add_argument("--sure-all", action="store_true", help="estimate SURE in every cell")
    parser.add_argument(
        "--gd-lr", type=float, default=None, help="width-free GD rate (default: automatic)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if --full)")
    args = parser.parse_args()
    folder = data_dir()
    if not folder.is_dir():
        print(f"{folder} not found; nothing to do", file=sys.stderr)
        return 1
    name = "quick" if args.quick else "full" if args.full else "cpu"
    recipe = RECIPES[name]
    if args.device is None and args.full and torch.cuda.is_available():
        args.device = "cuda"
    images = sorted(folder.glob("*.png"))
    if recipe["images"]:
        images = images[: recipe["images"]]
    start = time.time()
    rows, means = table1(images, recipe, args)
    speed_rows = speed(recipe, args)
    weights = weight_change(recipe, args)
    gap = theory(recipe)
    payload = {
        "benchmark": "dip_table1",
        "recipe": name,
        "settings": {k: v for k, v in recipe.items() if k != "figures"},
        "sigma_255": SIGMA_255,
        "images": [p.stem for p in images],
        "device": args.device or "cpu",
        "load_average": os.getloadavg(),
        "threads": torch.get_num_threads(),
        "paper_table1": {_cell_name(*k): v for k, v in PAPER_TABLE1.items()},
        "mean_psnr": means,
        "rows": rows,
        "speed": speed_rows,
        "weight_change": weights,
        "theory": gap,
        "targets": targets(means, speed_rows, weights),
    }
    if recipe["figures"]:
        payload["figures"] = figures(recipe, weights, gap, args)
    payload["seconds"] = time.time() - start
    print()
    print_table1(means)
    print()
    print_table(speed_rows, ["arch", "size", "width", "iterations_per_s", "outside_share"])
    print(f"weight-change slopes (l2, linf): {weights['slopes']}")
    print(f"targets: {payload['targets']}")
    if args.quick:
        print("quick run: nothing written")
    else:
        print(f"wrote {write_results('dip_table1', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
