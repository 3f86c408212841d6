"""The main job: denoise a built-in image blindly at a heavy noise level."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .devices import resolve_device
from .errors import InputError
from .inference import denoise_tensor, prepare_model
from .io import to_numpy, write_image
from .machine import AUTO, choose_precision
from .metrics import psnr, ssim
from .models.zoo import default_model_name, load_model
from .noise import add_noise


def builtin_image() -> np.ndarray:
    """scikit-image's bundled ``camera`` photograph (512×512 gray) as (H, W, 1) in [0, 1]."""
    from skimage import data

    return (data.camera().astype(np.float32) / 255.0)[:, :, None]


def run_demo(
    out_dir: str | Path,
    *,
    sigma_255: float = 90.0,
    model: str | None = None,
    seed: int = 0,
    precision: str | None = None,
    device: str | None = None,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Add Gaussian noise to the built-in image, denoise it blindly, save a comparison.

    Blindly: the model is not told σ (a network with a noise-level input runs in its
    blind mode).

    Parameters
    ----------
    out_dir : str or Path
        Folder for ``demo.png`` (clean | noisy | denoised, side by side); created if needed.
    sigma_255 : float, keyword-only
        Noise standard deviation on the 0–255 scale (default 90: heavy noise).
    model : str, keyword-only
        Shipped model name or checkpoint path (default: the shipped gray model).
    seed : int, keyword-only
        Seed of the noise.
    precision : {"auto", "float32", "bfloat16"} or None, keyword-only
        Arithmetic of the network; None or ``"auto"``: bfloat16 where ``device`` runs it
        natively (:func:`filterscope.machine.choose_precision`).
    device : str, keyword-only
        Torch device of the network, e.g. ``"cpu"`` or ``"cuda"`` (default: cuda if
        available, else cpu).

    Returns
    -------
    dict
        ``model``, ``sigma``, ``psnr_in``, ``psnr_out``, ``ssim_in``, ``ssim_out``,
        ``image``, ``precision`` (the one taken).
    """
    target = resolve_device(device)  # before the folder is made: a bad device leaves none
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"out_dir: {out_dir} is a file, not a folder")
    name = model or default_model_name(1)
    chosen = choose_precision("demo", target, requested=precision or AUTO)
    network = prepare_model(load_model(name), precision=chosen).to(target)
    out_dir.mkdir(parents=True, exist_ok=True)  # after the model: a bad one leaves no folder
    clean = torch.from_numpy(builtin_image()).permute(2, 0, 1)[None]
    noisy = add_noise(clean, sigma_255 / 255.0, generator=seed)
    estimate = denoise_tensor(network, noisy)
    panel = torch.cat([clean, noisy.clamp(0, 1), estimate.clamp(0, 1)], dim=3)
    image_path = write_image(out_dir / "demo.png", to_numpy(panel), overwrite=overwrite)
    return {
        "model": name,
        "sigma": sigma_255,
        "psnr_in": float(psnr(noisy, clean)[0]),
        "psnr_out": float(psnr(estimate, clean)[0]),
        "ssim_in": float(ssim(noisy, clean)[0]),
        "ssim_out": float(ssim(estimate, clean)[0]),
        "image": str(image_path),
        "precision": chosen,
    }
