"""Noise models. σ is on the image scale ([0, 1] images; 25/255 ≈ 0.098)."""

from __future__ import annotations

import math

import torch


def _generator(seed: int | torch.Generator | None) -> torch.Generator | None:
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


def gaussian_noise(
    shape: tuple[int, ...],
    sigma: float | torch.Tensor,
    *,
    generator: int | torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """I.i.d. zero-mean Gaussian noise of standard deviation ``sigma``.

    ``sigma`` may be a float or a tensor broadcastable to ``shape`` (one σ per image:
    shape ``(B, 1, 1, 1)``). The noise is drawn on the CPU from ``generator`` so it is
    the same on every machine for a given seed; ``device`` draws it on another device
    instead, from a generator of that device (GPU training).
    """
    noise = torch.randn(shape, generator=_generator(generator), dtype=dtype, device=device)
    return noise * sigma


def uniform_noise(
    shape: tuple[int, ...],
    sigma: float | torch.Tensor,
    *,
    generator: int | torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Zero-mean uniform noise with standard deviation ``sigma`` (half-width σ·√3)."""
    unit = torch.rand(shape, generator=_generator(generator), dtype=dtype, device=device)
    unit = unit * 2.0 - 1.0
    return unit * (sigma * math.sqrt(3.0))


NOISE_KINDS = {"gaussian": gaussian_noise, "uniform": uniform_noise}


def add_noise(
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    kind: str = "gaussian",
    generator: int | torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``y = x + n`` with noise of the given kind and standard deviation.

    The noisy image is not clipped to [0, 1] (the protocol of the papers).
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {sorted(NOISE_KINDS)}")
    noise = NOISE_KINDS[kind](tuple(x.shape), sigma, generator=generator, dtype=x.dtype)
    return x + noise.to(x.device)


def sample_sigmas(
    batch_size: int,
    sigma_range: tuple[float, float],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    power: float = 1.0,
) -> torch.Tensor:
    """One σ per image from ``sigma_range``; shape ``(B, 1, 1, 1)``.

    σ = lo + (hi − lo)·u^power with u uniform in [0, 1]: uniform for ``power`` = 1,
    denser toward ``lo`` above 1. Drawn on the CPU, or on ``device`` from a generator
    of that device.
    """
    lo, hi = sigma_range
    if lo < 0 or hi < lo:
        raise ValueError(f"sigma_range must satisfy 0 <= lo <= hi, got {sigma_range}")
    if not power > 0:
        raise ValueError(f"power must be positive, got {power}")
    u = torch.rand(batch_size, 1, 1, 1, generator=generator, device=device)
    if power != 1:
        u = u**power
    return lo + (hi - lo) * u
