"""Plug-and-play deblurring: a denoiser used as the prior of half-quadratic splitting.

The algorithm is DPIR's (K. Zhang, Y. Li, W. Zuo, L. Zhang, L. Van Gool, R. Timofte,
"Plug-and-play image restoration with deep denoiser prior", IEEE TPAMI 44(10), 2022,
Section 4 and Eq. (6)-(8)), written here from the paper. To recover ``x`` from
``y = k ⊛ x + n`` (blur ``k``, white Gaussian noise of standard deviation ``σ_n``),
half-quadratic splitting alternates, for ``k = 1 … K``:

- a data step, ``x_k = argmin_x ‖k ⊛ x − y‖² + μ_k ‖x − z_{k−1}‖²``, solved exactly in
  the Fourier domain for a circular convolution;
- a prior step, ``z_k = D(x_k, σ_k)``: the denoiser removes noise of level ``σ_k``.

The schedule is DPIR's: ``σ_k`` log-spaced from 49/255 down to ``σ_n`` over ``K = 8``
iterations, and ``μ_k = λ σ_n² / σ_k²`` with ``λ = 0.23`` (the paper's value for
deblurring), so the data term weighs little while the denoiser is strong and more as
``σ_k`` reaches the true noise level. ``z_0 = y``; the result is ``z_K``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..blur import gaussian_kernel1d
from ..errors import InputError

#: DPIR's settings for deblurring (TPAMI 2022, Section 4).
DPIR_ITERATIONS = 8
DPIR_SIGMA_START = 49.0 / 255.0
DPIR_LAMBDA = 0.23

DenoiserFn = Callable[[torch.Tensor, float], torch.Tensor]


def gaussian_blur_kernel(width: float) -> torch.Tensor:
    """The 2-D Gaussian blur kernel of standard deviation ``width`` pixels, float64.

    Shape ``(2 r + 1, 2 r + 1)`` with ``r = int(4 width + 0.5)`` (as
    :func:`filterscope.blur.gaussian_kernel1d`), summing to one.
    """
    line = gaussian_kernel1d(width)
    return torch.outer(line, line)


def _transfer_function(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The 2-D DFT (``(height, width // 2 + 1)``, complex) of the circular convolution
    by ``kernel``, whose centre pixel is taken as the origin."""
    kh, kw = kernel.shape
    if kh > height or kw > width:
        raise InputError(
            f"kernel: {kh}x{kw} is larger than the image ({height}x{width} pixels, rows x columns)"
        )
    padded = torch.zeros(height, width, dtype=torch.float64, device=kernel.device)
    padded[:kh, :kw] = kernel.to(torch.float64)
    # Move the kernel's centre to pixel (0, 0): the blur then shifts nothing.
    padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
    return torch.fft.rfft2(padded)


def circular_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``k ⊛ x``: every channel of ``x`` convolved circularly with ``kernel``.

    Parameters
    ----------
    x : Tensor
        ``(B, C, H, W)`` images.
    kernel : Tensor
        ``(kh, kw)`` kernel, odd sides, centred; at most the image size.

    Returns
    -------
    Tensor
        Same shape and dtype as ``x``; the image wraps around at its borders (the
        boundary condition of DPIR's FFT data step). Computed in float64 by FFT.
    """
    height, width = x.shape[-2:]
    otf = _transfer_function(kernel, height, width)
    spectrum = torch.fft.rfft2(x.to(torch.float64)) * otf
    return torch.fft.irfft2(spectrum, s=(height, width)).to(x.dtype)


def data_step(y: torch.Tensor, z: torch.Tensor, kernel: torch.Tensor, mu: float) -> torch.Tensor:
    """``argmin_x ‖k ⊛ x − y‖² + μ ‖x − z‖²`` for a circular convolution, exactly.

    The normal equations ``(Kᵀ K + μ I) x = Kᵀ y + μ z`` are diagonal in the Fourier
    basis: ``x = F⁻¹[(conj(F k) F y + μ F z) / (|F k|² + μ)]``.

    Parameters
    ----------
    y, z : Tensor
        ``(B, C, H, W)``: the observation and the point the solution is pulled to.
    kernel : Tensor
        ``(kh, kw)`` blur kernel.
    mu : float
        Weight of ``‖x − z‖²``, positive.

    Returns
    -------
    Tensor
        ``x``, shape and dtype of ``y``.
    """
    if not mu > 0:
        raise InputError(f"mu: must be positive, got {mu}")
    height, width = y.shape[-2:]
    otf = _transfer_function(kernel, height, width)
    numerator = otf.conj() * torch.fft.rfft2(y.to(torch.float64)) + mu * torch.fft.rfft2(
        z.to(torch.float64)
    )
    x = torch.fft.irfft2(numerator / (otf.abs() ** 2 + mu), s=(height, width))
    return x.to(y.dtype)


def dpir_schedule(
    noise_sigma: float,
    *,
    iterations: int = DPIR_ITERATIONS,
    sigma_start: float = DPIR_SIGMA_START,
    lam: float = DPIR_LAMBDA,
) -> tuple[list[float], list[float]]:
    """DPIR's denoiser levels ``σ_k`` and data weights ``μ_k`` (image scale).

    ``σ_k`` is log-spaced from ``sigma_start`` to ``noise_sigma`` in ``iterations``
    steps (a single step uses ``noise_sigma``); ``μ_k = lam · noise_sigma² / σ_k²``.
    """
    if not noise_sigma > 0:
        raise InputError(f"noise_sigma: must be positive, got {noise_sigma}")
    if iterations < 1:
        raise InputError(f"iterations: must be at least 1, got {iterations}")
    if not sigma_start > 0 or not lam > 0:
        raise InputError("sigma_start and lam: must be positive")
    if iterations == 1:
        sigmas = [noise_sigma]
    else:
        first, last = math.log(sigma_start), math.log(noise_sigma)
        sigmas = [
            math.exp(first + (last - first) * k / (iterations - 1)) for k in range(iterations)
        ]
    mus = [lam * noise_sigma**2 / sigma**2 for sigma in sigmas]
    return sigmas, mus


@torch.no_grad()
def hqs_deblur(
    denoiser: DenoiserFn,
    y: torch.Tensor,
    kernel: torch.Tensor,
    noise_sigma: float,
    *,
    iterations: int = DPIR_ITERATIONS,
    sigma_start: float = DPIR_SIGMA_START,
    lam: float = DPIR_LAMBDA,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Deblur ``y`` with ``denoiser`` as the prior, by DPIR's half-quadratic splitting.

    Parameters
    ----------
    denoiser : callable
        ``denoiser(x, sigma) -> x_hat`` on ``(B, C, H, W)`` tensors, σ on the image
        scale (the common :class:`~filterscope.models.Denoiser` interface: trained
        networks, BM3D, a blind model that ignores σ...).
    y : Tensor
        ``(B, C, H, W)`` blurred, noisy images in [0, 1] (not clipped).
    kernel : Tensor
        ``(kh, kw)`` blur kernel, centred, odd sides (see :func:`gaussian_blur_kernel`);
        the observation model is the circular convolution :func:`circular_blur`.
    noise_sigma : float
        Standard deviation of the noise in ``y`` (image scale, > 0).
    iterations, sigma_start, lam : keyword-only
        The schedule (:func:`dpir_schedule`); DPIR's values by default.
    callback : callable, keyword-only
        Called as ``callback(k, z_k)`` after each prior step (k from 1).

    Returns
    -------
    Tensor
        The estimate ``z_K``, shape and dtype of ``y``, not clipped.

    Notes
    -----
    Cost: ``iterations`` denoiser calls and as many pairs of FFTs of the image.
    """
    if y.dim() != 4:
        raise InputError(f"y: expected (B, C, H, W) images, got shape {tuple(y.shape)}")
    if kernel.dim() != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise InputError(f"kernel: expected a 2-D kernel with odd sides, got {tuple(kernel.shape)}")
    sigmas, mus = dpir_schedule(
        noise_sigma, iterations=iterations, sigma_start=sigma_start, lam=lam
    )
    z = y
    for k, (sigma, mu) in enumerate(zip(sigmas, mus, strict=True), start=1):
        x = data_step(y, z, kernel, mu)
        z = denoiser(x, sigma)
        if callback is not None:
            callback(k, z)
    return z
