"""The ``filterscope ntk`` operations as library calls that return what the command writes.

- :func:`denoise_image`: :func:`~filterscope.ntk.denoiser.denoise` with the default
  stopping rule, PSNR against a clean image, and a :class:`DenoiseResult` with
  ``to_json()`` and ``summary()``.
- :func:`filter_rows`: rows of the filter ``W`` (or of the twicing filter ``H_t``) at
  chosen pixels (Figure 2).
- :func:`save_eigenimages`, :func:`basis_report`: the leading eigenimages of a filter
  as files (Figure 1) and its summary for JSON.

σ is on the image scale in the arguments, on 0–255 in ``to_json()``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .basis import FilterBasis, pixel_indices
from .denoiser import DEFAULT_COLUMNS, denoise, filter_basis
from .kernels import MAX_MATRIX_PIXELS, as_image


def nystrom_error_text(info: dict) -> str:
    """``"; Nyström error ..."`` for a summary line, or ``""`` without an error report."""
    error = info.get("nystrom_error")
    if error is None:
        return ""
    return (
        f"; Nyström error {error['relative_frobenius']:.3g} (relative Frobenius, "
        f"{error['num_test']} exact columns)"
    )


@dataclass
class DenoiseResult:
    """Result of :func:`denoise_image`.

    Attributes
    ----------
    x_hat : Tensor, shape (C, H, W), float64, not clipped
    info : dict
        What :func:`~filterscope.ntk.denoiser.denoise` reports (``t``, ``stop``, ``rank``,
        timings; ``tiles`` for a tiled image; ``nystrom_error`` when asked).
    sigma : float or None
        Noise level, image scale.
    method : str
    psnr : float or None
        Against the clean image, when one was given.
    """

    x_hat: torch.Tensor
    info: dict
    sigma: float | None
    method: str
    psnr: float | None = None

    def to_json(self) -> dict[str, Any]:
        report = {
            "sigma_255": None if self.sigma is None else self.sigma * 255.0,
            "method": self.method,
            **{k: v for k, v in self.info.items() if isinstance(v, (int, float, str)) or v is None},
        }
        for key in ("tile_t", "nystrom_error"):
            if key in self.info:
                report[key] = self.info[key]
        if self.psnr is not None:
            report["psnr"] = self.psnr
        return report

    def summary(self) -> str:
        info = self.info
        tiles = f", {info['tiles']} tiles of {info['tile']} px" if "tiles" in info else ""
        psnr = f", PSNR {self.psnr:.2f} dB" if self.psnr is not None else ""
        return (
            f"t = {info['t']:.4g}, stop {info['stop']}, rank {info['rank']}{tiles}, "
            f"{info['seconds']:.1f} s{psnr}{nystrom_error_text(info)}"
        )


def denoise_image(
    y: torch.Tensor,
    *,
    sigma: float | None = None,
    clean: torch.Tensor | None = None,
    stop: str | float | None = None,
    method: str = "ntk",
    **options,
) -> DenoiseResult:
    """Denoise one image with the NTK or NLM filter and twicing.

    Parameters
    ----------
    y : Tensor, shape (C, H, W) or (1, C, H, W)
        Noisy image, image scale.
    sigma : float, keyword-only
        Noise level, image scale (SURE, NLM).
    clean : Tensor, keyword-only
        Clean image of the same shape: oracle stopping and PSNR.
    stop : {"sure", "sure-trace", "oracle"}, float or None, keyword-only
        None: ``"oracle"`` with a clean image, else ``"sure"``; a number: that many steps
        (at least 1).
    method : {"ntk", "nlm"}, keyword-only
    **options
        Passed to :func:`~filterscope.ntk.denoiser.denoise` (filter options,
        ``max_bytes``). For NLM only ``kernel_size`` and ``padding`` of the architecture
        options apply (``depth``, ``output_kernel`` and ``input`` are dropped).

    Returns
    -------
    DenoiseResult
    """
    from ..metrics import psnr

    if stop is None:
        stop = "oracle" if clean is not None else "sure"
    if method == "nlm":
        for name in ("depth", "output_kernel", "input"):
            options.pop(name, None)
    x_hat, info = denoise(y, sigma=sigma, clean=clean, stop=stop, method=method, **options)
    score = None
    if clean is not None:
        score = float(psnr(x_hat[None].float(), as_image(clean)[None].float()))
    return DenoiseResult(x_hat, info, sigma, method, score)


def filter_rows(
    y: torch.Tensor,
    pixels: Sequence[tuple[int, int]],
    *,
    method: str = "ntk",
    sigma: float | None = None,
    columns: float = DEFAULT_COLUMNS,
    steps: float | None = None,
    **options,
) -> torch.Tensor:
    """Rows of the filter of ``y`` at chosen pixels, as images (Figure 2).

    Parameters
    ----------
    y : Tensor, shape (C, H, W) or (1, C, H, W)
        (Noisy) image, image scale.
    pixels : sequence of (x, y)
        Column and row of each pixel.
    method : {"ntk", "nlm"}, keyword-only
    sigma : float, keyword-only
        Noise level, image scale; NLM needs it (bandwidth ``h = σ/2``).
    columns : float, keyword-only
        Nyström column fraction in (0, 1]; 1 on images up to 64×64 pixels uses the full
        matrix.
    steps : float or None, keyword-only
        None: rows of ``W``; a number ``t``: rows of ``I - (I - W)^t``.
    **options
        Passed to :func:`~filterscope.ntk.denoiser.filter_basis`; for NLM only
        ``kernel_size`` and ``padding`` of the architecture options apply.

    Returns
    -------
    Tensor, shape (len(pixels), H, W), float64
    """
    x = as_image(y)
    _, height, width = x.shape
    if sigma is not None and not sigma > 0:
        raise InputError(f"sigma must be positive, got {sigma}")
    if method == "nlm" and sigma is None:
        raise InputError("the NLM filter needs sigma (its bandwidth is h = sigma/2)")
    if steps is not None and not steps >= 0:
        raise InputError(f"steps must be >= 0, got {steps}")
    pixel_indices(pixels, height, width)  # before the filter is computed
    if method == "nlm":
        for name in ("depth", "output_kernel", "input"):
            options.pop(name, None)
    full = columns == 1 and height * width <= MAX_MATRIX_PIXELS
    basis = filter_basis(
        x, method=method, sigma=sigma, columns=None if full else columns, **options
    )
    return basis.rows(pixels, t=steps)


def eigenimage_paths(out: str | os.PathLike, count: int) -> dict[str, Path]:
    """The files :func:`save_eigenimages` writes, by role: ``out`` and its eigenvalues
    (``<stem>_eigvals.npy``) for a ``.npy`` destination, else the PNGs in the folder
    (which may not exist yet). Refuses a missing parent folder and an existing file
    that is not ``.npy``."""
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: output folder does not exist")
    if out.suffix == ".npy":
        return {"eigenimages": out, "eigenvalues": out.with_name(out.stem + "_eigvals.npy")}
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; give a folder or a .npy file")
    return {f"eigenimage {i}": out / f"eigenimage_{i:02d}.png" for i in range(count)}


def save_eigenimages(basis: FilterBasis, out: str | os.PathLike, count: int) -> int:
    """Write the ``count`` leading eigenimages of ``basis`` (and how many were written).

    A ``.npy`` ``out`` gets the ``(n, H, W)`` float64 array and ``<stem>_eigvals.npy``
    the eigenvalues; any other ``out`` is a folder (made if missing) of 8-bit PNGs
    ``eigenimage_00.png``..., each scaled to ``0.5 ± 0.5`` by its largest magnitude.
    Existing files are replaced: check them first with :func:`eigenimage_paths`.
    """
    import numpy as np

    from ..io import write_image

    if count < 1:
        raise InputError(f"count must be at least 1, got {count}")
    images = basis.eigenimages(count).numpy()
    paths = eigenimage_paths(out, len(images))
    if "eigenvalues" in paths:
        np.save(paths["eigenimages"], images)
        np.save(paths["eigenvalues"], basis.eigvals[: len(images)].numpy())
        return len(images)
    Path(out).mkdir(parents=True, exist_ok=True)
    for img, path in zip(images, paths.values(), strict=True):
        span = max(abs(img.min()), abs(img.max())) or 1.0
        write_image(path, 0.5 + 0.5 * img / span, overwrite=True)
    return len(images)


def basis_report(basis: FilterBasis) -> dict[str, Any]:
    """Eigenvalues, how the filter was computed (columns, timings, Nyström error) and rank."""
    info = {k: v for k, v in basis.info.items() if isinstance(v, (int, float, str, dict))}
    return {"eigenvalues": basis.eigvals.tolist(), **info, "rank": basis.rank}
