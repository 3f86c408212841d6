"""``filterscope evaluate`` as a library function: models × noise levels on a folder.

:func:`evaluate_models` checks everything it was given before any model runs (noise
kind, blur, σ list, output files, data folder, models, image channels), then runs
:func:`~filterscope.evaluation.evaluate` and writes JSON, CSV and figure atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import atomic_write, check_output_paths
from .._options import merge_options
from ..errors import InputError
from ..io import input_files, list_images, read_image, to_tensor
from ..machine import AUTO, choose_precision, path_record
from ..noise import NOISE_MODELS
from .specs import ModelSpec, resolve_model
from .sweep import check_sigmas, evaluate, results_table

#: The published protocol's noise levels (image scale: 10/255, ..., 100/255), the
#: default of the command.
DEFAULT_SIGMAS = tuple(s / 255.0 for s in range(10, 101, 10))
PRECISIONS = ("float32", "bfloat16")
CSV_COLUMNS = (
    "model",
    "noise",
    "blur",
    "sigma",
    "sigma_source",
    "psnr_in",
    "ssim_in",
    "psnr",
    "ssim",
    "seconds",
    "num_images",
)


def check_options(
    sigmas: Sequence[float], *, noise: str, blur: float, seed: int, batch_size: int
) -> list[float]:
    """The σ list (image scale) as floats, after checking every option; InputError for
    the first bad one."""
    if noise not in NOISE_MODELS:
        raise InputError(f"unknown noise kind {noise!r}; choose from {', '.join(NOISE_MODELS)}")
    if not (isinstance(blur, (int, float)) and math.isfinite(blur) and blur >= 0):
        raise InputError(f"blur width must be a number of pixels >= 0, got {blur}")
    sigmas = check_sigmas(sigmas)
    if seed < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    return sigmas


def load_folder(folder: str | os.PathLike, *, limit: int | None = None) -> list[tuple[str, Any]]:
    """Images of ``folder`` as ``(name, (1, C, H, W) tensor)``; InputError if none or mixed."""
    paths = list_images(folder)
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise InputError(f"{folder}: no image files in this folder")
    images = [(path.name, to_tensor(read_image(path)[0])) for path in paths]
    channels = {image.shape[1] for _, image in images}
    if len(channels) > 1:
        gray = next(name for name, image in images if image.shape[1] == 1)
        color = next(name for name, image in images if image.shape[1] == 3)
        raise InputError(
            f"{folder}: mixes gray ({gray}) and colour ({color}) images; use one kind per folder"
        )
    return images


def _check_channels(specs: Sequence[ModelSpec], channels: int, folder: str | os.PathLike) -> None:
    kinds = {1: "gray", 3: "RGB"}
    for spec in specs:
        expected = spec.in_channels
        if expected is not None and expected != channels:
            raise InputError(
                f"{spec.name} takes {kinds.get(expected, expected)} images but {folder} holds "
                f"{kinds.get(channels, channels)} images; use a model for that kind of image"
            )


def format_table(result: dict[str, Any]) -> str:
    """The (model, σ) summary as an aligned text table (σ on the 0–255 scale)."""
    rows = results_table(result)
    width = max([len("model"), *(len(r["model"]) for r in rows)])
    header = (
        f"{'model':<{width}}  {'sigma':>6}  {'psnr_in':>8}  {'ssim_in':>7}  "
        f"{'psnr':>8}  {'ssim':>6}  {'seconds':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['model']:<{width}}  {r['sigma']:>6g}  {r['psnr_in']:>8.3f}  {r['ssim_in']:>7.4f}  "
            f"{r['psnr']:>8.3f}  {r['ssim']:>6.4f}  {r['seconds']:>8.1f}"
        )
    return "\n".join(lines)


def csv_text(result: dict[str, Any]) -> str:
    """One CSV row per (model, σ) with the summary columns (per-image values: see JSON)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for entry in result["results"]:
        writer.writerow({**entry, "num_images": len(entry["per_image"])})
    return buffer.getvalue()


def _write_text(path: str | os.PathLike, text: str) -> Path:
    try:
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_outputs(
    result: dict[str, Any],
    *,
    json_path: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    plot_path: str | os.PathLike | None = None,
) -> list[Path]:
    """Write the requested files atomically; returns the paths written."""
    written = []
    if json_path is not None:
        written.append(_write_text(json_path, json.dumps(result, indent=2) + "\n"))
    if csv_path is not None:
        written.append(_write_text(csv_path, csv_text(result)))
    if plot_path is not None:
        from ..plotting.generalization import plot_generalization

        suffix = Path(plot_path).suffix
        written.append(
            atomic_write(plot_path, lambda tmp: plot_generalization(result, tmp), suffix=suffix)
        )
    return written


@dataclass(frozen=True)
class EvaluationOptions:
    """How :func:`evaluate_models` evaluates and what it writes (every field optional).

    Attributes
    ----------
    noise : {"gaussian", "uniform", "correlated", "poisson-gaussian", "camera"}
        Noise model, as :func:`filterscope.evaluation.sweep.evaluate` describes it.
    blur : float
        Gaussian blur of the clean image (pixels) before the noise; 0 for none.
    seed : int
        Base seed of the noise; every model sees the same noisy images.
    batch_size : int
        Images of one shape per network pass.
    precision : {"auto", "float32", "bfloat16"} or None
        Arithmetic of the networks (:func:`filterscope.models.fast.optimize_for_inference`);
        ``"auto"`` (default) is float32 on every machine
        (:func:`filterscope.machine.choose_precision`: scores are compared with published
        float32 numbers, which bfloat16 would shift), so bfloat16 is only taken when asked
        for. None runs the networks as they are. Baselines run in float64. The path taken
        is recorded as ``protocol["numeric_path"]``.
    limit : int
        Use only the first ``limit`` images (in name order).
    json_path, csv_path, plot_path : path
        Files to write: the full result (with per-image values), the summary table,
        and the generalization figure
        (:func:`filterscope.plotting.generalization.plot_generalization`).
    overwrite : bool
        Replace existing output files (otherwise they are refused before any work).
    progress : bool
        Progress bar on stderr across the whole sweep.
    ensemble : bool
        Run every model as a self-ensemble (:class:`filterscope.ensemble.SelfEnsemble`:
        the mean over the 8 flips and rotations; 8 times the cost).
    device : str or None
        Torch device of the networks, e.g. ``"cpu"`` or ``"cuda"`` (default: where they
        are loaded, the CPU); each batch is moved there and the results back. Classical
        baselines run on the CPU whatever the device.
    """

    noise: str = "gaussian"
    blur: float = 0.0
    seed: int = 0
    batch_size: int = 1
    precision: str | None = AUTO
    limit: int | None = None
    json_path: str | os.PathLike | None = None
    csv_path: str | os.PathLike | None = None
    plot_path: str | os.PathLike | None = None
    overwrite: bool = False
    progress: bool = True
    ensemble: bool = False
    device: str | None = None


def evaluate_models(
    models: Sequence[str],
    data: str | os.PathLike,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    options: EvaluationOptions | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate models given by name, path or baseline spec on a folder of clean images.

    Parameters
    ----------
    models : sequence of str
        Specs as :func:`~filterscope.evaluation.specs.resolve_model` reads them: any
        registered name (shipped models, ``bm3d``/``nlm`` with the true σ or
        ``bm3d:estimate``/``nlm:estimate``, ``ntk``, ``dip``...), checkpoint paths, or
        ``package.module:attribute``. Each is named in the results exactly as given.
    data : str or path-like
        Folder of clean test images, all gray or all RGB.
    sigmas : sequence of float
        Noise levels on the image scale (default 10/255, 20/255, …, 100/255).
    options : EvaluationOptions, optional
        Noise, blur, seed, precision, device, files to write... (:class:`EvaluationOptions`).
    **settings
        Fields of :class:`EvaluationOptions` by keyword; they replace those of ``options``.
    Returns
    -------
    dict
        ``{"protocol": {..., "data": folder}, "models": {name: description},
        "results": [...]}`` — the shape of :func:`~filterscope.evaluation.evaluate`
        plus a ``models`` section (kind, σ source, architecture, bias, training range).

    Raises
    ------
    InputError, CheckpointError
        Any bad option, output path, folder, image or model, before any model runs.
    """
    options = merge_options(EvaluationOptions, options, settings)
    precision = options.precision
    device = options.device
    sigmas = check_options(
        sigmas,
        noise=options.noise,
        blur=options.blur,
        seed=options.seed,
        batch_size=options.batch_size,
    )
    requested = precision
    if precision is not None:
        precision = choose_precision("evaluate", device or "cpu", requested=precision)
    if options.limit is not None and options.limit < 1:
        raise InputError(f"image limit must be at least 1, got {options.limit}")
    if device is not None:
        from ..devices import resolve_device

        device = resolve_device(device)  # an unknown or absent device fails before any work
    read = [data, *([models] if isinstance(models, str) else models)]
    check_output_paths(
        {
            "json_path": options.json_path,
            "csv_path": options.csv_path,
            "plot_path": options.plot_path,
        },
        overwrite=options.overwrite,
        figures=("plot_path",),
        in_use={"an input": input_files(read)},
    )
    if isinstance(models, str):
        models = [models]
    if not models:
        raise InputError("models: no model given")
    duplicates = sorted({m for m in models if list(models).count(m) > 1})
    if duplicates:
        raise InputError(f"model {duplicates[0]} is given twice")
    images = load_folder(data, limit=options.limit)
    specs = [resolve_model(str(m), ensemble=options.ensemble) for m in models]
    _check_channels(specs, images[0][1].shape[1], data)
    if device is not None:
        for spec in specs:  # the sweep runs each network where its weights are
            if callable(getattr(spec.denoiser, "to", None)):
                spec.denoiser.to(device)

    result = evaluate(
        {spec.name: spec.denoiser for spec in specs},
        images,
        sigmas,
        noise=options.noise,
        blur=options.blur,
        seed=options.seed,
        batch_size=options.batch_size,
        precision=precision,
        progress=options.progress,
    )
    payload = {
        "protocol": {
            **result["protocol"],
            "data": str(data),
            "numeric_path": path_record(
                "evaluate", {"precision": requested}, {"precision": precision}
            ),
        },
        "models": {spec.name: spec.info for spec in specs},
        "results": result["results"],
    }
    write_outputs(
        payload, json_path=options.json_path, csv_path=options.csv_path, plot_path=options.plot_path
    )
    return payload


__all__ = [
    "DEFAULT_SIGMAS",
    "EvaluationOptions",
    "check_options",
    "check_output_paths",
    "csv_text",
    "evaluate_models",
    "format_table",
    "load_folder",
    "write_outputs",
]
