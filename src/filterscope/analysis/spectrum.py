"""SVD of the Jacobian of a patch: signal subspaces (Mohan et al. 2020, §6.2, Figs 5–7).

With ``A_y = U S Vᵀ``, a bias-free denoiser computes ``f(y) = Σ s_i (v_iᵀ y) u_i``. For
BF-CNNs most ``s_i`` are ~0: the network projects onto a *signal subspace* spanned by
the leading singular vectors, with ``u_i ≈ v_i`` inside it. Its effective dimension is
``d = Σ s_i² = E‖A_y n‖² / σ²`` and falls like ``1/σ``; the subspace holds most of the
clean image's energy, and subspaces at higher σ nest inside those at lower σ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InputError
from ..models.base import with_sigma
from ..noise import add_noise
from ._core import DEFAULT_MAX_BYTES, Function, as_image_batch
from .jacobian import dense_jacobian


def jacobian_svd(jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD ``J = U diag(S) Vh`` in float64, singular values in decreasing order.

    Cost ``O(N³)``: about 1 s for N = 1600 on two cores.
    """
    if jac.dim() != 2:
        raise InputError(f"expected a matrix, got shape {tuple(jac.shape)}")
    return torch.linalg.svd(jac.to(torch.float64), full_matrices=False)


def effective_dimension(singular_values: torch.Tensor) -> float:
    """``d = Σ s_i²`` (``‖A‖_F²``): the noise variance kept by ``A``, over ``σ²``."""
    return float(singular_values.to(torch.float64).pow(2).sum())


def signal_dimension(effective_dim: float, n: int) -> int:
    """Number of leading singular vectors taken as the signal subspace: ``round(d)``
    clamped to ``[1, n]`` (the paper's "singular vectors up to dimension d")."""
    return int(min(max(round(effective_dim), 1), n))


def singular_vector_cosines(u: torch.Tensor, vh: torch.Tensor, k: int) -> torch.Tensor:
    """``u_i · v_i`` for the ``k`` leading pairs (1 where the Jacobian is symmetric PSD).

    The sign of an SVD pair is arbitrary but shared by ``u_i`` and ``v_i``, so the sign
    of the cosine is meaningful.
    """
    return (u[:, :k] * vh[:k, :].T).sum(0)


def subspace_energy_fraction(x: torch.Tensor, basis: torch.Tensor) -> float:
    """``‖Bᵀx‖² / ‖x‖²`` for an orthonormal basis ``B`` (columns): energy of ``x`` inside."""
    x = x.reshape(-1).to(torch.float64)
    norm = float(x.pow(2).sum())
    if norm == 0:
        return float("nan")
    return float((basis.to(torch.float64).T @ x).pow(2).sum()) / norm


def nesting_fraction(inner: torch.Tensor, outer: torch.Tensor) -> float:
    """How much of subspace ``inner`` lies in subspace ``outer`` (orthonormal columns):
    ``‖outerᵀ inner‖_F² / k_inner`` — the mean squared norm of the projections of the
    inner axes, 1 when ``inner ⊂ outer``."""
    k = inner.shape[1]
    if k == 0:
        return float("nan")
    return float((outer.to(torch.float64).T @ inner.to(torch.float64)).pow(2).sum()) / k


def fit_inverse_sigma(sigmas: Sequence[float], dims: Sequence[float]) -> dict[str, float]:
    """Least-squares line through ``(log σ, log d)`` and the ``d ≈ α/σ`` fit.

    Parameters
    ----------
    sigmas : sequence of float
        Noise levels (any scale; ``alpha`` is on the same scale).
    dims : sequence of float
        Effective dimensions, > 0.

    Returns
    -------
    dict
        ``slope`` (−1 for ``d ∝ 1/σ``), ``intercept`` (of the log–log line) and
        ``alpha`` = geometric mean of ``d·σ`` (best ``α`` in log space for slope −1).
    """
    if len(sigmas) != len(dims) or len(sigmas) < 2:
        raise InputError("the 1/sigma fit needs at least two (sigma, d) pairs")
    ls = torch.tensor([math.log(s) for s in sigmas], dtype=torch.float64)
    ld = torch.tensor([math.log(max(d, 1e-300)) for d in dims], dtype=torch.float64)
    ls_c = ls - ls.mean()
    slope = float((ls_c * (ld - ld.mean())).sum() / ls_c.pow(2).sum())
    intercept = float(ld.mean() - slope * ls.mean())
    alpha = float(torch.exp((ld + ls).mean()))
    return {"slope": slope, "intercept": intercept, "alpha": alpha}


@dataclass
class PatchSpectrum:
    """SVD summary of ``A_y`` for one noisy patch.

    Attributes
    ----------
    sigma : float or None
        Noise level (image scale) used to make ``y``, if known.
    shape : (int, int, int)
        ``(C, H, W)`` of the patch.
    u, singular_values, vh : Tensor
        float64 SVD factors: ``(N, N)``, ``(N,)``, ``(N, N)``.
    effective_dim : float
        ``Σ s_i²``.
    signal_dim : int
        ``round(effective_dim)``, at least 1.
    cosines : Tensor, shape (signal_dim,)
        ``u_i · v_i`` in the signal subspace.
    clean_energy_fraction : float or None
        Energy of the clean patch inside the signal subspace (when it was given).
    """

    sigma: float | None
    shape: tuple[int, int, int]
    u: torch.Tensor = field(repr=False)
    singular_values: torch.Tensor = field(repr=False)
    vh: torch.Tensor = field(repr=False)
    effective_dim: float
    signal_dim: int
    cosines: torch.Tensor = field(repr=False)
    clean_energy_fraction: float | None

    @property
    def signal_basis(self) -> torch.Tensor:
        """Orthonormal basis of the signal subspace, ``(N, signal_dim)`` (left vectors)."""
        return self.u[:, : self.signal_dim]

    def singular_vector_images(self, indices: Sequence[int], *, left: bool = True) -> torch.Tensor:
        """Singular vectors as images, shape ``(len(indices), C, H, W)``."""
        vectors = self.u[:, list(indices)].T if left else self.vh[list(indices), :]
        return vectors.reshape(len(indices), *self.shape)

    def to_dict(self) -> dict:
        """JSON-ready summary (σ on the 0–255 scale)."""
        cos = self.cosines
        return {
            "sigma": None if self.sigma is None else self.sigma * 255.0,
            "singular_values": self.singular_values.tolist(),
            "effective_dim": self.effective_dim,
            "signal_dim": self.signal_dim,
            "clean_energy_fraction": self.clean_energy_fraction,
            "cosines": cos.tolist(),
            "cosine_mean": float(cos.mean()) if len(cos) else None,
            "cosine_min": float(cos.min()) if len(cos) else None,
            "top_singular_value": float(self.singular_values[0]),
            # Above 1 the map stretches some direction of the patch: not a contraction.
            "contraction": bool(self.singular_values[0] <= 1.0),
            "patch_dim": int(self.singular_values.numel()),
        }


def patch_spectrum(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    *,
    x: torch.Tensor | None = None,
    sigma: float | None = None,
    radius: int | str | None = "auto",
    chunk: int = 256,
    dtype: torch.dtype = torch.float32,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PatchSpectrum:
    """Full Jacobian of a noisy patch (as the network's whole input) and its SVD.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        Noisy patch; N = C·H·W should stay below a few thousand (N = 1600 for 40×40:
        a 1600×1600 Jacobian, ~10 s, and a 1 s SVD).
    x : Tensor or None, keyword-only
        Clean patch, for :attr:`PatchSpectrum.clean_energy_fraction`.
    sigma : float or None, keyword-only
        Noise level (image scale), only recorded.
    radius, chunk, dtype, max_bytes
        See :func:`~filterscope.analysis.jacobian.dense_jacobian`; the SVD is float64.

    Returns
    -------
    PatchSpectrum
    """
    y = as_image_batch(y, dtype=dtype)
    jac = dense_jacobian(denoiser, y, radius=radius, chunk=chunk, dtype=dtype, max_bytes=max_bytes)
    u, s, vh = jacobian_svd(jac)
    d = effective_dimension(s)
    k = signal_dimension(d, len(s))
    energy = None
    if x is not None:
        x = as_image_batch(x, dtype=torch.float64, name="x")
        if x.shape != y.shape:
            raise InputError(
                f"clean patch {tuple(x.shape)} and noisy patch {tuple(y.shape)} differ"
            )
        energy = subspace_energy_fraction(x, u[:, :k])
    return PatchSpectrum(
        sigma=sigma,
        shape=tuple(y.shape[1:]),
        u=u,
        singular_values=s,
        vh=vh,
        effective_dim=d,
        signal_dim=k,
        cosines=singular_vector_cosines(u, vh, k),
        clean_energy_fraction=energy,
    )


def patch_spectrum_in_image(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    box: tuple[int, int, int, int],
    *,
    x: torch.Tensor | None = None,
    sigma: float | None = None,
    dtype: torch.dtype = torch.float32,
    chunk: int = 64,
    should_stop: Callable[[], bool] | None = None,
) -> PatchSpectrum:
    """SVD of the Jacobian block of a patch *inside its image* (Mohan et al. 2020, §6.2).

    The block holds the rows and columns of the patch's pixels of the full-image
    Jacobian of the function ``denoise`` runs (:meth:`ExactRows.block`: the image around
    the patch is there, and a blind noise estimate is the whole image's). That is what
    the paper's analysis is about; denoising the patch as a tiny image
    (:func:`patch_spectrum`) agrees with it for DnCNN away from the patch's borders but
    not for a multi-scale network, which at 20×20 sees a 3×3 coarsest scale and
    estimates σ from 400 pixels.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser, called blind as ``denoise`` calls it.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        The noisy image.
    box : (top, left, height, width)
        The patch, in pixels.
    x : Tensor or None, keyword-only
        The clean *patch*, for :attr:`PatchSpectrum.clean_energy_fraction`.
    sigma : float or None, keyword-only
        Noise level (image scale), only recorded.
    dtype : torch.dtype, keyword-only
        Arithmetic of the Jacobian (float32: a DRUNet block is within ~2e-4 of float64);
        the SVD is float64.
    chunk : int, keyword-only
        Rows per batched backward pass.
    should_stop : callable or None, keyword-only
        Polled between layers; True ends the computation with
        :class:`~filterscope.analysis.jacobian.Cancelled`.

    Returns
    -------
    PatchSpectrum
        Its :meth:`~PatchSpectrum.to_dict` gives ``top_singular_value`` and
        ``contraction`` (whether the block shrinks every direction, ``s_1 <= 1``).

    Notes
    -----
    Cost: one forward pass on the patch grown by the receptive radius and ``N / chunk``
    batched backward passes (N = C·h·w); the shipped DRUNet on a 20×20 patch (a 240×240
    crop), float32, two cores: about a minute.
    """
    from .jacobian import ExactRows

    top, left, height, width = (int(v) for v in box)
    rows = ExactRows(denoiser, y, dtype=dtype)
    jac = rows.block(top, left, height, width, chunk=chunk, should_stop=should_stop)
    u, s, vh = jacobian_svd(jac)
    d = effective_dimension(s)
    k = signal_dimension(d, len(s))
    energy = None
    if x is not None:
        x = as_image_batch(x, dtype=torch.float64, name="x")
        if tuple(x.shape[1:]) != (rows.channels, height, width):
            raise InputError(f"clean patch {tuple(x.shape)} is not the {height}x{width} patch")
        energy = subspace_energy_fraction(x, u[:, :k])
    return PatchSpectrum(
        sigma=sigma,
        shape=(rows.channels, height, width),
        u=u,
        singular_values=s,
        vh=vh,
        effective_dim=d,
        signal_dim=k,
        cosines=singular_vector_cosines(u, vh, k),
        clean_energy_fraction=energy,
    )


def spectrum_vs_sigma(
    denoiser: nn.Module | Function,
    x: torch.Tensor,
    sigmas: Sequence[float],
    *,
    seed: int = 0,
    radius: int | str | None = "auto",
    chunk: int = 256,
    dtype: torch.dtype = torch.float32,
    max_bytes: int = DEFAULT_MAX_BYTES,
    box: tuple[int, int, int, int] | None = None,
) -> tuple[list[PatchSpectrum], dict]:
    """Spectra of one clean patch at several noise levels, their nesting and the 1/σ fit.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser.
    x : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        Clean patch in [0, 1].
    sigmas : sequence of float
        Noise levels on the image scale; the noisy patch at σ is ``x + σ·n`` with one
        standard normal ``n`` drawn from ``seed`` for all σ.
    seed : int, keyword-only
        Seed of ``n``.
    radius, chunk, dtype, max_bytes
        See :func:`patch_spectrum`.
    box : (top, left, height, width) or None, keyword-only
        With a box, ``x`` is the clean *image*: noise is added to all of it and each
        spectrum is of the patch's block inside the noisy image
        (:func:`patch_spectrum_in_image`), what the paper's analysis is about; None:
        ``x`` is the patch, denoised as a whole input (:func:`patch_spectrum`).

    Returns
    -------
    spectra : list of PatchSpectrum
        One per σ, in the given order.
    summary : dict
        ``nesting``: for each σ other than the smallest, the fraction of its signal
        subspace inside the smallest σ's (``reference_sigma``); ``fit``: the log–log fit
        of ``d`` against σ (0–255 scale), when there are at least two σ's.
    """
    if not sigmas:
        raise InputError("no noise level given")
    x = as_image_batch(x, dtype=torch.float64, name="x")
    spectra = []
    for sigma in sigmas:
        if sigma < 0:
            raise InputError(f"sigma must be >= 0, got {sigma * 255:g}")
        y = add_noise(x, float(sigma), generator=seed)
        if box is not None:
            top, left, height, width = box
            spectra.append(
                patch_spectrum_in_image(
                    with_sigma(denoiser, sigma),
                    y,
                    box,
                    x=x[:, :, top : top + height, left : left + width],
                    sigma=float(sigma),
                    dtype=dtype,
                )
            )
            continue
        spectra.append(
            patch_spectrum(
                with_sigma(denoiser, sigma),
                y,
                x=x,
                sigma=float(sigma),
                radius=radius,
                chunk=chunk,
                dtype=dtype,
                max_bytes=max_bytes,
            )
        )
    ref = min(range(len(spectra)), key=lambda i: spectra[i].sigma)
    nesting = [
        {
            "sigma": spectra[i].sigma * 255.0,
            "reference_sigma": spectra[ref].sigma * 255.0,
            "fraction": nesting_fraction(spectra[i].signal_basis, spectra[ref].signal_basis),
        }
        for i in range(len(spectra))
        if i != ref
    ]
    summary: dict = {"nesting": nesting}
    positive = [(s.sigma * 255.0, s.effective_dim) for s in spectra if s.sigma > 0]
    if len({p[0] for p in positive}) >= 2:
        summary["fit"] = fit_inverse_sigma([p[0] for p in positive], [p[1] for p in positive])
    return spectra, summary
