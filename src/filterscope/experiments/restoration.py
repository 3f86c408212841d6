"""Restoration (blur + noise): a DnCNN with bias against its bias-free twin.

Mohan et al. (ICLR 2020), Appendix C, Figure 20: both networks are trained on images
blurred by a Gaussian of width in [0, 4] pixels and corrupted by noise of σ in [0, 55];
on a grid of noise × blur levels the bias-free one keeps working at noise levels beyond
the training range (for a fixed blur), the other does not, and neither generalizes to
unseen blur widths. The models come from ``filterscope train --recipe
recipes/cpu-restoration-dncnn.toml`` (with and without ``--bias``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from .._options import merge_options
from ..devices import resolve_device
from ..errors import InputError
from ..evaluation import evaluate
from ..evaluation.runner import _check_channels, check_output_paths, load_folder
from ..evaluation.specs import resolve_model

DEFAULT_SIGMAS = (5, 15, 25, 35, 45, 55, 65, 75, 85, 95)
DEFAULT_BLURS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


def restoration_grid(
    bias_model: str,
    bias_free_model: str,
    test_dir: str | os.PathLike,
    *,
    sigmas_255: Sequence[float] = DEFAULT_SIGMAS,
    blurs: Sequence[float] = DEFAULT_BLURS,
    test_images: int | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """PSNR of both models on every (blur width, noise level) pair.

    Parameters
    ----------
    bias_model, bias_free_model : str
        Model specs (shipped name or checkpoint path) of the two networks.
    test_dir : path
        Folder of clean test images.
    sigmas_255 : sequence of float, keyword-only
        Noise levels, 0–255 scale.
    blurs : sequence of float, keyword-only
        Gaussian blur widths (standard deviation, pixels) applied before the noise.
    test_images : int, keyword-only
        Use the first N images.
    seed : int, keyword-only
        Noise seed (same noisy images for both models).
    device : str or None, keyword-only
        Torch device of both networks (``"cpu"``, ``"cuda"``, ``"auto"``: a GPU when
        there is one); None: where they are loaded, the CPU.

    Returns
    -------
    dict
        ``{"models": {"bias": spec, "bias_free": spec}, "training": {...},
        "sigmas_255": [...], "blurs": [...], "psnr": {"bias": [[...]], "bias_free":
        [[...]]}, "psnr_in": [[...]], "delta_psnr": [[...]], "protocol": {...}}``, with
        the tables indexed ``[blur index][sigma index]`` and ``delta_psnr`` = bias-free
        minus bias (dB).
    """
    if not blurs or min(blurs) < 0:
        raise InputError(f"blur widths must be >= 0, got {list(blurs)}")
    if not sigmas_255 or min(sigmas_255) < 0:
        raise InputError(f"noise levels must be >= 0, got {list(sigmas_255)}")
    target = None if device is None else resolve_device(device)
    specs = {"bias": resolve_model(bias_model), "bias_free": resolve_model(bias_free_model)}
    images = load_folder(test_dir, limit=test_images)
    _check_channels(list(specs.values()), images[0][1].shape[1], test_dir)
    if target is not None:
        for spec in specs.values():  # the sweep runs each network where its weights are
            if callable(getattr(spec.denoiser, "to", None)):
                spec.denoiser.to(target)
    shape = (len(blurs), len(sigmas_255))
    psnr = {key: np.zeros(shape) for key in specs}
    psnr_in = np.zeros(shape)
    protocol: dict[str, Any] = {}
    for b, blur in enumerate(blurs):
        result = evaluate(
            {key: spec.denoiser for key, spec in specs.items()},
            images,
            [s / 255.0 for s in sigmas_255],
            blur=float(blur),
            seed=seed,
            precision="float32",
            progress=progress,
        )
        protocol = result["protocol"]
        for entry in result["results"]:
            s = list(sigmas_255).index(entry["sigma"])
            psnr[entry["model"]][b, s] = entry["psnr"]
            psnr_in[b, s] = entry["psnr_in"]
    training = {
        key: {
            "sigma_range_255": spec.info.get("training_sigma_range_255"),
            "blur_range": _blur_range(spec),
        }
        for key, spec in specs.items()
    }
    return {
        "models": {"bias": bias_model, "bias_free": bias_free_model},
        "training": training,
        "sigmas_255": [float(s) for s in sigmas_255],
        "blurs": [float(b) for b in blurs],
        "psnr": {key: value.tolist() for key, value in psnr.items()},
        "psnr_in": psnr_in.tolist(),
        "delta_psnr": (psnr["bias_free"] - psnr["bias"]).tolist(),
        "protocol": {**protocol, "blur": "per grid row", "data": str(test_dir)},
    }


def _blur_range(spec) -> list[float] | None:
    card = getattr(spec.denoiser, "card", None) or {}
    return card.get("training", {}).get("blur_range")


def plot_restoration(grid: dict[str, Any], path: str | os.PathLike, *, slice_blur: float = 2.0):
    """Figure 20: ΔPSNR heat map (training region outlined) and the slice at one blur.

    Parameters
    ----------
    grid : dict
        What :func:`restoration_grid` returned.
    path : path
        Image file to write.
    slice_blur : float, keyword-only
        Blur width of the right panel (must be one of the grid's widths).
    """
    from ..plotting.analysis import _pyplot

    plt = _pyplot()
    sigmas = np.array(grid["sigmas_255"])
    blurs = np.array(grid["blurs"])
    delta = np.array(grid["delta_psnr"])
    if slice_blur not in grid["blurs"]:
        raise InputError(f"slice blur {slice_blur} is not one of the grid's {grid['blurs']}")
    row = grid["blurs"].index(slice_blur)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    limit = max(1.0, float(np.abs(delta).max()))
    image = left.imshow(
        delta,
        origin="lower",
        aspect="auto",
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        extent=(
            sigmas[0] - _half_step(sigmas),
            sigmas[-1] + _half_step(sigmas),
            blurs[0] - _half_step(blurs),
            blurs[-1] + _half_step(blurs),
        ),
    )
    for b, blur in enumerate(blurs):
        for s, sigma in enumerate(sigmas):
            left.text(sigma, blur, f"{delta[b, s]:.1f}", ha="center", va="center", fontsize=7)
    training = grid["training"]["bias_free"]
    if training.get("sigma_range_255") and training.get("blur_range"):
        lo_s, hi_s = training["sigma_range_255"]
        lo_b, hi_b = training["blur_range"]
        left.add_patch(
            plt.Rectangle((lo_s, lo_b), hi_s - lo_s, hi_b - lo_b, fill=False, lw=2, color="k")
        )
    left.set_xlabel("noise σ (0–255)")
    left.set_ylabel("blur width (pixels)")
    left.set_title("ΔPSNR = PSNR(bias-free) − PSNR(bias), dB")
    fig.colorbar(image, ax=left)

    psnr_in = np.array(grid["psnr_in"])[row]
    for key, color, label in (
        ("bias", "tab:red", "with bias"),
        ("bias_free", "tab:blue", "bias-free"),
    ):
        right.plot(psnr_in, np.array(grid["psnr"][key])[row], "o-", color=color, label=label)
    right.plot(psnr_in, psnr_in, "k--", lw=1, label="identity")
    if training.get("sigma_range_255"):
        hi = training["sigma_range_255"][1]
        inside = sigmas <= hi
        if inside.any():
            right.axvspan(psnr_in[inside].min(), psnr_in.max(), color="tab:blue", alpha=0.1)
    right.set_xlabel("input PSNR (dB)")
    right.set_ylabel("output PSNR (dB)")
    right.set_title(f"blur width {slice_blur:g}: training noise range shaded")
    right.legend()
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120), suffix=path.suffix)
    plt.close(fig)
    return path


def _half_step(values: np.ndarray) -> float:
    return float(np.diff(values).min()) / 2 if len(values) > 1 else 0.5


@dataclass(frozen=True)
class RestorationOptions:
    """The grid and outputs of :func:`run_restoration_experiment` (every field optional).

    Attributes
    ----------
    sigmas_255, blurs : sequence of float
        Noise levels (0-255 scale) and Gaussian blur widths (pixels) of the grid.
    test_images : int or None
        Use only the first ``test_images`` images of the test folder.
    slice_blur : float
        The blur width of the figure's right panel; one of ``blurs``.
    overwrite : bool
        Replace an earlier ``restoration.json`` / ``restoration.png``.
    progress : bool
        Progress bar on stderr.
    device : str or None
        As in :func:`restoration_grid`.
    """

    sigmas_255: Sequence[float] = DEFAULT_SIGMAS
    blurs: Sequence[float] = DEFAULT_BLURS
    test_images: int | None = None
    slice_blur: float = 2.0
    overwrite: bool = False
    progress: bool = True
    device: str | None = None


def run_restoration_experiment(
    bias_model: str,
    bias_free_model: str,
    test_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: RestorationOptions | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Grid evaluation, ``restoration.json`` and ``restoration.png`` in ``out_dir``.

    ``options`` (:class:`RestorationOptions`), or its fields by keyword, set the grid.
    """
    options = merge_options(RestorationOptions, options, settings)
    sigmas_255, blurs, test_images = options.sigmas_255, options.blurs, options.test_images
    slice_blur, overwrite = options.slice_blur, options.overwrite
    progress, device = options.progress, options.device
    import json

    if device is not None:
        resolve_device(device)  # an unknown or absent device: refused before the folder
    if slice_blur not in [float(b) for b in blurs]:
        raise InputError(f"slice_blur {slice_blur:g} is not one of the blur widths {list(blurs)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is a file; give a folder for the results")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "restoration.json", out_dir / "restoration.png"
    try:
        check_output_paths(
            {"json": json_path, "plot": png_path}, overwrite=overwrite, figures=("plot",)
        )
        grid = restoration_grid(
            bias_model,
            bias_free_model,
            test_dir,
            sigmas_255=sigmas_255,
            blurs=blurs,
            test_images=test_images,
            progress=progress,
            device=device,
        )
    except BaseException:
        # a refused, failed or interrupted run leaves no folder of its own behind
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(grid, indent=2) + "\n"))
    plot_restoration(grid, png_path, slice_blur=float(slice_blur))
    return grid


def format_grid(grid: dict[str, Any]) -> str:
    """ΔPSNR table: one row per blur width, one column per noise level."""
    header = "blur\\sigma " + " ".join(f"{s:>6g}" for s in grid["sigmas_255"])
    lines = ["PSNR(bias-free) - PSNR(bias), dB", header]
    for blur, row in zip(grid["blurs"], grid["delta_psnr"], strict=True):
        lines.append(f"{blur:>10g} " + " ".join(f"{v:>6.2f}" for v in row))
    return "\n".join(lines)


__all__ = [
    "RestorationOptions",
    "format_grid",
    "plot_restoration",
    "restoration_grid",
    "run_restoration_experiment",
]
