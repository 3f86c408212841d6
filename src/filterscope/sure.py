"""Stein's unbiased risk estimate with a Monte-Carlo divergence: one implementation for
every denoiser that picks its own stopping point (NTK/NLM twicing, the deep image prior).

For a denoiser ``f`` and ``y = x + σ n`` with ``n`` standard normal (``n`` = number of
entries of ``y``),

    ``SURE = ‖y − f(y)‖²/n − σ² + 2σ² div f(y)/n``

is an unbiased estimate of the per-entry MSE ``‖f(y) − x‖²/n``. The divergence
``Σ_i ∂f_i/∂y_i`` is estimated with one Gaussian probe ``b`` (Ramani, Blu & Unser 2008):
``div ≈ bᵀ(f(y + εb) − f(y))/ε``. The probe is drawn from :data:`PROBE_SEED` (plus the
caller's seed), an odd constant, so that it is never the noise's own stream: a probe
equal to the noise direction biases the estimate.

σ is on the image scale (25/255).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .errors import InputError

PROBE_SEED = 0x5EED1


def check_sigma(sigma, *, allow_zero: bool = False) -> None:
    """Refuse a missing, NaN, infinite, non-numeric or non-positive ``sigma`` (zero when
    allowed)."""
    if sigma is None:
        raise InputError("SURE needs the noise level sigma")
    numeric = isinstance(sigma, (int, float)) and not isinstance(sigma, bool)
    if not numeric or not math.isfinite(sigma) or (sigma < 0 if allow_zero else sigma <= 0):
        raise InputError(f"sigma must be {'>= 0' if allow_zero else 'positive'}, got {sigma}")


def default_epsilon(sigma: float) -> float:
    """Finite-difference step of the divergence for noise level ``sigma``: ``max(σ/5, 1e-4)``.

    Small against σ (the divergence is a first-order quantity), but not too small: Adam
    trajectories amplify tiny differences between the two runs (on 48×48 and 96×96 crops
    of House, ε = σ/25 gave erratic divergences after a few hundred steps, σ/10 to σ/4
    did not). Far above float32 round-off either way.
    """
    return max(sigma / 5.0, 1e-4)


def draw_probe(shape, *, generator: int | torch.Generator | None = PROBE_SEED) -> torch.Tensor:
    """The Gaussian probe ``b``: standard normal, float64, of the given shape."""
    from .noise import _generator

    return torch.randn(tuple(shape), generator=_generator(generator), dtype=torch.float64)


def probe_divergence(
    probe: torch.Tensor, perturbed: torch.Tensor, output: torch.Tensor, epsilon: float
) -> float:
    """``bᵀ(f(y + εb) − f(y))/ε`` from the two outputs (summed in float64)."""
    return float((probe * (perturbed - output)).double().sum()) / epsilon


def sure_estimate(residual_mse, divergence, *, sigma: float, num_entries: int):
    """``SURE = ‖y − z‖²/n − σ² + 2σ² div/n``, the per-entry MSE estimate.

    ``residual_mse`` is ``‖y − z‖²/n`` and ``divergence`` the divergence estimate, floats
    or tensors of candidates alike; ``sigma`` on the image scale.
    """
    return residual_mse - sigma**2 + 2.0 * sigma**2 * divergence / num_entries


def monte_carlo_sure(
    denoiser: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    *,
    sigma: float,
    epsilon: float | None = None,
    generator: int | torch.Generator | None = PROBE_SEED,
) -> dict:
    """Monte-Carlo SURE of any denoiser ``y ↦ f(y)`` with one random probe.

    Parameters
    ----------
    denoiser : callable
        Maps a tensor shaped like ``y`` to an estimate of the same shape.
    y : Tensor, any shape
        Noisy image, image scale.
    sigma : float, keyword-only
        Noise standard deviation, image scale (> 0).
    epsilon : float, keyword-only
        Finite-difference step (default :func:`default_epsilon`, ``σ/5``).
    generator : int or torch.Generator, keyword-only
        Seed of the Gaussian probe ``b``.

    Returns
    -------
    dict
        ``sure`` (per-entry MSE estimate), ``divergence`` (``bᵀ(f(y + εb) − f(y))/ε``,
        an unbiased estimate of ``Σ_i ∂f_i/∂y_i`` for small ``ε``), ``x_hat``.

    Notes
    -----
    Two calls of ``denoiser``. For a linear ``f(y) = A y`` the divergence estimate is
    ``bᵀAb`` whatever ``ε``: mean ``tr(A)``, standard deviation ``√2 ‖A_sym‖_F``.
    """
    check_sigma(sigma)
    eps = default_epsilon(sigma) if epsilon is None else float(epsilon)
    probe = draw_probe(y.shape, generator=generator).to(y.device, y.dtype)
    x_hat = denoiser(y)
    divergence = probe_divergence(probe, denoiser(y + eps * probe), x_hat, eps)
    residual = float((y - x_hat).double().pow(2).mean())
    return {
        "sure": sure_estimate(residual, divergence, sigma=sigma, num_entries=y.numel()),
        "divergence": divergence,
        "x_hat": x_hat,
    }


__all__ = [
    "PROBE_SEED",
    "check_sigma",
    "default_epsilon",
    "draw_probe",
    "monte_carlo_sure",
    "probe_divergence",
    "sure_estimate",
]
