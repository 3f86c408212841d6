"""Twicing with a fixed non-local filter, in its eigenbasis (equations 5–7).

Twicing ``z^{t+1} = z^t + W (y - z^t)``, ``z^0 = 0`` (equation 5; gradient descent on a
wide CNN, equation 9) has the closed form (equation 6)

    ``z^t = Σ_i (1 - (1 - λ_i)^t) (v_iᵀ y) v_i``

which is evaluated here for any real ``t ≥ 0`` (the filters are scaled so that
``0 ≤ λ_i ≤ 1``; the gains ``g_i(t) = 1 - (1 - λ_i)^t`` are then real and increase with
``t``). Colour images are filtered channel by channel with the same ``W`` (the NTK of a
network with ``C`` output channels is ``W ⊗ I_C``) and one ``t``.

Everything that depends on ``t`` is computed from the ``k`` coefficients ``v_iᵀ y``, so the
stopping rules cost ``O(k C)`` per candidate ``t``:

- oracle: the ``t`` of least ``‖z^t - x‖²`` (not clipped; the paper's "best PSNR").
- SURE (Stein's unbiased risk estimate, Ramani et al. 2008):
  ``‖y - z^t‖²/n - σ² + 2σ² tr(H_t)/n`` with ``tr(H_t) = C Σ_i g_i(t)`` and ``n = C d``.
  It is unbiased for a filter that does not depend on the noise; here ``W`` is computed
  from ``y`` itself, so the true divergence has an extra term
  ``Σ_j ∂(H_t(y) y)_j/∂y_j - tr(H_t)`` that is left out (Milanfar 2012's approximation,
  the same as equation 7's), and choosing ``t`` by minimising it adds a small selection
  bias. In practice the SURE choice is close to the oracle one (see the benchmark).
- equation 7: the bias/variance split ``Σ (1-λ)^{2t}(v_iᵀ x)² + σ² Σ g_i²`` of a fixed
  filter, exact in expectation over the noise when ``W`` is independent of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..sure import PROBE_SEED, check_sigma, draw_probe, sure_estimate
from .basis import FilterBasis, twicing_gains


def _as_cd(image: torch.Tensor, d: int) -> torch.Tensor:
    """``(C, H, W)``/``(1, C, H, W)``/``(H, W)`` → ``(d, C)`` float64."""
    t = image.detach().to("cpu", torch.float64)
    if t.dim() == 4:
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.shape[-2] * t.shape[-1] != d:
        raise InputError(f"image has {t.shape[-2] * t.shape[-1]} pixels, the filter {d}")
    return t.reshape(t.shape[0], d).T


def _project(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``vᵀ a`` for ``v`` ``(d, k)`` and a thin ``a`` ``(d, C)``, as ``(aᵀ v)ᵀ``.

    The same numbers; written so that BLAS streams ``v`` once (5-10x faster than a
    transposed thin product for large ``d``).
    """
    return (a.T.contiguous() @ v).T


def twicing(basis: FilterBasis, y: torch.Tensor, t: float) -> torch.Tensor:
    """``z^t`` of equation 6 for one image.

    Parameters
    ----------
    basis : FilterBasis
        The filter ``W``.
    y : Tensor, shape (C, H, W), (1, C, H, W) or (H, W)
        Noisy image.
    t : float
        Number of twicing steps, real ``≥ 0`` (``t = 1``: ``z = W y``).

    Returns
    -------
    Tensor, shape (C, H, W), float64

    Notes
    -----
    ``O(d k C)``.
    """
    if t < 0 or math.isnan(t):
        raise InputError(f"the number of twicing steps must be >= 0, got {t}")
    ycd = _as_cd(y, basis.d)
    rhs = ycd if basis.right is None else basis.right[:, None] * ycd
    coef = _project(basis.eigvecs, rhs)
    z = basis.eigvecs @ (twicing_gains(basis.eigvals, t)[:, None] * coef)
    if basis.left is not None:
        z = basis.left[:, None] * z
    return z.T.reshape(-1, *basis.shape)


def twicing_iterations(w: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    """Explicit twicing ``z^{t+1} = z^t + W (y - z^t)`` from ``z^0 = 0`` (equation 5).

    Reference implementation for small images: ``w`` is ``(d, d)``, ``y`` ``(C, H, W)``;
    returns ``z^steps`` with the shape of ``y``. ``O(steps · d² C)``.
    """
    ycd = _as_cd(y, w.shape[0])
    z = torch.zeros_like(ycd)
    for _ in range(int(steps)):
        z = z + w.to(torch.float64) @ (ycd - z)
    shape = y.shape[-2:]
    return z.T.reshape(-1, *shape)


@dataclass
class _Coefficients:
    """Projections of an image pair onto the basis, for the ``O(k)``-per-``t`` formulas."""

    c_y: torch.Tensor  # (k, C): V^T (right ⊙ y), the coefficients filtered
    n: int  # C·d entries
    channels: int
    y_sq: float
    metric: torch.Tensor | None  # V^T diag(left²) V (non-symmetric filters)
    proj_y: torch.Tensor  # V^T (left ⊙ y) (== c_y for symmetric filters)


def _coefficients(basis: FilterBasis, y: torch.Tensor) -> _Coefficients:
    ycd = _as_cd(y, basis.d)
    v = basis.eigvecs
    if basis.left is None:
        c = _project(v, ycd)
        return _Coefficients(c, ycd.numel(), ycd.shape[1], float(ycd.pow(2).sum()), None, c)
    c = _project(v, basis.right[:, None] * ycd)
    lv = basis.left[:, None] * v
    return _Coefficients(
        c, ycd.numel(), ycd.shape[1], float(ycd.pow(2).sum()), lv.T @ lv, _project(lv, ycd)
    )


def _distance_sq(co: _Coefficients, proj_a: torch.Tensor, a_sq: float, u: torch.Tensor):
    """``‖a - z‖²`` for ``z = left ⊙ V u``; ``u`` is ``(T, k, C)``."""
    cross = torch.einsum("kc,tkc->t", proj_a, u)
    if co.metric is None:
        quad = u.pow(2).sum((1, 2))
    else:
        quad = torch.einsum("tkc,kl,tlc->t", u, co.metric, u)
    return a_sq - 2 * cross + quad


def _grid(t) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64).reshape(-1)


def sure(basis: FilterBasis, y: torch.Tensor, t, *, sigma: float) -> torch.Tensor:
    """SURE estimate of the per-entry MSE of ``z^t`` (see the module notes).

    Parameters
    ----------
    basis : FilterBasis
    y : Tensor, shape (C, H, W)
    t : float or sequence of float
    sigma : float, keyword-only
        Noise standard deviation on the image scale (> 0).

    Returns
    -------
    Tensor, shape (T,)
    """
    check_sigma(sigma)
    co = _coefficients(basis, y)
    ts = _grid(t)
    g = twicing_gains(basis.eigvals, ts)
    u = g[:, :, None] * co.c_y[None]
    resid = _distance_sq(co, co.proj_y, co.y_sq, u)
    trace = co.channels * g.sum(1)
    return sure_estimate(resid / co.n, trace, sigma=sigma, num_entries=co.n)


def oracle_mse(basis: FilterBasis, y: torch.Tensor, x: torch.Tensor, t) -> torch.Tensor:
    """True per-entry MSE ``‖z^t - x‖² / n`` (not clipped), shape ``(T,)``."""
    co = _coefficients(basis, y)
    xcd = _as_cd(x, basis.d)
    proj_x = _project(basis.eigvecs, xcd if basis.left is None else basis.left[:, None] * xcd)
    ts = _grid(t)
    u = twicing_gains(basis.eigvals, ts)[:, :, None] * co.c_y[None]
    return _distance_sq(co, proj_x, float(xcd.pow(2).sum()), u) / co.n


def mse_estimate(basis: FilterBasis, x: torch.Tensor, t, *, sigma: float) -> dict:
    """Bias/variance MSE of a fixed filter, equation 7 (per entry).

    ``bias² = ‖(I - H_t) x‖²/n`` and ``variance = σ² ‖H_t‖_F² C / n``, with
    ``H_t = I - (I - W)^t``; for a symmetric filter these are
    ``Σ (1-λ_i)^{2t} (v_iᵀx)²`` (plus the energy of ``x`` outside the basis) and
    ``σ² Σ (1 - (1-λ_i)^t)²``. Exact in expectation over the noise when ``W`` does not
    depend on it.

    Returns
    -------
    dict of Tensor, shape (T,)
        ``bias2``, ``variance`` and ``mse`` (their sum).
    """
    check_sigma(sigma, allow_zero=True)
    co = _coefficients(basis, x)
    ts = _grid(t)
    g = twicing_gains(basis.eigvals, ts)
    u = g[:, :, None] * co.c_y[None]
    bias2 = _distance_sq(co, co.proj_y, co.y_sq, u) / co.n
    if basis.left is None:
        fro = g.pow(2).sum(1)
    else:
        rv = basis.right[:, None] * basis.eigvecs
        m_r = rv.T @ rv
        fro = torch.einsum("ti,ij,tj,ji->t", g, co.metric, g, m_r)
    variance = sigma**2 * co.channels * fro / co.n
    return {"bias2": bias2, "variance": variance, "mse": bias2 + variance}


def sure_monte_carlo(
    basis: FilterBasis,
    y: torch.Tensor,
    t,
    *,
    sigma: float,
    rebuild,
    epsilon: float = 1e-3,
    generator: int | torch.Generator | None = PROBE_SEED,
) -> torch.Tensor:
    """Monte-Carlo SURE (Ramani, Blu & Unser 2008) that includes the filter's dependence on y.

    The divergence of ``y ↦ z^t(y)`` — with ``W`` recomputed from its input — is estimated
    as ``bᵀ (z^t(y + εb) - z^t(y)) / ε`` for one Gaussian probe ``b``; ``rebuild(y')``
    must return the basis of the perturbed image computed the same way (same columns).
    One extra basis computation serves every ``t``. The probe's default seed is an odd
    constant so that it is not the seed of the noise itself (a probe equal to the noise
    direction biases the estimate).

    Returns
    -------
    Tensor, shape (T,)
        Per-entry MSE estimates.
    """
    check_sigma(sigma)
    ts = _grid(t)
    probe = draw_probe(_as_cd(y, basis.d).T.shape, generator=generator)
    probe = probe.reshape(-1, *basis.shape)
    y_pert = y.to(torch.float64).reshape(-1, *basis.shape) + epsilon * probe
    other = rebuild(y_pert)
    co = _coefficients(basis, y)
    g = twicing_gains(basis.eigvals, ts)
    u = g[:, :, None] * co.c_y[None]
    resid = _distance_sq(co, co.proj_y, co.y_sq, u)
    div = (_probe_dot(other, y_pert, probe, ts) - _probe_dot(basis, y, probe, ts)) / epsilon
    return sure_estimate(resid / co.n, div, sigma=sigma, num_entries=co.n)


def _probe_dot(basis: FilterBasis, y: torch.Tensor, probe: torch.Tensor, ts) -> torch.Tensor:
    """``bᵀ z^t(y)`` for every ``t``."""
    co = _coefficients(basis, y)
    pcd = _as_cd(probe, basis.d)
    pb = _project(basis.eigvecs, pcd if basis.left is None else basis.left[:, None] * pcd)
    g = twicing_gains(basis.eigvals, ts)
    return torch.einsum("kc,tk,kc->t", pb, g, co.c_y)


def t_candidates(basis: FilterBasis, *, num: int = 400) -> torch.Tensor:
    """Log-spaced ``t`` from ``10⁻²`` to the time at which the smallest kept eigenvalue's
    component is fit (``30/λ_min``, capped at ``10¹²``)."""
    lam_min = float(basis.eigvals[basis.eigvals > 0].min())
    t_max = min(1e12, max(10.0, 30.0 / lam_min))
    return torch.logspace(-2, math.log10(t_max), num, dtype=torch.float64)


def select_steps(
    basis: FilterBasis,
    y: torch.Tensor,
    *,
    stop: str | float = "sure",
    sigma: float | None = None,
    clean: torch.Tensor | None = None,
    rebuild=None,
) -> tuple[float, dict]:
    """Choose the number of twicing steps ``t``.

    Parameters
    ----------
    basis : FilterBasis
    y : Tensor, shape (C, H, W)
    stop : {"sure", "sure-trace", "oracle"} or float, keyword-only
        ``"oracle"`` needs ``clean``; the SURE rules need ``sigma``; a number is used as
        is. ``"sure"`` is the Monte-Carlo SURE of :func:`sure_monte_carlo` when
        ``rebuild`` is given (recommended), otherwise the fixed-filter trace SURE
        (``"sure-trace"``, :func:`sure`).
    sigma : float, keyword-only
        Image-scale noise level.
    clean : Tensor, shape (C, H, W), keyword-only
    rebuild : callable, keyword-only
        ``rebuild(y') -> FilterBasis``: the same filter computed from another image.

    Returns
    -------
    t : float
    info : dict
        ``stop``, ``t``, the criterion's value (``sure_mse`` or ``oracle_mse``).

    Notes
    -----
    A 400-point log grid, then a golden-section refinement in ``log t`` around the best
    grid point; ``O(400 k C)``.
    """
    if not isinstance(stop, str):
        t = float(stop)
        if t < 0 or math.isnan(t):
            raise InputError(f"the number of twicing steps must be >= 0, got {stop}")
        return t, {"stop": "steps", "t": t}
    co = _coefficients(basis, y)
    if stop == "oracle":
        if clean is None:
            raise InputError("oracle stopping needs the clean image")
        xcd = _as_cd(clean, basis.d)
        proj_x = _project(basis.eigvecs, xcd if basis.left is None else basis.left[:, None] * xcd)
        x_sq = float(xcd.pow(2).sum())

        def objective(ts):
            u = twicing_gains(basis.eigvals, _grid(ts))[:, :, None] * co.c_y[None]
            return _distance_sq(co, proj_x, x_sq, u) / co.n

    elif stop in ("sure", "sure-trace"):
        check_sigma(sigma)
        divergence = None
        if stop == "sure" and rebuild is not None:
            grid = t_candidates(basis)
            mc = sure_monte_carlo(basis, y, grid, sigma=sigma, rebuild=rebuild)
            g = twicing_gains(basis.eigvals, grid)
            u = g[:, :, None] * co.c_y[None]
            resid = _distance_sq(co, co.proj_y, co.y_sq, u)
            # the divergence behind each Monte-Carlo SURE value, interpolated below
            divergence = (mc * co.n - resid + co.n * sigma**2) / (2 * sigma**2)
            log_grid = torch.log(grid)

        def objective(ts):
            ts = _grid(ts)
            g = twicing_gains(basis.eigvals, ts)
            u = g[:, :, None] * co.c_y[None]
            resid = _distance_sq(co, co.proj_y, co.y_sq, u)
            if divergence is None:
                div = co.channels * g.sum(1)
            else:  # interpolate the Monte-Carlo divergence in log t
                div = torch.from_numpy(
                    np.interp(torch.log(ts).numpy(), log_grid.numpy(), divergence.numpy())
                )
            return sure_estimate(resid / co.n, div, sigma=sigma, num_entries=co.n)

    else:
        raise InputError(
            f"stop must be 'sure', 'sure-trace', 'oracle' or a number of steps, got {stop!r}"
        )
    grid = t_candidates(basis)
    values = objective(grid)
    best = int(torch.argmin(values))
    lo = math.log(grid[max(best - 1, 0)])
    hi = math.log(grid[min(best + 1, grid.numel() - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a = hi - ratio * (hi - lo)
        b = lo + ratio * (hi - lo)
        fa, fb = objective([math.exp(a), math.exp(b)]).tolist()
        if fa < fb:
            hi = b
        else:
            lo = a
    t = math.exp(0.5 * (lo + hi))
    value = float(objective([t])[0])
    if value > float(values[best]):
        t, value = float(grid[best]), float(values[best])
    info = {"stop": stop, "t": t, "criterion_mse": value}
    if stop.startswith("sure"):
        info["sure"] = "trace" if divergence is None else "monte-carlo"
    return t, info
