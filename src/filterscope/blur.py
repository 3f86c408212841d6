"""Gaussian blur, the degradation of the restoration experiment (Mohan et al. 2020, Fig. 20).

A function for the math and nothing else: the training pipeline blurs clean patches
with a width drawn per patch, the evaluation blurs whole test images with one width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel1d(width: float, *, truncate: float = 4.0) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``width`` pixels, float64.

    Parameters
    ----------
    width : float
        Standard deviation in pixels; 0 gives the identity kernel ``[1.0]``.
    truncate : float, keyword-only
        The kernel extends ``int(truncate * width + 0.5)`` pixels each side (as
        SciPy's ``gaussian_filter``).

    Returns
    -------
    Tensor
        Shape ``(2 r + 1,)``, summing to one.
    """
    if width < 0 or not math.isfinite(width):
        raise ValueError(f"blur width must be a non-negative number, got {width}")
    if width == 0:
        return torch.ones(1, dtype=torch.float64)
    radius = max(1, int(truncate * width + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / width) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(x: torch.Tensor, width: float | torch.Tensor) -> torch.Tensor:
    """Blur every channel of ``x`` with a Gaussian of standard deviation ``width`` pixels.

    Parameters
    ----------
    x : Tensor
        ``(B, C, H, W)`` images.
    width : float or Tensor
        One width for the whole batch, or a ``(B,)`` tensor of widths (one per image,
        as drawn per training patch). Zero leaves an image unchanged.

    Returns
    -------
    Tensor
        Same shape and dtype as ``x``. Borders are reflected (``'reflect'`` padding;
        falls back to replicate padding where an image is smaller than the kernel
        radius), so the blur preserves the mean of constant images.

    Notes
    -----
    Separable: two 1-D convolutions, cost ``O(B C H W r)`` with ``r ≈ 4 width``.
    """
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(x.shape)}")
    if isinstance(width, torch.Tensor) and width.numel() > 1:
        widths = width.reshape(-1).tolist()
        if len(widths) != x.shape[0]:
            raise ValueError(f"{len(widths)} blur widths for a batch of {x.shape[0]}")
        return torch.cat([gaussian_blur(x[i : i + 1], w) for i, w in enumerate(widths)])
    width = float(width)
    kernel = gaussian_kernel1d(width).to(x.device, x.dtype)
    radius = (kernel.numel() - 1) // 2
    if radius == 0:
        return x.clone()
    channels = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    padded = F.pad(x, (radius, radius, radius, radius), mode=mode)
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    out = F.conv2d(padded, horizontal, groups=channels)
    return F.conv2d(out, vertical, groups=channels)


__all__ = ["gaussian_blur", "gaussian_kernel1d"]
