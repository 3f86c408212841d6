"""Matrix-free analysis of full-size images: only Jacobian–vector products.

A 512×512 image has a 262144×262144 Jacobian (256 GiB in float32); it is never formed.
``A_y v`` is one forward-mode pass (``torch.func.jvp``), ``A_yᵀ u`` one backward pass
(``torch.func.vjp``), each costing about two forward passes of the network.

* :func:`estimate_effective_dim`: ``d = ‖A_y‖_F² = E‖A_y z‖²`` for probes with
  ``E[z zᵀ] = I`` (Hutchinson), with a Student-t confidence interval.
* :func:`top_singular_triplets`: leading singular values and vectors by a randomized
  block Krylov method (Musco & Musco 2015; block Lanczos with Rayleigh–Ritz).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from ..errors import InputError
from ._core import Function, as_function, as_image_batch, check_differentiable


def _t_quantile(confidence: float, dof: int) -> float:
    p = 0.5 + confidence / 2.0
    try:
        from scipy.stats import t

        return float(t.ppf(p, dof))
    except ImportError:  # pragma: no cover - scipy comes with scikit-image
        from statistics import NormalDist

        return NormalDist().inv_cdf(p)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def jvp_operator(function: Function, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``V (m, C, H, W) -> A_y V`` for a batch of tangents, batched with ``vmap``."""

    def single(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(function, (y,), (v[None],))[1][0]

    batched = torch.func.vmap(single)

    def apply(v: torch.Tensor) -> torch.Tensor:
        try:
            return batched(v)
        except Exception:  # an operation without a vmap rule
            return torch.stack([single(t) for t in v])

    return apply


def vjp_operator(function: Function, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``U (m, C, H, W) -> A_yᵀ U``; the forward pass is run once and kept (memory: the
    network's activations on ``y``)."""
    _, pullback = torch.func.vjp(function, y)

    def single(u: torch.Tensor) -> torch.Tensor:
        return pullback(u[None])[0][0]

    batched = torch.func.vmap(single)

    def apply(u: torch.Tensor) -> torch.Tensor:
        try:
            return batched(u)
        except Exception:
            return torch.stack([single(t) for t in u])

    return apply


def estimate_effective_dim(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    *,
    probes: int = 32,
    batch: int = 4,
    rtol: float | None = None,
    confidence: float = 0.95,
    distribution: str = "rademacher",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Effective dimensionality ``d = Σ s_i² = E‖A_y z‖²`` of a whole image, matrix-free.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        Noisy image, any size.
    probes : int, keyword-only
        Largest number of random probes (JVPs).
    batch : int, keyword-only
        Probes per batched forward-mode pass (memory: ~``batch`` activations).
    rtol : float or None, keyword-only
        Stop early, after at least 4 probes, once the interval's half-width is at most
        ``rtol · d``. None: always use ``probes``.
    confidence : float, keyword-only
        Level of the Student-t interval over the per-probe values.
    distribution : {"rademacher", "gaussian"}, keyword-only
        Probe entries: ±1 (lower variance: ``2 Σ_{i≠j} M_ij²`` with ``M = AᵀA``, against
        ``2‖M‖_F²``) or standard normal. Both are unbiased.
    seed : int, keyword-only
        Seed of the probes.
    dtype : torch.dtype, keyword-only
        Arithmetic of the JVPs (float32: round-off far below the statistical error);
        the statistics are float64.

    Returns
    -------
    dict
        ``effective_dim``, ``interval`` ``[lo, hi]``, ``std_error``, ``probes`` (used),
        ``confidence``, ``distribution``, ``samples`` (per-probe ``‖A z‖²``), ``pixels``
        (N) and ``seconds``.

    Notes
    -----
    Cost: ``probes`` JVPs, each about two forward passes on the whole image. For
    DnCNN the relative standard deviation of one Rademacher probe is ~``√(2/d)``, so a
    few probes already give ±5% once ``d`` is in the hundreds.
    """
    start = time.perf_counter()
    _check_positive_int("probes", probes)
    _check_positive_int("batch", batch)
    if distribution not in ("rademacher", "gaussian"):
        raise InputError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    y = as_image_batch(y, dtype=dtype)
    function = as_function(denoiser, dtype=dtype)
    check_differentiable(function, y)
    apply = jvp_operator(function, y)
    generator = torch.Generator().manual_seed(int(seed))
    samples: list[float] = []
    quantile = float("nan")
    while len(samples) < probes:
        m = min(batch, probes - len(samples))
        if distribution == "rademacher":
            z = torch.randint(0, 2, (m, *y.shape[1:]), generator=generator).to(dtype) * 2 - 1
        else:
            z = torch.randn((m, *y.shape[1:]), generator=generator, dtype=dtype)
        az = apply(z.to(y.device))
        samples.extend(az.to(torch.float64).flatten(1).pow(2).sum(1).tolist())
        if rtol is not None and len(samples) >= 4:
            values = torch.tensor(samples, dtype=torch.float64)
            quantile = _t_quantile(confidence, len(samples) - 1)
            half = quantile * float(values.std()) / math.sqrt(len(samples))
            if half <= rtol * float(values.mean()):
                break
    values = torch.tensor(samples, dtype=torch.float64)
    mean = float(values.mean())
    if len(samples) > 1:
        std_error = float(values.std()) / math.sqrt(len(samples))
        half = _t_quantile(confidence, len(samples) - 1) * std_error
    else:
        std_error, half = float("inf"), float("inf")
    return {
        "effective_dim": mean,
        "interval": [mean - half, mean + half],
        "std_error": std_error,
        "probes": len(samples),
        "confidence": confidence,
        "distribution": distribution,
        "samples": samples,
        "pixels": y.numel(),
        "seconds": time.perf_counter() - start,
    }


def _orthonormal(columns: torch.Tensor) -> torch.Tensor:
    q, _ = torch.linalg.qr(columns, mode="reduced")
    return q


def top_singular_triplets(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    k: int,
    *,
    oversample: int = 10,
    power_iters: int = 4,
    batch: int = 8,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leading ``k`` singular values and vectors of ``A_y``, from JVPs and VJPs only.

    Randomized block Krylov method (block Lanczos on ``AᵀA`` with full
    reorthogonalisation, Musco & Musco 2015): a random block ``Ω`` of
    ``l = k + oversample`` vectors, the orthonormal basis ``Z`` of
    ``[Ω, AᵀAΩ, ..., (AᵀA)^q Ω]`` (``q = power_iters``), then Rayleigh–Ritz: the SVD of
    ``A Z``. Singular values come out from below and converge much faster than with
    subspace iteration when they are clustered (the top of a denoiser's spectrum is).

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        Noisy image, any size.
    k : int
        Number of singular triplets.
    oversample : int, keyword-only
        Extra vectors in the subspace (accuracy).
    power_iters : int, keyword-only
        Power iterations (accuracy when singular values decay slowly).
    batch : int, keyword-only
        Vectors per batched JVP / VJP (memory).
    seed : int, keyword-only
        Seed of the starting block.
    dtype : torch.dtype, keyword-only
        Arithmetic of the products; orthogonalisation and the small SVD are float64.

    Returns
    -------
    u : Tensor, shape (k, C, H, W)
        Left singular vectors as images (unit norm).
    s : Tensor, shape (k,), float64
        Singular values, decreasing.
    v : Tensor, shape (k, C, H, W)
        Right singular vectors as images.

    Notes
    -----
    Cost: ``(power_iters + 1)·l`` JVPs and ``power_iters·l`` VJPs; memory
    ``2·(power_iters + 1)·l`` vectors of N float64 values (512×512, l = 20, q = 6: 0.6
    GiB) plus the network's activations on ``y`` (kept for the VJPs).
    """
    _check_positive_int("k", k)
    _check_positive_int("batch", batch)
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 0:
        raise InputError(f"oversample must be an integer >= 0, got {oversample!r}")
    if isinstance(power_iters, bool) or not isinstance(power_iters, int) or power_iters < 0:
        raise InputError(f"power_iters must be an integer >= 0, got {power_iters!r}")
    y = as_image_batch(y, dtype=dtype)
    shape = y.shape[1:]
    n = y.numel()
    if k > n:
        raise InputError(f"k = {k} exceeds the image's {n} pixels")
    width = min(k + oversample, n)
    function = as_function(denoiser, dtype=dtype)
    check_differentiable(function, y)
    jvp = jvp_operator(function, y)
    vjp = vjp_operator(function, y)

    def apply(op: Callable, columns: torch.Tensor) -> torch.Tensor:
        """``op`` on each column of an ``(N, m)`` float64 matrix, batched."""
        out = []
        for start in range(0, columns.shape[1], batch):
            block = columns[:, start : start + batch].T.reshape(-1, *shape).to(dtype)
            out.append(op(block).reshape(block.shape[0], n).to(torch.float64).T)
        return torch.cat(out, dim=1)

    generator = torch.Generator().manual_seed(int(seed))
    omega = torch.randn(n, width, generator=generator, dtype=torch.float64).to(y.device)
    blocks = [_orthonormal(omega)]  # orthonormal input-space Krylov blocks Z_j
    images = [apply(jvp, blocks[0])]  # A Z_j, exact
    for _ in range(power_iters):
        if sum(b.shape[1] for b in blocks) + width > n:
            break  # the Krylov space would exceed the whole space
        w = apply(vjp, images[-1])  # AᵀA Z_{j-1}
        basis = torch.cat(blocks, dim=1)
        for _ in range(2):  # block Gram-Schmidt, twice for stability
            w = w - basis @ (basis.T @ w)
        w = _orthonormal(w)
        blocks.append(w)
        images.append(apply(jvp, w))
    z = torch.cat(blocks, dim=1)  # (N, m), orthonormal
    az = torch.cat(images, dim=1)  # (N, m) = A Z
    u_small, s, vh_small = torch.linalg.svd(az, full_matrices=False)  # Rayleigh-Ritz
    u = u_small[:, :k].T.reshape(k, *shape)
    v = (z @ vh_small[:k].T).T.reshape(k, *shape)
    return u, s[:k], v
