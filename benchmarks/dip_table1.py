"""Table 1 of Tachella et al. (CVPR 2021): single-image networks, Adam against gradient descent.

Run from the repository root::

    python benchmarks/dip_table1.py --threads 1   # CPU recipe: ≤ 60 min on one loaded core
    python benchmarks/dip_table1.py --only speed --threads 2   # speed alone (quiet machine)
    python benchmarks/dip_table1.py --only noise_width        # Adam - GD against width
    python benchmarks/dip_table1.py --only noise_images       # noise-input cells at 256x256
    python benchmarks/dip_table1.py --only gd_budget          # the gap against GD's budget
    python benchmarks/dip_table1.py --full        # the paper's protocol, for a GPU (hours)
    python benchmarks/dip_table1.py --quick       # smoke run of ~10 s; writes nothing

What is measured, on Set9color at σ = 25 (noise seed = the image's index in name order,
as in ``ntk_set9.py``), in this order (``--only`` picks parts, comma-separated; parts not
run are kept from an existing ``dip_table1.json`` of the same recipe):

1. ``speed``: iterations per second of each network (Adam, noise input, PSNR logged every
   step) on the whole 256×256 colour House image, and the share of the loop's time spent
   outside forward and backward passes. Never cached; timings under load are only an
   indication (the load average is recorded).
2. ``weights`` (Figure 4): the autoencoder with noise input on House, trained for a
   fixed number of steps at several widths with Adam and with GD (at the Table 1 step
   ``s = 1.9``, at ``s = 1``, see below, and at the fixed rate ``η = 1/c``), each for
   several seeds; the log–log slope of the mean ``‖w^t − w^0‖₂`` of the intermediate
   layers against the width (theory for GD: −1/2).
3. ``theory``: the relative gap between a gradient-descent-trained vanilla CNN (image
   input, float64) and NTK twicing (:func:`filterscope.dip.ntk_gap`) against the width.
4. ``figures`` (needs matplotlib): Figure 4, Figure 5 (leading eigenvectors of the last
   pre-activations' covariance of the autoencoder after 500 steps, House crop) and the
   theory gap, as ``benchmarks/results/dip_*.png``.
5. ``table1``: the vanilla CNN, the U-Net and the autoencoder, each with noise or the
   image at the input, trained with Adam and with gradient descent: PSNR of the iterate
   kept by the oracle (the paper's protocol), plus the Nyström NTK filter of the vanilla
   CNN (equation 16, 2% columns, oracle twicing time) for both inputs. SURE stopping is
   evaluated in the same runs for the cells of ``SURE_CELLS`` (``--sure-all``: every
   cell; SURE doubles the cost of a run). Every row records whether the run diverged
   (``diverged_at``) and whether its best PSNR came at the step cap (``peak_at_cap``:
   still improving when stopped).
6. ``noise_width`` (only with ``--only``): with noise at the input, the U-Net and the
   autoencoder trained by Adam and by GD at several widths (``noise_widths``) and image
   sizes (``noise_crops``) on a few images (``noise_width_images``): does the Adam − GD
   gap of Table 1 grow as the networks widen toward the lazy regime, or as the image
   grows? About an hour of one core for the CPU recipe.
7. ``noise_images`` (only with ``--only``): the same two networks, noise input, Adam and
   GD, on every image centre-cropped to ``noise_images_crop`` (256 in the CPU recipe):
   Table 1's noise-input cells at the size where the ``noise_width`` study found the
   gap of the paper. Some five hours of one core.
8. ``gd_budget`` (only with ``--only``): the same two networks with noise at the input,
   Adam and GD run without patience to long caps with the PSNR of every step kept, for
   each entry of ``gd_budget_runs`` (CPU recipe: the 128×128 House with caps 2000 / 8000,
   and all nine 64×64 crops with caps 2000 / 4000): the PSNR at fixed steps, the best of
   each whole run, and what "until there is no further improvement" keeps for several
   patiences, so the Adam − GD gap can be read against GD's budget and stopping rule;
   on House, GD on each network's first-order expansion at initialisation
   (:func:`filterscope.dip.linearized_gd`, the lazy regime) with the step and cap of the
   real GD run tells how much of that run the fixed initial filter explains, and
   ``gd_budget_lazy_widths`` repeats that comparison at several widths (64×64 House,
   widths 32, 64 and 128, GD ≤ 2000 steps);
   ``benchmarks/results/dip_gd_budget_<size>.png`` draws House's six curves beside the
   paper's cells. About 110 minutes of two cores.

Recipes (every number is ours; the paper's appendix H is not in the text we have):

- CPU (default), sized for ≤ 60 minutes on one loaded core: all 9 images as 64×64
  centre crops, width 32; Adam ≤ 800 steps (patience 200), GD ≤ 1000 steps (patience
  300). One image costs about 3 minutes of one core (12 network runs, 3 of them with
  the SURE twin, GD runs repeated at smaller steps when unstable, the Nyström rows), the
  other parts about 5: some 30 CPU-minutes in all, 40 to 60 minutes of wall time with
  half a core. All nine images rather than fewer, larger crops, because Table 1 is a
  mean over very different images (Baboon's fur against House's flat walls); 64×64
  still leaves the U-Net an 8×8 bottleneck, and Adam's best iterate comes after 200–800
  steps. The price: GD is mostly still improving at its cap (the paper runs up to 10⁶
  steps), so the GD cells are lower bounds. Speed at width 32 (20 steps) on the whole
  House (``--speed-widths 32,128`` adds c = 128: minutes per network on one core);
  weight change at widths 16–128 after 200 steps, 5 seeds (about 30 minutes of one
  core); theory on a 32×32 gray crop, widths 16–1024, 11×11 kernels; Figure 5 on the
  House crop.
- ``--full``: whole images, width 128, Adam ≤ 20000 steps (patience 3000), GD ≤ 100000
  steps (patience 10000), trajectory evaluated every 10 steps; speed at widths 32 and
  128; weight change at widths 16–256 after 2000 steps, 3 seeds; theory on a 48×48 crop
  up to width 4096.

Gradient descent uses the largest stable step of the theory, scaled with the width:
``η = s · n / (2 λ_max(Θ⁰))`` with ``s = 1.9`` (``gd_step``), where ``λ_max(Θ⁰)`` is the
top eigenvalue of the empirical NTK at initialisation (power iteration). The linearised
update ``z ← z + (2η/n) Θ⁰ (y − z)`` is then twicing with a filter of top eigenvalue
``s``; it diverges for ``s ≥ 2``, so 1.9 is 95% of the stability limit. A finite network
is only near its linearisation: near the limit the kernel can grow during training and a
run can catapult (the loss jumps, the weights move far, the kernel shrinks) instead of
staying lazy, which is why the weight-change study also runs ``s = 1``. ``λ_max(Θ⁰)``
grows like ``c`` in the standard parameterisation on average, so ``η`` falls like ``1/c``,
the ``O(1/c)`` step of the paper's footnote 6; for one initialisation of the autoencoder
at these widths it varies several-fold (seed 0 on the 64×64 crop: 1.4, 3.6, 3.5 and
0.9 × 10³ · c at c = 16, 32, 64, 128), which is why the weight study adds a fixed rate.
``--gd-lr`` replaces it by a width-free rate (step ``lr / width``). Linearised GD with
``s < 2`` lowers the loss at every step, so a Table 1 GD run whose loss stops being
finite or rises above its initial value is counted unstable, reported in
``diverged_runs`` (with its PSNR) and repeated with ``s = 1``, then 0.5, 0.25 and 0.1
(``GD_STEP_FALLBACK``): each cell keeps the largest stable step of that ladder (a run
unstable even at 0.1 is kept and flagged). The rungs below 0.5 were added when the
256×256 Peppers autoencoder diverged at 0.5 within 10 steps (its λ_max estimate from one
initialisation was far too low); only cells unstable at 0.5 reach them. Adam
uses ``β = (0.9, 0.99)`` and the rates of :data:`filterscope.dip.fit.DEFAULT_ADAM_LR`
(per network and input, chosen on a 64×64 House crop, which is one of the nine images
here).

Finished pieces are cached in ``benchmarks/results/dip_table1.partial.json``
(gitignored), so an interrupted run resumes where it stopped (``--restart`` starts
afresh). Results go to ``benchmarks/results/dip_table1.json`` and are printed beside the
paper's.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from _common import RESULTS_DIR, SHARED, print_table, read_partial, write_partial, write_results

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
        speed_size=64, speed_widths=(8,), speed_iters=(3,), gd_step=1.9,
        weight_widths=(8, 16), weight_iters=10, weight_seeds=(0,), weight_gd_rates=(1.0,),
        theory_crop=16, theory_widths=(8, 64), theory_kernel=3, figures=False,
        noise_widths=(8, 16), noise_crops=(16,), noise_width_images=("image_Baboon512rgb",),
        noise_images_crop=16, noise_images_iters={"adam": 30, "gd": 20},
        gd_budget_runs=(
            {"crop": 16, "images": ("image_House256rgb",), "iters": {"adam": 30, "gd": 40}},
        ),
        gd_budget_patiences=(2, 5, 10),
        gd_budget_lazy_widths={"crop": 16, "widths": (8, 16), "iters": 20},
    ),
    "cpu": dict(
        images=None, crop=64, width=32, iters={"adam": 800, "gd": 1000},
        patience={"adam": 200, "gd": 300}, log_every=1, speed_size=None,
        speed_widths=(32,), speed_iters=(20,), gd_step=1.9, weight_gd_steps=(1.9, 1.0),
        weight_widths=(16, 32, 64, 128), weight_iters=200, weight_seeds=(0, 1, 2, 3, 4),
        weight_gd_rates=(1.0,),
        theory_crop=32, theory_widths=(16, 64, 256, 1024), theory_kernel=11, figures=True,
        noise_widths=(32, 64, 128), noise_crops=(128, None),
        noise_width_images=("image_House256rgb",), noise_images_crop=256,
        noise_images_iters={"adam": 2000, "gd": 1000},
        gd_budget_runs=(
            {"crop": 128, "images": ("image_House256rgb",), "iters": {"adam": 2000, "gd": 8000}},
            {"crop": 64, "images": None, "iters": {"adam": 2000, "gd": 4000}},
        ),
        gd_budget_patiences=(10, 30, 100, 300, 1000, 3000),
        gd_budget_lazy_widths={"crop": 64, "widths": (32, 64, 128), "iters": 2000},
    ),
    "full": dict(
        images=None, crop=None, width=128, iters={"adam": 20000, "gd": 100000},
        patience={"adam": 3000, "gd": 10000}, log_every=10, speed_size=None,
        speed_widths=(32, 128), speed_iters=(200, 200), gd_step=1.9, weight_gd_steps=(1.9, 1.0),
        weight_widths=(16, 32, 64, 128, 256), weight_iters=2000, weight_seeds=(0, 1, 2),
        weight_gd_rates=(1.0,),
        theory_crop=48, theory_widths=(16, 64, 256, 1024, 4096), theory_kernel=11,
        figures=True, noise_widths=(32, 128, 512), noise_crops=(None,),
        noise_width_images=("image_House256rgb", "kodim01", "image_F16_512rgb"),
        noise_images_crop=None, noise_images_iters={"adam": 20000, "gd": 100000},
        gd_budget_runs=(
            {"crop": None, "images": ("image_House256rgb",), "iters": {"adam": 20000, "gd": 10**6}},
        ),
        gd_budget_patiences=(100, 1000, 10000, 100000),
        gd_budget_lazy_widths={"crop": None, "widths": (32, 128, 512), "iters": 100000},
    ),
}  # fmt: skip


# the recipe keys that identify cached pieces: a piece computed under other values of
# these is not reused. Every other key (the images, the seeds and GD steps of the weight
# study, the widths and sizes of the optional parts, ...) is part of the key of each
# piece it touches, or touches nothing cached (speed); a key added to a recipe stays out
# of the identity, so an older cache stays usable, unless it is named here.
CACHE_IDENTITY = (
    "crop",
    "width",
    "iters",
    "patience",
    "log_every",
    "gd_step",
    "weight_iters",
    "weight_widths",
    "theory_crop",
    "theory_widths",
    "theory_kernel",
)


def _comparable(config: dict | None) -> dict | None:
    """``config`` with only the recipe keys of :data:`CACHE_IDENTITY`."""
    if not config:
        return config
    settings = {k: v for k, v in config.get("settings", {}).items() if k in CACHE_IDENTITY}
    return {**config, "settings": settings}


class Cache:
    """Finished pieces of a run, kept in ``benchmarks/results/dip_table1.partial.json``.

    Each Table 1 cell (image × network × input × optimiser), weight-change run, the
    theory gap and the Figure 5 runs are stored as soon as they finish, so an interrupted
    run resumes where it stopped. The file is only reused for the same configuration
    (recipe settings, GD rate, SURE cells, device); ``--images`` may differ, as every
    cell is keyed by its image. ``--restart`` ignores the file. Speed is always measured
    afresh.
    """

    def __init__(self, path: Path, config: dict, *, enabled: bool, restart: bool):
        self.path = path
        self.config = config
        self.enabled = enabled
        self.done: dict = {}
        if not enabled or restart:
            return
        saved = read_partial(path, config, "dip_table1", comparable=_comparable)
        if saved:
            self.done = dict(saved.get("done", {}))
            print(f"resuming: {len(self.done)} finished piece(s) in {path.name}", flush=True)

    def get(self, key: str):
        return self.done.get(key)

    def put(self, key: str, value) -> None:
        self.done[key] = value
        if not self.enabled:
            return
        write_partial(self.path, {"config": self.config, "done": self.done})


def data_dir() -> Path:
    """Set9color: under ``$FILTERSCOPE_SHARED/data`` or ``../shared/data`` of the repository."""
    return SHARED / "data" / "Set9color"


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


def _noisy(path: Path, index: int, crop: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean image (centre-cropped) and its noisy version at σ = 25, seeded by the
    image's index in name order (the noise of every part of this benchmark)."""
    from filterscope.noise import add_noise

    x = load(path, crop)
    return x, add_noise(x, SIGMA_255 / 255.0, generator=index)


def _cell_name(arch: str, net_input: str, optimizer: str | None) -> str:
    return f"{arch}/{net_input}" + (f"/{optimizer}" if optimizer else "")


# gradient descent steps ``s`` tried in turn when a run diverges at the recipe's step
GD_STEP_FALLBACK = (1.0, 0.5, 0.25, 0.1)


def _fit_row(path, index, cell, x, y, recipe, args, *, keep_trajectory=False, sure=None) -> dict:
    """One network cell of Table 1 on one image.

    Gradient descent with the automatic step starts at the recipe's ``gd_step``; a run
    that diverges is recorded in ``diverged_runs`` and repeated with the next smaller
    step of :data:`GD_STEP_FALLBACK` (the largest stable step of the ladder is kept). A
    run with a smaller step left is stopped as soon as its loss rises above its start:
    it is discarded then anyway, so only the time changes. ``keep_trajectory`` adds the
    PSNR curve of the run kept (``trajectory``); ``sure`` overrides whether SURE is
    estimated (default: :data:`SURE_CELLS` or ``--sure-all``).
    """
    from filterscope.dip import fit_single_image

    if sure is None:
        sure = args.sure_all or cell in SURE_CELLS

    arch, net_input, optimizer = cell
    patience = recipe["patience"]
    if isinstance(patience, dict):
        patience = patience[optimizer]
    iters = recipe["iters"][optimizer]
    steps: list[float | None] = [None]
    if optimizer == "gd" and args.gd_lr is None:
        steps = [recipe["gd_step"]] + [s for s in GD_STEP_FALLBACK if s < recipe["gd_step"]]
    diverged_runs = []
    seconds = 0.0
    for gd_step in steps:
        last_rung = gd_step == steps[-1]
        result = fit_single_image(
            y,
            arch=arch,
            input=net_input,
            optimizer=optimizer,
            iters=iters,
            lr=args.gd_lr if optimizer == "gd" else None,
            width=recipe["width"],
            sigma=SIGMA_255 / 255.0,
            clean=x,
            stop="oracle",
            estimate_sure=sure,
            patience=patience,
            gd_step=gd_step or recipe["gd_step"],
            log_every=recipe["log_every"],
            seed=index,
            device=args.device,
            callback=None if last_rung else _stop_when_loss_rises(),
        )
        seconds += result.timing["total_s"] + result.timing["setup_s"]
        loss = result.trajectory["loss"]
        rise = max(loss) / loss[0] if loss[0] > 0 else 1.0
        # linearised GD with s < 2 lowers the loss at every step; a loss above its start
        # means the network left that regime (a catapult, or worse)
        unstable = result.config["diverged_at"] is not None or rise > 1.0
        if not unstable or last_rung:
            break
        diverged_runs.append(
            {
                "gd_step": gd_step,
                "stopped_at": result.timing["iterations"],
                "diverged_at": result.config["diverged_at"],
                "max_loss_over_initial": rise,
                "oracle_psnr": result.choices["oracle_psnr"],
                "oracle_iteration": result.choices["oracle_iteration"],
            }
        )
    row = {
        "image": path.stem,
        "cell": _cell_name(*cell),
        "oracle_psnr": result.choices["oracle_psnr"],
        "oracle_iteration": result.choices["oracle_iteration"],
        "sure_psnr": result.choices.get("sure_psnr"),
        "sure_iteration": result.choices.get("sure_iteration"),
        "iterations": result.timing["iterations"],
        "max_iterations": iters,
        # the best PSNR was at the last step allowed: still improving when the cap ended it
        "peak_at_cap": result.choices["oracle_iteration"] >= iters - recipe["log_every"],
        "gd_step": gd_step if optimizer == "gd" else None,
        "diverged_at": result.config["diverged_at"],
        "max_loss_over_initial": rise,
        "diverged_runs": diverged_runs,
        "seconds": seconds,
        "lr_effective": result.config["lr_effective"],
        "ntk_lambda_max": result.config["ntk_lambda_max"],
    }
    if keep_trajectory:
        row["trajectory"] = {
            "iteration": list(result.trajectory["iteration"]),
            "psnr": [round(v, 4) for v in result.trajectory["psnr"]],
        }
    return row


def _stop_when_loss_rises():
    """A ``fit_single_image`` callback that stops the run once the loss exceeds its first
    value (the instability test of :func:`_fit_row`)."""
    first: list[float] = []

    def callback(iteration, record, output) -> bool:
        if not first:
            first.append(record["loss"])
        return record["loss"] > first[0]

    return callback


def _nystrom_row(path, net_input, x, y) -> dict:
    """The Nyström row of Table 1: equation 16's filter (vanilla CNN NTK), 2% columns."""
    from filterscope.metrics import psnr
    from filterscope.ntk import denoise

    row = {"image": path.stem, "cell": _cell_name("nystrom", net_input, None)}
    start = time.perf_counter()
    for stop in ("oracle", "sure"):
        x_hat, info = denoise(
            y,
            sigma=SIGMA_255 / 255.0,
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
    return row


def table1(images, recipe, args, cache: Cache) -> tuple[list[dict], dict]:
    rows = []
    for index, path in enumerate(images):
        x, y = _noisy(path, index, recipe["crop"])
        cells = [(a, i, o) for a in ARCHS for i in INPUTS for o in OPTIMIZERS]
        cells += [("nystrom", i, None) for i in INPUTS]
        for cell in cells:
            key = f"table1/{path.stem}/{_cell_name(*cell)}"
            row = cache.get(key)
            if row is not None and cell[2] == "gd" and "max_loss_over_initial" not in row:
                row = None  # from before the unstable-step fallback: run it again
            resumed = row is not None
            if row is None:
                if cell[0] == "nystrom":
                    row = _nystrom_row(path, cell[1], x, y)
                else:
                    row = _fit_row(path, index, cell, x, y, recipe, args)
                cache.put(key, row)
            rows.append(row)
            sure = row.get("sure_psnr")
            text = f"{path.stem} {row['cell']}: oracle {row['oracle_psnr']:.2f} dB"
            if "oracle_iteration" in row:
                text += f" at {row['oracle_iteration']} of {row['iterations']} steps"
            if sure is not None:
                text += f", SURE {sure:.2f}"
            for run in row.get("diverged_runs", []):
                if run["diverged_at"] is not None:
                    text += f", DIVERGED at {run['diverged_at']} with s={run['gd_step']:g}"
                else:
                    rise, lost = run["max_loss_over_initial"], run["oracle_psnr"]
                    text += f", UNSTABLE with s={run['gd_step']:g} (loss rose to {rise:.3g}x"
                    text += f" its start; {lost:.2f} dB)"
            if row.get("diverged_runs"):
                text += f" (kept s={row['gd_step']:g})"
            if row.get("diverged_at") is not None:
                text += f", DIVERGED at {row['diverged_at']}"
            elif row.get("gd_step") and row["max_loss_over_initial"] > 1.0:
                text += f", still UNSTABLE (loss rose to {row['max_loss_over_initial']:.3g}x)"
            if row.get("peak_at_cap"):
                text += ", still improving at the cap"
            text += " (cached)" if resumed else f" ({row['seconds']:.1f} s)"
            print(text, flush=True)
    return rows, _means(rows)


def _noise_input_rows(images, runs, recipe, args, cache: Cache, *, iters=None) -> list[dict]:
    """The U-Net and the autoencoder with noise at the input, by Adam and by GD, for each
    image of ``images`` (``(index, path)``) and each ``(width, crop)`` of ``runs``, with
    the Table 1 settings otherwise (patience, GD step ladder, oracle stopping) and the
    step caps ``iters`` (default: the recipe's)."""
    iters = iters or recipe["iters"]
    rows = []
    for index, path in images:
        for width, crop in runs:
            x, y = _noisy(path, index, crop)
            size = f"{x.shape[2]}x{x.shape[1]}"
            for arch in ("unet", "autoencoder"):
                for optimizer in OPTIMIZERS:
                    cell = (arch, "noise", optimizer)
                    key = f"noise_width/{path.stem}/{_cell_name(*cell)}/{width}"
                    if crop != recipe["crop"]:
                        key += f"/{size}"
                    if iters[optimizer] != recipe["iters"][optimizer]:
                        key += f"/{iters[optimizer]}steps"
                    row = cache.get(key)
                    resumed = row is not None
                    if row is None:
                        changed = {**recipe, "width": width, "iters": iters}
                        row = _fit_row(path, index, cell, x, y, changed, args)
                        cache.put(key, row)
                    rows.append(
                        {**row, "arch": arch, "optimizer": optimizer, "width": width, "size": size}
                    )
                    text = f"{path.stem} {size} {row['cell']} width {width}: "
                    text += f"{row['oracle_psnr']:.2f} dB"
                    text += " (cached)" if resumed else f" ({row['seconds']:.1f} s)"
                    print(text, flush=True)
    return rows


def _adam_minus_gd(rows: list[dict], group) -> dict:
    """Mean oracle PSNR of Adam and of GD, and their difference, per network and group
    (``group(row)`` names the group, e.g. the width and size of the run)."""
    gaps: dict = {}
    for arch in ("unet", "autoencoder"):
        for name in dict.fromkeys(group(r) for r in rows):
            mine = [r for r in rows if r["arch"] == arch and group(r) == name]
            adam = [r["oracle_psnr"] for r in mine if r["optimizer"] == "adam"]
            gd = [r["oracle_psnr"] for r in mine if r["optimizer"] == "gd"]
            if adam and gd:
                gaps.setdefault(arch, {})[name] = {
                    "adam_db": sum(adam) / len(adam),
                    "gd_db": sum(gd) / len(gd),
                    "adam_minus_gd_db": sum(adam) / len(adam) - sum(gd) / len(gd),
                    "images": len(adam),
                }
    return gaps


def noise_width(images, recipe, args, cache: Cache) -> dict:
    """With noise at the input: Adam against gradient descent as networks and images grow.

    The U-Net and the autoencoder on the recipe's ``noise_width_images``, with the Table 1
    settings otherwise (same steps, patience, GD step ladder, oracle stopping): at each of
    the ``noise_widths`` on the recipe's crop, and at the recipe's width on each of the
    ``noise_crops`` (None: the whole image). The paper's ≥ 8 dB gap needs GD to stay near
    its initial, image-independent filter: a wider network stays closer to it, and on a
    larger image the filter's top (constant) eigenvalue dominates the others more, so GD
    at the largest stable step fits the rest more slowly.
    """
    runs = [(width, recipe["crop"]) for width in recipe["noise_widths"]]
    runs += [(recipe["width"], crop) for crop in recipe["noise_crops"] if crop != recipe["crop"]]
    chosen = [(i, p) for i, p in enumerate(images) if p.stem in recipe["noise_width_images"]]
    rows = _noise_input_rows(chosen, runs, recipe, args, cache)
    gaps = _adam_minus_gd(rows, lambda r: f"width {r['width']}, {r['size']}")
    return {"images": sorted({r["image"] for r in rows}), "by_run": gaps, "rows": rows}


def noise_images(images, recipe, args, cache: Cache) -> dict:
    """Table 1's noise-input cells of the U-Net and the autoencoder on larger images.

    Every image, centre-cropped to ``noise_images_crop`` (None: whole), at the recipe's
    width, with the step caps ``noise_images_iters`` (a larger image needs more Adam
    steps: on the 256×256 House the autoencoder was still improving at 800); otherwise as
    :func:`noise_width` (whose House runs of the same size and caps are reused from the
    cache). The ``noise_width`` study shows the Adam − GD gap growing with the
    image, so this is the size at which the Table 1 pattern is checked for those cells.
    """
    crop = recipe["noise_images_crop"]
    runs = [(recipe["width"], crop)]
    iters = recipe["noise_images_iters"]
    rows = _noise_input_rows(list(enumerate(images)), runs, recipe, args, cache, iters=iters)
    gaps = _adam_minus_gd(rows, lambda r: "all")
    paper = {
        arch: PAPER_TABLE1[(arch, "noise", "adam")] - PAPER_TABLE1[(arch, "noise", "gd")]
        for arch in ("unet", "autoencoder")
    }
    return {
        "crop": crop,
        "width": recipe["width"],
        "iters": iters,
        "images": sorted({r["image"] for r in rows}),
        "adam_minus_gd_db": {arch: v["all"]["adam_minus_gd_db"] for arch, v in gaps.items()},
        "paper_adam_minus_gd_db": paper,
        "by_network": {arch: v["all"] for arch, v in gaps.items()},
        # how far the caps and the GD step ladder limit the comparison
        "still_improving_at_cap": _count_cells(rows, lambda r: r["peak_at_cap"]),
        "gd_smaller_step_used": _count_cells(rows, lambda r: bool(r.get("diverged_runs"))),
        "unstable_kept": _count_cells(rows, _unstable_gd_kept),
        "rows": rows,
    }


def _value_at(trajectory: dict, step: int) -> float | None:
    """The PSNR logged at the last iteration ``<= step`` (None past the run's end)."""
    iterations = trajectory["iteration"]
    if step > iterations[-1]:
        return None
    return trajectory["psnr"][bisect.bisect_right(iterations, step) - 1]


def _log_spaced(trajectory: dict, points: int = 160) -> dict:
    """About ``points`` entries of a trajectory, evenly spaced in log(iteration)."""
    iterations = trajectory["iteration"]
    top = math.log10(max(1, iterations[-1]))
    wanted = [10 ** (top * k / (points - 1)) for k in range(points)]
    keep = sorted({0, len(iterations) - 1} | {bisect.bisect_left(iterations, v) for v in wanted})
    keep = [i for i in keep if i < len(iterations)]
    return {
        "iteration": [iterations[i] for i in keep],
        "psnr": [trajectory["psnr"][i] for i in keep],
    }


def _patience_stops(trajectory: dict, patiences) -> dict:
    """What stopping with each of ``patiences`` keeps from a whole PSNR trajectory."""
    from filterscope.dip import patience_stop

    return {
        str(p): patience_stop(trajectory["iteration"], trajectory["psnr"], p) for p in patiences
    }


def _budget_cell(
    path, index, cell, x, y, recipe, args, cache: Cache, iters, patiences, *, curve: bool
) -> dict:
    """One whole run of :func:`gd_budget` (cached with its trajectory) and what each
    stopping rule keeps from it; ``curve`` adds its log-spaced PSNR curve."""
    size = f"{x.shape[2]}x{x.shape[1]}"
    optimizer = cell[2]
    key = f"gd_budget/{path.stem}/{_cell_name(*cell)}/{recipe['width']}/{size}"
    key += f"/{iters[optimizer]}steps"
    row = cache.get(key)
    if row is None:
        changed = {**recipe, "iters": iters, "patience": None}
        row = _fit_row(path, index, cell, x, y, changed, args, keep_trajectory=True, sure=False)
        cache.put(key, row)
    traj = row["trajectory"]
    checkpoints = sorted([10**k for k in range(7)] + [3 * 10**k for k in range(6)])
    print(
        f"gd_budget {path.stem} {size} {row['cell']}: best {row['oracle_psnr']:.2f} dB "
        f"at step {row['oracle_iteration']} of {row['iterations']}",
        flush=True,
    )
    return {
        "best_psnr": row["oracle_psnr"],
        "best_iteration": row["oracle_iteration"],
        "iterations": row["iterations"],
        "peak_at_cap": row["peak_at_cap"],
        "gd_step": row["gd_step"],
        "seconds": row["seconds"],
        "psnr_at": {str(t): _value_at(traj, t) for t in checkpoints if t <= traj["iteration"][-1]},
        "patience_stops": _patience_stops(traj, patiences),
        **({"curve": _log_spaced(traj)} if curve else {}),
    }


def _budget_run(spec: dict, images, recipe, args, cache: Cache, patiences) -> dict:
    """One ``gd_budget_runs`` entry: its images at its crop, both networks, both optimisers."""
    wanted = spec["images"]
    chosen = [(i, p) for i, p in enumerate(images) if wanted is None or p.stem in wanted]
    names = [p.stem for _, p in chosen]
    # House's curves are kept (and drawn); the other images' would only fill the JSON
    curves_image = "image_House256rgb" if "image_House256rgb" in names else names[0]
    rules = ["whole_run"] + [f"patience_{p}" for p in patiences]
    by_image: dict = {}
    size = None
    for index, path in chosen:
        x, y = _noisy(path, index, spec["crop"])
        size = f"{x.shape[2]}x{x.shape[1]}"
        for arch in ("unet", "autoencoder"):
            for optimizer in OPTIMIZERS:
                by_image.setdefault(path.stem, {}).setdefault(arch, {})[optimizer] = _budget_cell(
                    path, index, (arch, "noise", optimizer), x, y, recipe, args, cache,
                    spec["iters"], patiences, curve=path.stem == curves_image,
                )  # fmt: skip
    curves = {
        f"{arch}, {'Adam' if optimizer == 'adam' else 'GD'}": cells[optimizer].pop("curve")
        for arch, cells in by_image[curves_image].items()
        for optimizer in OPTIMIZERS
    }

    def kept(run: dict, rule: str) -> float:
        if rule == "whole_run":
            return run["best_psnr"]
        return run["patience_stops"][rule.removeprefix("patience_")]["best"]

    mean: dict = {}
    for arch in ("unet", "autoencoder"):
        entry = {
            optimizer: {
                rule: sum(kept(v[arch][optimizer], rule) for v in by_image.values()) / len(by_image)
                for rule in rules
            }
            for optimizer in OPTIMIZERS
        }
        entry["adam_minus_gd_db"] = {r: entry["adam"][r] - entry["gd"][r] for r in rules}
        entry["gd_best_at_cap"] = sum(v[arch]["gd"]["peak_at_cap"] for v in by_image.values())
        mean[arch] = entry
    return {
        "size": size if spec["crop"] else "whole",
        "crop": spec["crop"],
        "iters": spec["iters"],
        "images": list(by_image),
        "mean": mean,
        "by_image": by_image,
        "curves_image": curves_image,
        "curves": curves,
    }


def _lazy_row(path, index, x, y, arch, width, iters, gd_step, args, cache: Cache) -> dict:
    """GD on the first-order expansion of ``arch`` at its initialisation (noise input,
    :func:`filterscope.dip.linearized_gd`), cached with its PSNR trajectory."""
    from filterscope.dip import linearized_gd

    size = f"{x.shape[2]}x{x.shape[1]}"
    key = f"gd_budget_lazy/{path.stem}/{arch}/noise/{width}/{size}/{iters}steps/s{gd_step}"
    row = cache.get(key)
    if row is None:
        start = time.perf_counter()
        lazy = linearized_gd(
            y, iters=iters, clean=x, arch=arch, input="noise", width=width, seed=index,
            gd_step=gd_step, device=args.device,
        )  # fmt: skip
        row = {
            "gd_step": gd_step,
            "lr_effective": lazy["lr_effective"],
            "best_psnr": lazy["best_psnr"],
            "best_iteration": lazy["best_iteration"],
            "seconds": time.perf_counter() - start,
            "trajectory": {
                "iteration": lazy["iteration"],
                "psnr": [round(v, 4) for v in lazy["psnr"]],
            },
        }
        cache.put(key, row)
    print(
        f"gd_budget {path.stem} {size} {arch} width {width} GD linearised (s = {gd_step}): "
        f"best {row['best_psnr']:.2f} dB at step {row['best_iteration']} of {iters}",
        flush=True,
    )
    return row


def _lazy_runs(run: dict, spec: dict, images, recipe, args, cache: Cache, patiences) -> dict:
    """GD on the first-order expansion of each network at its initialisation on the image
    whose curves a ``gd_budget`` run keeps, with the step ``s`` of its real GD run and the
    same cap: how much of the real run the fixed initial filter (the paper's lazy regime)
    explains."""
    image = run["curves_image"]
    index = next(i for i, p in enumerate(images) if p.stem == image)
    x, y = _noisy(images[index], index, spec["crop"])
    iters = spec["iters"]["gd"]
    out = {}
    for arch in ("unet", "autoencoder"):
        gd_step = run["by_image"][image][arch]["gd"]["gd_step"]
        row = _lazy_row(
            images[index], index, x, y, arch, recipe["width"], iters, gd_step, args, cache
        )
        traj = row["trajectory"]
        out[arch] = {
            **{k: v for k, v in row.items() if k != "trajectory"},
            "image": image,
            "patience_stops": _patience_stops(traj, patiences),
            "curve": _log_spaced(traj),
        }
    return out


def _lazy_width(images, recipe, args, cache: Cache) -> dict:
    """Real against linearised GD on House at several widths (``gd_budget_lazy_widths``):
    does a wider network stay nearer its lazy prediction through a long run?"""
    spec = recipe["gd_budget_lazy_widths"]
    index = next(i for i, p in enumerate(images) if p.stem == "image_House256rgb")
    path = images[index]
    x, y = _noisy(path, index, spec["crop"])
    size = f"{x.shape[2]}x{x.shape[1]}"
    iters = spec["iters"]
    rows = []
    for width in spec["widths"]:
        for arch in ("unet", "autoencoder"):
            cell = (arch, "noise", "gd")
            key = f"gd_budget_width/{path.stem}/{_cell_name(*cell)}/{width}/{size}/{iters}steps"
            real = cache.get(key)
            if real is None:
                changed = {**recipe, "width": width, "iters": {"gd": iters}, "patience": None}
                real = _fit_row(path, index, cell, x, y, changed, args, keep_trajectory=True)
                cache.put(key, real)
            lazy = _lazy_row(path, index, x, y, arch, width, iters, real["gd_step"], args, cache)
            checkpoints = [t for t in (100, 300, 1000, 3000, 10000) if t <= iters]
            rows.append(
                {
                    "width": width,
                    "arch": arch,
                    "gd_step": real["gd_step"],
                    "network_best_psnr": real["oracle_psnr"],
                    "network_best_iteration": real["oracle_iteration"],
                    "linearised_best_psnr": lazy["best_psnr"],
                    "linearised_best_iteration": lazy["best_iteration"],
                    "network_minus_linearised_db": real["oracle_psnr"] - lazy["best_psnr"],
                    "network_psnr_at": {
                        str(t): _value_at(real["trajectory"], t) for t in checkpoints
                    },
                    "linearised_psnr_at": {
                        str(t): _value_at(lazy["trajectory"], t) for t in checkpoints
                    },
                }
            )
    return {"image": path.stem, "size": size, "iters": iters, "rows": rows}


def gd_budget(images, recipe, args, cache: Cache) -> dict:
    """With noise at the input: the Adam − GD gap against GD's budget and stopping rule.

    For each entry of ``gd_budget_runs`` (its images, crop and step caps), the U-Net and
    the autoencoder at the recipe's width are trained by Adam and by GD without patience
    to long caps (GD: 8000 steps on the 128×128 House, 4000 on the nine 64×64 crops in the
    CPU recipe, against Table 1's 1000), with the PSNR logged at every step. From these
    whole trajectories it reports the PSNR at fixed steps, the best PSNR of each run,
    and what the paper's rule "until there is no further improvement" would have kept for
    each patience of ``gd_budget_patiences`` (:func:`filterscope.dip.patience_stop`,
    applied to Adam and GD alike), with the means over the images. With noise at the
    input, GD fits the image's mean within a few steps, stays on a plateau near the
    paper's GD cells, then climbs: where the run ends (cap, patience) decides how far up
    that climb GD gets, and so the gap. On House, :func:`_lazy_runs` adds GD on the
    networks' linearisations (the lazy regime). Figure: House's curves, per run.
    """
    patiences = recipe["gd_budget_patiences"]
    paper = {
        f"{arch}/{optimizer}": PAPER_TABLE1[(arch, "noise", optimizer)]
        for arch in ("unet", "autoencoder")
        for optimizer in OPTIMIZERS
    }
    runs = [
        _budget_run(spec, images, recipe, args, cache, patiences)
        for spec in recipe["gd_budget_runs"]
    ]
    # cheapest first: the linearised runs of the largest crop take the longest
    for run, spec in sorted(
        zip(runs, recipe["gd_budget_runs"], strict=True), key=lambda pair: pair[1]["crop"] or 1e9
    ):
        run["lazy"] = _lazy_runs(run, spec, images, recipe, args, cache, patiences)
        for arch, lazy in run["lazy"].items():
            run["curves"][f"{arch}, GD linearised"] = lazy.pop("curve")
    out = {"width": recipe["width"], "patiences": list(patiences), "paper_noise_cells": paper}
    out["runs"] = runs
    out["lazy_width"] = _lazy_width(images, recipe, args, cache)
    if not recipe["figures"]:
        return out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib missing: no gd_budget figure", file=sys.stderr)
        return out
    from filterscope.plotting.dip import plot_trajectories

    out["figures"] = []
    for run in runs:
        figure = plot_trajectories(
            run["curves"],
            RESULTS_DIR / f"dip_gd_budget_{run['size']}.png",
            title=f"noise input, {run['curves_image']} {run['size']}, width {recipe['width']}",
            levels={f"paper: {cell.replace('/', ' ')}": v for cell, v in paper.items()},
        )
        out["figures"].append(str(Path(figure).relative_to(REPO)))
    return out


def _unstable_gd_kept(row: dict) -> bool:
    """A gradient-descent row whose last step of the ladder was unstable too (kept anyway)."""
    return row.get("gd_step") is not None and (
        row.get("diverged_at") is not None or row["max_loss_over_initial"] > 1.0
    )


def _count_cells(rows: list[dict], test) -> dict:
    """How many rows of each cell pass ``test`` (cells with none left out)."""
    counts: dict = {}
    for row in rows:
        if test(row):
            counts[row["cell"]] = counts.get(row["cell"], 0) + 1
    return counts


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
        if "iterations" in mine[0]:
            entry["mean_oracle_iteration"] = sum(r["oracle_iteration"] for r in mine) / len(mine)
            entry["diverged"] = sum(r.get("diverged_at") is not None for r in mine)
            entry["diverged_then_smaller_step"] = sum(bool(r.get("diverged_runs")) for r in mine)
            entry["unstable_kept"] = sum(_unstable_gd_kept(r) for r in mine)
            entry["peak_at_cap"] = sum(bool(r.get("peak_at_cap")) for r in mine)
        means[cell] = entry
    return means


def speed(recipe, args) -> list[dict]:
    """Iterations per second of each network on the 256×256 colour House image (not cached)."""
    from filterscope.dip import fit_single_image

    house = load(data_dir() / "image_House256rgb.png", recipe["speed_size"])
    rows = []
    for width, iters in zip(recipe["speed_widths"], recipe["speed_iters"], strict=True):
        for arch in ARCHS:
            result = fit_single_image(
                house,
                arch=arch,
                input="noise",
                optimizer="adam",
                iters=iters,
                width=width,
                clean=house,
                seed=0,
                device=args.device,
            )
            t = result.timing
            rows.append(
                {
                    "arch": arch,
                    "size": f"{house.shape[2]}x{house.shape[1]}",
                    "width": width,
                    "threads": torch.get_num_threads(),
                    "iterations": t["iterations"],
                    "iterations_per_s": t["iterations_per_s"],
                    "outside_share": t["outside_share"],
                    "forward_backward_s": t["forward_backward_s"],
                    "optimizer_s": t["optimizer_s"],
                    "total_s": t["total_s"],
                }
            )
            print(
                f"speed {arch} c={width}: {t['iterations_per_s']:.2f} it/s, "
                f"{100 * t['outside_share']:.1f}% outside forward+backward",
                flush=True,
            )
    return rows


def _weight_runs(recipe) -> list[tuple[str, str, float | None, float | None]]:
    """``(label, optimizer, gd_step, gd_rate)`` of the weight-change runs.

    Adam, then GD at each automatic step ``s`` of ``weight_gd_steps``, then GD at each
    fixed width-scaled rate ``η = η₀ / c`` of ``weight_gd_rates``.
    """
    steps = recipe.get("weight_gd_steps") or (recipe["gd_step"],)
    runs = [("adam", "adam", None, None)] + [(f"gd s={s:g}", "gd", s, None) for s in steps]
    rates = recipe.get("weight_gd_rates") or ()
    return runs + [(f"gd η={rate:g}/c", "gd", None, rate) for rate in rates]


def weight_change(recipe, args, cache: Cache) -> dict:
    """Figure 4: autoencoder, noise input, House crop; weight change after a fixed step count.

    Gradient descent runs at each step of ``weight_gd_steps`` (``s`` of the automatic
    step ``η = s n / (2 λ_max(Θ⁰))``): near the stability limit (``s = 1.9``) a finite
    network can leave the lazy regime (a catapult: the loss spikes, the weights move far
    and the tangent kernel shrinks), which the theory's ``c^{-1/2}`` does not cover. The
    automatic step follows ``λ_max`` of each initialisation, which at these widths varies
    several-fold from seed to seed and width to width (the output scale of an 8-hidden-
    layer ReLU network fluctuates), so it also runs GD at the theory's fixed rate
    ``η = η₀ / c`` (``weight_gd_rates``), and every run is repeated for
    ``weight_seeds`` (initialisation and input noise; the slope is fitted to all runs).
    """
    from filterscope.dip import fit_single_image, loglog_slope

    crop = recipe["crop"]
    house = load(data_dir() / "image_House256rgb.png", crop)
    y = house + (SIGMA_255 / 255.0) * torch.randn(
        house.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    rows = []
    iters = recipe["weight_iters"]
    runs = _weight_runs(recipe)
    for label, optimizer, gd_step, gd_rate in runs:
        for width in recipe["weight_widths"]:
            for seed in recipe["weight_seeds"]:
                # the recipe's own GD step keeps the plain key of earlier runs' caches
                tag = optimizer if gd_step in (None, recipe["gd_step"]) else f"gd@{gd_step:g}"
                if gd_rate is not None:
                    tag = f"gd-rate@{gd_rate:g}"
                key = f"weights/{tag}/{width}/{seed}"
                row = cache.get(key)
                if row is not None and optimizer == "gd" and "max_loss_over_initial" not in row:
                    row = None  # cached before the loss rise was recorded: run it again
                if row is None:
                    start = time.perf_counter()
                    result = fit_single_image(
                        y,
                        arch="autoencoder",
                        input="noise",
                        optimizer=optimizer,
                        iters=iters,
                        # a rate is divided by the width (standard parameterisation)
                        lr=gd_rate or (args.gd_lr if optimizer == "gd" else None),
                        width=width,
                        clean=house,
                        stop="oracle",
                        gd_step=gd_step or recipe["gd_step"],
                        weight_log_every=iters,
                        seed=seed,
                        device=args.device,
                    )
                    last = result.weights[-1]
                    loss = result.trajectory["loss"]
                    row = {
                        "optimizer": optimizer,
                        "width": width,
                        "seed": seed,
                        "l2": last["l2_mean"],
                        "linf": last["linf_mean"],
                        "psnr": result.choices["oracle_psnr"],
                        "diverged_at": result.config["diverged_at"],
                        "lr_effective": result.config["lr_effective"],
                        # a loss above its starting value: a catapult (or worse)
                        "max_loss_over_initial": max(loss) / loss[0],
                        "seconds": time.perf_counter() - start,
                    }
                    cache.put(key, row)
                row = {**row, "label": label, "gd_step": gd_step, "gd_rate": gd_rate}
                rows.append(row)
                extra = ""
                if row.get("max_loss_over_initial", 1.0) > 1.0:
                    extra += f", loss rose to {row['max_loss_over_initial']:.3g}× its start"
                if row["diverged_at"] is not None:
                    extra += f", DIVERGED at {row['diverged_at']}"
                print(
                    f"weights {label} c={width} seed {seed}: l2 {row['l2']:.3g}, "
                    f"linf {row['linf']:.3g}, PSNR {row['psnr']:.2f}{extra}",
                    flush=True,
                )
    slopes, unstable = {}, {}
    for label, *_ in runs:
        mine = [r for r in rows if r["label"] == label and _lazy_run(r)]
        unstable[label] = sum(r["label"] == label and not _lazy_run(r) for r in rows)
        if len({r["width"] for r in mine}) < 2:
            continue
        slopes[label] = {
            key: loglog_slope([r["width"] for r in mine], [r[key] for r in mine])
            for key in ("l2", "linf")
        }
    return {
        "rows": rows,
        "slopes": slopes,
        "slopes_fitted_to": "runs that neither diverged nor (GD) raised the loss above its start",
        "runs_left_out": unstable,
        "iterations": iters,
    }


def _lazy_run(row: dict) -> bool:
    """Whether a weight-change run belongs in the fits: it did not diverge (a diverged run
    stops before the weights are logged at the last step) and, for GD, its loss never rose
    above its start (the Table 1 test: linearised GD with s < 2 lowers it at every step,
    so a rise means the run left the regime the c^(-1/2) law is about: a catapult)."""
    if row["diverged_at"] is not None:
        return False
    return row["optimizer"] != "gd" or row.get("max_loss_over_initial", 1.0) <= 1.0


def theory(recipe, cache: Cache) -> dict:
    """Theory against practice: vanilla CNN, image input, GD, against NTK twicing."""
    from filterscope.dip import ntk_gap

    result = cache.get("theory")
    if result is None:
        crop = recipe["theory_crop"]
        gray = load(data_dir() / "image_House256rgb.png", crop).mean(0, keepdim=True)
        noise = torch.randn(
            gray.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        y = gray + (SIGMA_255 / 255.0) * noise
        result = ntk_gap(
            y, widths=recipe["theory_widths"], iters=20, kernel_size=recipe["theory_kernel"]
        )
        cache.put("theory", result)
    pairs = zip(result["widths"], result["gap"], strict=True)
    gaps = ", ".join(f"c={w}: {g:.3f}" for w, g in pairs)
    print(f"theory gap: {gaps}; slope {result['slope']:.2f}", flush=True)
    return result


def figures(recipe, weights: dict, gap: dict, args, cache: Cache) -> list[str]:
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
    paths = []
    if weights:
        paths.append(
            plot_weight_change(
                [
                    {**r, "optimizer": r.get("label", r["optimizer"])}
                    for r in weights["rows"]
                    if _lazy_run(r)
                ],
                RESULTS_DIR / "dip_figure4.png",
                title=f"autoencoder, noise input, {weights['iterations']} steps",
            )
        )
    if gap:
        paths.append(
            plot_ntk_gap(gap, RESULTS_DIR / "dip_ntk_gap.png", title="vanilla CNN, GD, image input")
        )
    house = load(data_dir() / "image_House256rgb.png", recipe["crop"])
    y = house + (SIGMA_255 / 255.0) * torch.randn(
        house.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    panels = {}
    for label, optimizer, gd_step, gd_rate in _weight_runs(recipe):
        if gd_rate is not None:
            continue  # Figure 5 shows the automatic steps only
        for net_input in INPUTS:
            tag = optimizer if gd_step in (None, recipe["gd_step"]) else f"gd@{gd_step:g}"
            key = f"figure5/{tag}/{net_input}"
            vecs = cache.get(key)
            if vecs is None:
                result = fit_single_image(
                    y,
                    arch="autoencoder",
                    input=net_input,
                    optimizer=optimizer,
                    iters=500,
                    width=recipe["width"],
                    gd_step=gd_step or recipe["gd_step"],
                    device=args.device,
                )
                _, vecs = preactivation_eigenvectors(result.network, result.network_input, count=3)
                cache.put(key, vecs.tolist())
            panels[f"{label}, {net_input}"] = torch.as_tensor(vecs)
    paths.append(
        plot_preactivation_eigenvectors(
            panels, RESULTS_DIR / "dip_figure5.png", title="autoencoder, after 500 steps"
        )
    )
    return [str(Path(p).relative_to(REPO)) for p in paths]


def targets(
    means: dict,
    speed_rows: list[dict] | None,
    weights: dict | None,
    noise_study: dict | None = None,
) -> dict:
    """The issue's targets, from whatever parts were measured (``noise_study``: the
    ``noise_images`` part, Table 1's noise-input cells on larger images)."""

    def cell(arch, net_input, optimizer):
        return means.get(_cell_name(arch, net_input, optimizer), {}).get("oracle_psnr")

    out: dict = {}
    network_cells = {(a, i, o): cell(a, i, o) for a in ARCHS for i in INPUTS for o in OPTIMIZERS}
    if means and None not in network_cells.values():
        for arch in ("unet", "autoencoder"):
            adam, gd = cell(arch, "noise", "adam"), cell(arch, "noise", "gd")
            out[f"{arch}_noise_adam_minus_gd_db"] = adam - gd
            out[f"{arch}_noise_adam_beats_gd_by_8db"] = adam - gd >= 8.0
        gap = abs(cell("vanilla", "image", "adam") - cell("vanilla", "image", "gd"))
        out["vanilla_image_adam_gd_gap_db"] = gap
        out["vanilla_image_within_1_5db"] = gap <= 1.5
        best = max(network_cells, key=network_cells.get)
        out["best_network_cell"] = _cell_name(*best)
        out["autoencoder_adam_best"] = best[0] == "autoencoder" and best[2] == "adam"
        out["diverged_runs"] = {
            name: m["diverged"] for name, m in means.items() if m.get("diverged")
        }
        out["unstable_runs_kept"] = {
            name: m["unstable_kept"] for name, m in means.items() if m.get("unstable_kept")
        }
        out["diverged_then_smaller_step"] = {
            name: m["diverged_then_smaller_step"]
            for name, m in means.items()
            if m.get("diverged_then_smaller_step")
        }
        out["runs_still_improving_at_cap"] = {
            name: m["peak_at_cap"] for name, m in means.items() if m.get("peak_at_cap")
        }
        sure_gaps = {
            name: m["oracle_psnr"] - m["sure_psnr"]
            for name, m in means.items()
            if "sure_psnr" in m and not name.startswith("nystrom")
        }
        if sure_gaps:
            mean_gap = sum(sure_gaps.values()) / len(sure_gaps)
            out["sure_oracle_gap_db_per_cell"] = sure_gaps
            out["sure_minus_oracle_mean_db"] = -mean_gap
            out["sure_within_0_5db"] = mean_gap <= 0.5
    if weights:
        slopes = {label: v["l2"] for label, v in weights["slopes"].items()}
        out["adam_weight_slope"] = slopes.pop("adam")
        out["adam_slope_not_minus_half"] = abs(out["adam_weight_slope"] + 0.5) > 0.25
        out["gd_weight_slope"] = slopes
        out["gd_slope_near_minus_half"] = {k: abs(v + 0.5) <= 0.15 for k, v in slopes.items()}
    if noise_study:
        size = noise_study["crop"] or "whole"
        for arch, gap in noise_study["adam_minus_gd_db"].items():
            out[f"{arch}_noise_adam_minus_gd_db_at_{size}"] = gap
            out[f"{arch}_noise_adam_beats_gd_by_8db_at_{size}"] = gap >= 8.0
    if speed_rows:
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


def print_gd_budget(study: dict) -> None:
    """The ``gd_budget`` part: mean PSNR kept by each stopping rule, and Adam − GD."""
    rules = ["whole_run"] + [f"patience_{p}" for p in study["patiences"]]
    for run in study["runs"]:
        print(
            f"noise input, {run['size']}, width {study['width']}, caps {run['iters']}, mean over "
            f"{len(run['images'])} image(s): PSNR (dB) kept by each stopping rule"
        )
        table = []
        for arch, entry in run["mean"].items():
            for optimizer in OPTIMIZERS:
                paper = study["paper_noise_cells"][f"{arch}/{optimizer}"]
                row = {"network": arch, "optimizer": optimizer, "paper": paper}
                table.append(row | {r: f"{entry[optimizer][r]:.2f}" for r in rules})
            row = {"network": arch, "optimizer": "Adam - GD", "paper": ""}
            table.append(row | {r: f"{entry['adam_minus_gd_db'][r]:.2f}" for r in rules})
        print_table(table, list(table[0]))
        counts = {arch: entry["gd_best_at_cap"] for arch, entry in run["mean"].items()}
        print(f"GD runs whose best came at the cap: {counts}")
        for arch, lazy in run.get("lazy", {}).items():
            real = run["by_image"][lazy["image"]][arch]["gd"]
            print(
                f"{lazy['image']} {arch}, GD (s = {lazy['gd_step']}): linearised "
                f"{lazy['best_psnr']:.2f} dB at step {lazy['best_iteration']}, network "
                f"{real['best_psnr']:.2f} dB at step {real['best_iteration']}"
            )
    if study.get("lazy_width"):
        lazy = study["lazy_width"]
        print(
            f"noise input, {lazy['image']} {lazy['size']}, GD ≤ {lazy['iters']} steps: best PSNR "
            "(dB) of the network and of its linearisation at initialisation, by width"
        )
        columns = ["width", "arch", "gd_step", "network_best_psnr", "linearised_best_psnr"]
        print_table(lazy["rows"], columns + ["network_minus_linearised_db"])


SECTIONS = ("speed", "weights", "theory", "figures", "table1")  # in the order they run
# only with --only: about an hour (noise_width) and some five hours (noise_images) of one
# core, 110 minutes (gd_budget) of two
OPTIONAL_SECTIONS = ("noise_width", "noise_images", "gd_budget")


def _parser() -> argparse.ArgumentParser:
    """The command line of this benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke run; writes nothing")
    mode.add_argument("--full", action="store_true", help="the paper's protocol (GPU)")
    parser.add_argument("--sure-all", action="store_true", help="estimate SURE in every cell")
    parser.add_argument(
        "--gd-lr", type=float, default=None, help="width-free GD rate (default: automatic)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if --full)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated parts to run ({', '.join(SECTIONS + OPTIONAL_SECTIONS)}); "
        "the others are kept "
        "from an existing results file of the same recipe",
    )
    parser.add_argument(
        "--speed-widths",
        default=None,
        metavar="C,C",
        help="widths of the speed part (default: the recipe's); 20 steps each",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        metavar="N",
        help="only the first N images in name order (default: the recipe's)",
    )
    parser.add_argument(
        "--restart", action="store_true", help="ignore the partial results of an earlier run"
    )
    return parser


def _chosen_sections(parser: argparse.ArgumentParser, only: str | None) -> tuple[str, ...]:
    """The parts named by ``--only`` (all of :data:`SECTIONS` without it)."""
    if not only:
        return SECTIONS
    sections = tuple(s.strip() for s in only.split(",") if s.strip())
    unknown = sorted(set(sections) - set(SECTIONS + OPTIONAL_SECTIONS))
    if unknown:
        parser.error(
            f"--only: unknown part(s) {unknown}; choose from {SECTIONS + OPTIONAL_SECTIONS}"
        )
    return sections


@dataclass
class _Setup:
    """What one invocation runs: the parts, the recipe, the images and the options."""

    args: argparse.Namespace
    sections: tuple[str, ...]
    folder: Path
    name: str  # recipe name: quick, cpu or full
    recipe: dict
    images: list[Path]

    @property
    def settings(self) -> dict:
        """The recipe as recorded (all but the ``figures`` switch)."""
        return {k: v for k, v in self.recipe.items() if k != "figures"}

    def config(self) -> dict:
        """The configuration of the cache (JSON round-tripped, as it is compared)."""
        # the cache and the merge with an earlier dip_table1.json compare CACHE_IDENTITY only
        return json.loads(
            json.dumps(
                {
                    "recipe": self.name,
                    "settings": self.settings,
                    "gd_lr": self.args.gd_lr,
                    "sure_all": self.args.sure_all,
                    "sure_cells": sorted(_cell_name(*c) for c in SURE_CELLS),
                    "device": self.args.device or "cpu",
                }
            )
        )


def _setup(parser: argparse.ArgumentParser, args: argparse.Namespace) -> _Setup | None:
    """Check the options and pick recipe and images; None when there is no data."""
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be positive")
        torch.set_num_threads(args.threads)
    sections = _chosen_sections(parser, args.only)
    folder = data_dir()
    if not folder.is_dir():
        print(f"{folder} not found; nothing to do", file=sys.stderr)
        return None
    name = "quick" if args.quick else "full" if args.full else "cpu"
    recipe = RECIPES[name]
    if args.device is None and args.full and torch.cuda.is_available():
        args.device = "cuda"
    images = sorted(folder.glob("*.png"))
    count = args.images if args.images is not None else recipe["images"]
    if count is not None:
        if count < 1:
            parser.error("--images must be positive")
        images = images[:count]
    return _Setup(args, sections, folder, name, recipe, images)


def _previous_results(setup: _Setup, config: dict) -> dict:
    """An existing ``dip_table1.json`` of the same recipe, merged into a ``--only`` run."""
    final_path = RESULTS_DIR / "dip_table1.json"
    if not (setup.args.only and final_path.exists()):
        return {}
    previous = json.loads(final_path.read_text())
    before = _comparable({"settings": previous.get("settings", {})})["settings"]
    if previous.get("recipe") != setup.name or before != _comparable(config)["settings"]:
        print("existing dip_table1.json is from another recipe: not merged", flush=True)
        return {}
    return previous


# the parts of an earlier results file that a --only run keeps unless it redoes them
KEPT_KEYS = (
    "mean_psnr",
    "rows",
    "speed",
    "weight_change",
    "theory",
    "figures",
    "noise_width",
    "noise_images",
    "gd_budget",
)


def _initial_payload(setup: _Setup, previous: dict) -> dict:
    """The results header, with the parts of ``previous`` this run does not redo."""
    payload = {
        "benchmark": "dip_table1",
        "recipe": setup.name,
        "settings": json.loads(json.dumps(setup.settings)),
        "sigma_255": SIGMA_255,
        "images": [p.stem for p in setup.images],
        "device": setup.args.device or "cpu",
        "paper_table1": {_cell_name(*k): v for k, v in PAPER_TABLE1.items()},
    }
    if "table1" not in setup.sections and "images" in previous:
        payload["images"] = previous["images"]  # the rows kept are those images
    for key in (*KEPT_KEYS, "run"):
        if key in previous:
            payload[key] = previous[key]
    return payload


def _speed_record() -> dict:
    """Threads, load average and time of the speed measurement."""
    return {
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _invocation_record(sections: tuple[str, ...], start: float) -> dict:
    """The parts run, threads, load average, duration and time of this invocation."""
    return {
        "sections": list(sections),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "seconds_this_invocation": time.time() - start,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _run_sections(setup: _Setup, payload: dict, run_info: dict, cache: Cache) -> None:
    """Run the chosen parts in order, storing each result in ``payload``."""
    sections, recipe, args, images = setup.sections, setup.recipe, setup.args, setup.images
    if "speed" in sections:
        speed_recipe = recipe
        if args.speed_widths:
            widths = tuple(int(w) for w in args.speed_widths.split(","))
            speed_recipe = {**recipe, "speed_widths": widths, "speed_iters": (20,) * len(widths)}
        payload["speed"] = speed(speed_recipe, args)
        run_info["speed"] = _speed_record()
    if "weights" in sections:
        payload["weight_change"] = weight_change(recipe, args, cache)
    if "theory" in sections:
        payload["theory"] = theory(recipe, cache)
    if "figures" in sections and recipe["figures"]:
        payload["figures"] = figures(
            recipe, payload.get("weight_change"), payload.get("theory"), args, cache
        )
    if "table1" in sections:
        payload["rows"], payload["mean_psnr"] = table1(images, recipe, args, cache)
    if "noise_width" in sections:
        payload["noise_width"] = noise_width(images, recipe, args, cache)
    if "noise_images" in sections:
        payload["noise_images"] = noise_images(images, recipe, args, cache)
    if "gd_budget" in sections:
        # its one image keeps its index in name order (the noise seed), whatever --images
        all_images = sorted(setup.folder.glob("*.png"))
        payload["gd_budget"] = gd_budget(all_images, recipe, args, cache)


def _print_noise_width(study: dict) -> None:
    table = [
        {"network": arch, "run": run, **values}
        for arch, runs in study["by_run"].items()
        for run, values in runs.items()
    ]
    print(f"noise input, Adam against GD (oracle PSNR, dB) on {', '.join(study['images'])}:")
    print_table(table, list(table[0]))


def _print_noise_images(study: dict) -> None:
    table = [
        {"network": arch, **values, "paper": study["paper_adam_minus_gd_db"][arch]}
        for arch, values in study["by_network"].items()
    ]
    size = f"{study['crop']}x{study['crop']} crops" if study["crop"] else "whole images"
    print(f"noise input, Adam against GD (oracle PSNR, dB), {size}, width {study['width']}:")
    print_table(table, list(table[0]))
    for name in ("still_improving_at_cap", "gd_smaller_step_used", "unstable_kept"):
        if study.get(name):
            print(f"{name.replace('_', ' ')}: {study[name]}")


def _print_summary(payload: dict) -> None:
    """Print every part present in ``payload`` and the targets."""
    print()
    means = payload.get("mean_psnr", {})
    if means:
        print_table1(means)
        print()
    if payload.get("speed"):
        columns = ["arch", "size", "width", "threads", "iterations_per_s", "outside_share"]
        print_table(payload["speed"], columns)
    if payload.get("weight_change"):
        print(f"weight-change slopes (l2, linf): {payload['weight_change']['slopes']}")
    if payload.get("noise_width"):
        _print_noise_width(payload["noise_width"])
    if payload.get("noise_images"):
        _print_noise_images(payload["noise_images"])
    if payload.get("gd_budget"):
        print_gd_budget(payload["gd_budget"])
    print(f"targets: {json.dumps(payload['targets'], indent=1)}")


def main() -> int:
    parser = _parser()
    args = parser.parse_args()
    setup = _setup(parser, args)
    if setup is None:
        return 1
    config = setup.config()
    cache = Cache(
        RESULTS_DIR / "dip_table1.partial.json",
        config,
        enabled=not args.quick,
        restart=args.restart,
    )
    previous = _previous_results(setup, config)

    start = time.time()
    payload = _initial_payload(setup, previous)
    run_info = dict(payload.get("run", {}))
    _run_sections(setup, payload, run_info, cache)
    payload["targets"] = targets(
        payload.get("mean_psnr", {}),
        payload.get("speed"),
        payload.get("weight_change"),
        payload.get("noise_images"),
    )
    sections = setup.sections
    key = "main" if set(sections) == set(SECTIONS) else "+".join(sections)
    run_info[key] = _invocation_record(sections, start)
    payload["run"] = run_info
    _print_summary(payload)
    if args.quick:
        print("quick run: nothing written")
    else:
        print(f"wrote {write_results('dip_table1', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
