"""The paper's headline experiment, small enough to run anywhere.

Train a DnCNN with additive bias and its bias-free twin on the same noise range (σ in
[0, 10] by default), then evaluate both far outside it (σ up to 100) on BSD68: the
bias-free network keeps denoising, the other collapses (Mohan et al., ICLR 2020,
Section 5, Figure 3 left column). ``quick`` is sized to finish in under 15 minutes on
two CPU cores; the full setting uses the 20-layer DnCNN.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._files import atomic_write
from .._options import merge_options
from ..errors import OVERWRITE_ADVICE, InputError
from ..evaluation.runner import evaluate_models, format_table
from ..hub import load_model, model_info
from ..training import TrainConfig, train

RUN_NAMES = {True: "bias", False: "bias-free"}
OUTPUT_NAMES = (
    "generalization.json",
    "generalization.csv",
    "generalization.png",
    "generalization_summary.json",
)

#: Quick setting: an 8-layer, 32-channel DnCNN, 40x40 patches, about 5 minutes per
#: network on 2 cores.
QUICK_RECIPE = TrainConfig(
    arch="dncnn",
    arch_options={"num_layers": 8, "hidden": 32},
    patch_size=40,
    sigma_range=[0.0, 10.0],
    batch_size=16,
    steps=1500,
    lr=1e-3,
    lr_milestones=[0.7, 0.9],
    lr_gamma=0.3,
    warmup_steps=30,
    val_images=2,
    val_sigmas=[5.0, 10.0],
    val_every=500,
    checkpoint_every=250,
    tensorboard=False,
)
#: Full setting: the paper's 20-layer DnCNN with the shipped CPU recipe's budget.
FULL_RECIPE = replace(
    QUICK_RECIPE, arch_options={}, patch_size=50, batch_size=24, steps=600, val_every=100
)


def existing_outputs(out_dir: str | os.PathLike) -> list[Path]:
    """The files and run folders of an earlier run in ``out_dir`` that a new run replaces."""
    names = (*RUN_NAMES.values(), *OUTPUT_NAMES)
    return [Path(out_dir) / name for name in names if (Path(out_dir) / name).exists()]


def _check_inputs(out_dir: Path, baselines, data_dir, test_dir, *, overwrite: bool) -> None:
    """Everything :func:`run_generalization_experiment` refuses before any work."""
    existing = existing_outputs(out_dir)
    if existing and not overwrite:
        raise InputError(f"{existing[0]}: already exists ({OVERWRITE_ADVICE})")
    for spec in baselines:
        if model_info(spec).kind != "classical":
            raise InputError(f"{spec}: not a classical baseline; use nlm, bm3d or NAME:estimate")
        load_model(spec)  # a missing optional package (bm3d) is said now, not after training
    for folder, what in ((data_dir, "training"), (test_dir, "test")):
        if not Path(folder).is_dir():
            raise InputError(f"{folder}: {what} image folder not found")


@dataclass(frozen=True)
class GeneralizationOptions:
    """The generalization experiment's settings (every field optional).

    Attributes
    ----------
    quick : bool
        Small network (:data:`QUICK_RECIPE`, under 15 minutes on 2 cores in all) or the
        20-layer DnCNN (:data:`FULL_RECIPE`, about an hour).
    sigma_range : (float, float)
        Training noise range, 0–255 scale.
    test_sigmas : tuple of float
        Evaluation noise levels, 0–255 scale.
    data_dir, test_dir, val_dir : path
        Training images, test images (all of them unless ``test_images``), validation
        images (two are used for the training log).
    baselines : sequence of str
        Classical baselines evaluated beside the two networks on the same noisy images,
        as ``filterscope evaluate`` names them (``"nlm"``, ``"bm3d"``,
        ``"bm3d:estimate"``...). None by default: on the 68 BSD68 images at 10 σ, NLM
        adds about 6 minutes and BM3D about an hour on 2 CPU cores, more than the quick
        setting's budget.
    threads : int
        Torch threads (0 = torch's default).
    steps : int
        Override the number of training steps of each network.
    overwrite : bool
        Replace earlier results in ``out_dir`` (otherwise refused before any work).
    progress : bool
        Progress bars.
    device : str or None
        Where both networks are trained and evaluated: ``"cpu"``, ``"cuda"`` or
        ``"auto"``/None (a GPU when there is one). Training uses the device's type
        (``"cuda:1"`` trains on the first GPU); classical baselines run on the CPU.
    """

    quick: bool = True
    sigma_range: tuple[float, float] = (0.0, 10.0)
    test_sigmas: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    data_dir: str | os.PathLike = "../shared/data/BSD400"
    test_dir: str | os.PathLike = "../shared/data/BSD68"
    val_dir: str | os.PathLike = "../shared/data/Set12"
    test_images: int | None = None
    baselines: Sequence[str] = ()
    threads: int = 0
    steps: int | None = None
    overwrite: bool = False
    progress: bool = True
    device: str | None = None


def run_generalization_experiment(
    out_dir: str | os.PathLike,
    options: GeneralizationOptions | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Train a bias and a bias-free DnCNN on ``sigma_range`` and evaluate both beyond it.

    Parameters
    ----------
    out_dir : path
        Output folder: ``bias/`` and ``bias-free/`` training runs, then
        ``generalization.json`` (full evaluation, per-image values), ``.csv`` and
        ``.png`` (output against input PSNR and SSIM, training range shaded), and
        ``generalization_summary.json`` (the PSNR gap per σ, timings, the recipe).
    options : GeneralizationOptions, optional
        Network size, noise ranges, folders, steps, device... (:class:`GeneralizationOptions`).
    **settings
        Fields of :class:`GeneralizationOptions` by keyword; they replace those of ``options``.
    Returns
    -------
    dict
        ``{"result": evaluation result, "gap_db": {σ: PSNR(bias-free) − PSNR(bias)},
        "seconds": {"train_bias": ..., "train_bias_free": ..., "evaluate": ...,
        "total": ...}, "files": [...]}``.
    """
    options = merge_options(GeneralizationOptions, options, settings)
    quick = options.quick
    sigma_range = options.sigma_range
    data_dir = options.data_dir
    val_dir = options.val_dir
    threads = options.threads
    from ..devices import resolve_device

    out_dir = Path(out_dir)
    target = resolve_device(options.device)  # an unknown or absent device: refused before training
    _check_inputs(
        out_dir, options.baselines, data_dir, options.test_dir, overwrite=options.overwrite
    )
    recipe = _build_recipe(
        quick,
        sigma_range,
        data_dir,
        val_dir,
        threads=threads,
        device_type=target.type,
        steps=options.steps,
    )

    start = time.perf_counter()
    seconds: dict[str, float] = {}
    models = _train_pair(recipe, out_dir, seconds, progress=options.progress)
    tick = time.perf_counter()
    result = _evaluate(
        [*models, *options.baselines],
        options.test_dir,
        options.test_sigmas,
        options.test_images,
        out_dir,
        str(target),
        options.progress,
    )
    seconds["evaluate"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - start
    gap = _psnr_gap(result, models, options.test_sigmas)
    summary = _write_summary(out_dir, recipe, gap, seconds, quick=quick, threads=threads)
    return {
        "result": result,
        "gap_db": gap,
        "seconds": seconds,
        "files": [str(out_dir / name) for name in OUTPUT_NAMES],
        "summary": summary,
        "table": format_table(result),
    }


def _build_recipe(
    quick: bool, sigma_range, data_dir, val_dir, *, threads: int, device_type: str, steps
) -> TrainConfig:
    """The training recipe both networks share (all but ``bias``), validated."""
    recipe = replace(
        QUICK_RECIPE if quick else FULL_RECIPE,
        sigma_range=[float(s) for s in sigma_range],
        data_dir=str(data_dir),
        val_dir=str(val_dir),
        threads=threads,
        device=device_type,
    )
    if steps is not None:
        recipe = replace(recipe, steps=steps)
    recipe.validate()
    return recipe


def _train_pair(
    recipe: TrainConfig, out_dir: Path, seconds: dict[str, float], *, progress: bool
) -> list[str]:
    """Train the bias network, then the bias-free one; their model files, in that order.

    Each training time goes into ``seconds`` as ``train_bias`` / ``train_bias_free``.
    """
    models = []
    for bias in (True, False):
        run_dir = out_dir / RUN_NAMES[bias]
        if run_dir.exists():  # only reached with overwrite
            shutil.rmtree(run_dir)
        tick = time.perf_counter()
        train(replace(recipe, bias=bias), run_dir, progress=progress)
        seconds[f"train_{RUN_NAMES[bias].replace('-', '_')}"] = time.perf_counter() - tick
        models.append(str(run_dir / "model.safetensors"))
    return models


def _evaluate(
    specs: list[str], test_dir, test_sigmas, limit, out_dir: Path, device: str, progress: bool
) -> dict:
    """Evaluate every model on the same noisy test images, writing JSON, CSV and figure."""
    return evaluate_models(
        specs,
        test_dir,
        [s / 255.0 for s in test_sigmas],
        limit=limit,
        json_path=out_dir / OUTPUT_NAMES[0],
        csv_path=out_dir / OUTPUT_NAMES[1],
        plot_path=out_dir / OUTPUT_NAMES[2],
        overwrite=True,
        progress=progress,
        device=device,
    )


def _psnr_gap(result: dict, models: list[str], test_sigmas) -> dict:
    """PSNR(bias-free) − PSNR(bias) per test σ (``models`` = [bias, bias-free])."""
    psnr = {(r["model"], r["sigma"]): r["psnr"] for r in result["results"]}
    return {sigma: psnr[(models[1], sigma)] - psnr[(models[0], sigma)] for sigma in test_sigmas}


def _write_summary(
    out_dir: Path, recipe: TrainConfig, gap: dict, seconds: dict, *, quick: bool, threads: int
) -> dict[str, Any]:
    """Write ``generalization_summary.json`` (atomically) and return its content."""
    summary = {
        "gap_db_bias_free_minus_bias": {f"{sigma:g}": value for sigma, value in gap.items()},
        "seconds": seconds,
        "quick": quick,
        "threads": threads,
        "training_sigma_range_255": list(recipe.sigma_range),
        "recipe": recipe.to_dict(),
    }
    atomic_write(
        out_dir / OUTPUT_NAMES[3],
        lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"),
    )
    return summary


__all__ = ["FULL_RECIPE", "QUICK_RECIPE", "existing_outputs", "run_generalization_experiment"]
