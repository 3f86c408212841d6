"""Image quality metrics, batch-wise, data range 1.

Both take ``(B, C, H, W)`` tensors with images in [0, 1] and return one value per
image (shape ``(B,)``). Estimates are clipped to [0, 1] first, the convention of
``published_metrics.json`` and of DESIGN.md; pass ``clip=False`` to skip that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import InputError


def _check_pair(x_hat: torch.Tensor, x: torch.Tensor) -> None:
    if x_hat.shape != x.shape or x.dim() != 4:
        raise ValueError(
            f"expected two (B, C, H, W) tensors of the same shape, got {tuple(x_hat.shape)} "
            f"and {tuple(x.shape)}"
        )


def psnr(x_hat: torch.Tensor, x: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, data range 1, one value per image.

    Computed in float64 so the mean over a test set is exact to well below 1e-4 dB.
    """
    _check_pair(x_hat, x)
    x_hat = x_hat.detach().double()
    x = x.detach().double()
    if clip:
        x_hat = x_hat.clamp(0.0, 1.0)
        x = x.clamp(0.0, 1.0)
    mse = (x_hat - x).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    *,
    clip: bool = True,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity, one value per image, averaged over channels.

    Follows ``skimage.metrics.structural_similarity`` with its defaults (uniform
    ``win_size`` window, sample covariances, the border of half a window left out of
    the mean), so values agree with scikit-image to round-off.

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment:
    from error visibility to structural similarity", IEEE TIP 13(4), 2004.
    """
    _check_pair(x_hat, x)
    if min(x.shape[-2:]) < win_size:
        raise InputError(
            f"images must be at least {win_size}x{win_size} for SSIM, got "
            f"{x.shape[-2]}x{x.shape[-1]}"
        )
    x_hat = x_hat.detach().double()
    x = x.detach().double()
    if clip:
        x_hat = x_hat.clamp(0.0, 1.0)
        x = x.clamp(0.0, 1.0)
    b, c, h, w = x.shape
    stacked = torch.stack([x_hat, x, x_hat * x_hat, x * x, x_hat * x], dim=2)
    stacked = stacked.reshape(b * c * 5, 1, h, w)
    # A uniform window is a box average: avg_pool2d is much faster than conv2d here.
    means = F.avg_pool2d(stacked, win_size, stride=1)
    means = means.reshape(b, c, 5, h - win_size + 1, w - win_size + 1)
    mu_a, mu_b, m_aa, m_bb, m_ab = means.unbind(2)
    n = win_size * win_size
    correction = n / (n - 1.0)
    var_a = correction * (m_aa - mu_a * mu_a)
    var_b = correction * (m_bb - mu_b * mu_b)
    cov = correction * (m_ab - mu_a * mu_b)
    c1 = k1**2
    c2 = k2**2
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return (numerator / denominator).flatten(1).mean(1)
