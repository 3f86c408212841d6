"""Denoising with a non-local filter and twicing: the NTK of a CNN, or NLM (one code path).

:func:`filter_basis` computes the filter of one noisy image (NTK or NLM; Nyström or the
full matrix), :func:`denoise` adds the stopping rule and twicing, and
:class:`NonLocalFilterDenoiser` wraps both as a :class:`filterscope.models.base.Denoiser`
for the evaluation and analysis code. :class:`FixedFilter` is the linear map ``H_t``
obtained once the filter has been computed from ``y`` and ``t`` chosen: its Jacobian is
the matrix itself (the analysis view of Mohan et al.; ``H_t`` is symmetric for NTK filters).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from .._options import merge_options
from ..errors import InputError
from ..models.base import Denoised, Denoiser, per_image_sigmas
from .kernels import CNNKernel, ColumnEngine, as_image, kernel_matrix_spec
from .nlm import NLM_H_FACTOR, NLMAffinity
from .nystrom import (
    DEFAULT_PRECISION,
    FilterBasis,
    matrix_basis,
    nystrom_basis,
    nystrom_error,
    sample_columns,
)
from .tiling import DEFAULT_MAX_BYTES, choose_tile, denoise_in_tiles
from .twicing import select_steps, twicing, twicing_gains

METHODS = ("ntk", "nlm")
DEFAULT_COLUMNS = 0.02
# Leading eigenpairs kept: at σ = 25 rank 64 gave higher PSNR than 128, 256 and 512 on House
# (256², 28.56 vs 28.50 / 28.28 at 512) and F16 (512², 28.98 vs 28.89 / 28.65 / 28.46), and
# the product C U Λ^{-1/2} costs d·m·rank.
DEFAULT_RANK = 64


def _check_fraction(columns: float) -> None:
    if not isinstance(columns, (int, float)) or math.isnan(columns) or not 0 < columns <= 1:
        raise InputError(f"column fraction must be in (0, 1], got {columns}")


@dataclass(frozen=True)
class FilterOptions:
    """How :func:`filter_basis` builds a non-local filter (every field optional).

    Attributes
    ----------
    method : {"ntk", "nlm"}
        The CNN's neural tangent kernel (equations 11–16) or the NLM affinity (equation 4).
    depth, kernel_size, output_kernel, padding, input, kind : keyword-only
        Architecture of the NTK (see :class:`filterscope.ntk.kernels.CNNKernel`);
        ``kernel_size`` is the patch size for NLM.
    sigma : float
        Noise level (image scale); NLM's default bandwidth is ``h = σ/2``.
    h : float
        NLM bandwidth (overrides ``sigma``).
    normalize : {"max", "row", "sinkhorn", "none"} or None
        Default: ``"max"`` for the NTK (``η = 1/λ_max``), ``"row"`` for NLM.
    columns : float or None
        Fraction of pixels used as Nyström columns, in (0, 1]; None: the full matrix
        (small images only).
    rank : int or None
        Leading eigenpairs kept, of the Nyström core or of the full matrix (default
        :data:`DEFAULT_RANK` = 64; None: all above round-off). The low-rank filter is
        also a regulariser: at σ = 25 rank 64 denoised better than 128–512.
    seed : int
        Seed of the column positions.
    memory_budget : int
        Bytes per streamed block.
    precision : {"auto", "int8", "single", "double"}
        Arithmetic of the streamed Nyström product (see
        :func:`filterscope.ntk.nystrom.nystrom_basis`); ``"auto"`` (default): int8 only
        where this CPU multiplies int8 fast. The one taken is ``info["precision"]``
        (``"double"`` for the full matrix).
    error_columns : int
        If positive, the approximation-error report of a Nyström basis: that many exact
        columns at random pixels that are not Nyström columns, against the low-rank
        approximation
        (:func:`filterscope.ntk.nystrom.nystrom_error`, float64, so ``precision``'s
        rounding counts in it), stored as ``basis.info["nystrom_error"]``. Needs a
        symmetric normalisation (``"max"`` or ``"none"``). Cost: ``error_columns`` exact
        columns, small beside the basis itself.
    """

    method: str = "ntk"
    depth: int = 2
    kernel_size: int = 11
    output_kernel: int | None = 1
    padding: str = "circular"
    input: str = "image"
    kind: str = "ntk"
    sigma: float | None = None
    h: float | None = None
    normalize: str | None = None
    columns: float | None = DEFAULT_COLUMNS
    rank: int | None = DEFAULT_RANK
    seed: int = 0
    memory_budget: int = 512 * 2**20
    precision: str = DEFAULT_PRECISION
    error_columns: int = 0


def filter_basis(
    y: torch.Tensor,
    options: FilterOptions | None = None,
    **settings: Any,
) -> FilterBasis:
    """The non-local filter of one noisy image, as a :class:`FilterBasis`.

    Parameters
    ----------
    y : Tensor, shape (C, H, W), (1, C, H, W) or (H, W)
        Noisy image, image scale.
    options : FilterOptions, optional
        Affinity, its network, Nyström columns and rank... (:class:`FilterOptions`).
    **settings
        Fields of :class:`FilterOptions` by keyword; they replace those of ``options``.
    Returns
    -------
    FilterBasis
    """
    options = merge_options(FilterOptions, options, settings)
    h = options.h
    normalize = options.normalize
    if options.method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {options.method!r}")
    if options.rank is not None and (int(options.rank) != options.rank or options.rank < 1):
        raise InputError(f"rank must be a whole number >= 1 (or None), got {options.rank}")
    if int(options.error_columns) != options.error_columns or options.error_columns < 0:
        raise InputError(f"error_columns must be a whole number >= 0, got {options.error_columns}")
    x = as_image(y)
    _, hh, ww = x.shape
    if options.method == "ntk":
        spec = CNNKernel(
            options.depth,
            options.kernel_size,
            options.output_kernel,
            options.padding,
            options.kind,
            options.input,
        )
        spec.check_image(hh, ww)
        source = ColumnEngine(x, spec)
        normalize = normalize or "max"
    else:
        if h is None:
            if options.sigma is None or not options.sigma > 0:
                raise InputError("NLM needs a positive noise level sigma (or a bandwidth h)")
            h = NLM_H_FACTOR * options.sigma
        source = NLMAffinity(x, h, patch_size=options.kernel_size, padding=options.padding)
        normalize = normalize or "row"
    if options.error_columns and normalize not in ("max", "none"):
        raise InputError(
            f"the Nyström error report needs a symmetric filter (normalize max or none), "
            f"not {normalize!r}"
        )
    start = time.perf_counter()
    if options.columns is None:
        if options.method == "ntk":
            matrix = kernel_matrix_spec(x, spec)
        else:
            matrix = source.matrix()
        basis = matrix_basis(matrix, (hh, ww), normalize=normalize, rank=options.rank)
    else:
        _check_fraction(options.columns)
        cols = sample_columns(hh * ww, options.columns, generator=options.seed)
        basis = nystrom_basis(
            source,
            cols,
            normalize=normalize,
            rank=options.rank,
            memory_budget=options.memory_budget,
            precision=options.precision,
        )
    basis.info.update(
        method=options.method, normalize=normalize, seconds=time.perf_counter() - start
    )
    if options.error_columns and options.columns is not None:
        basis.info["nystrom_error"] = nystrom_error(
            source,
            basis,
            num_test=int(options.error_columns),
            seen=cols,
            generator=options.seed + 1,
        )
    return basis


def denoise(
    y: torch.Tensor,
    *,
    sigma: float | None = None,
    clean: torch.Tensor | None = None,
    stop: str | float = "sure",
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    **filter_options,
) -> tuple[torch.Tensor, dict]:
    """Denoise one image with a non-local filter and twicing (equations 5–6).

    Parameters
    ----------
    y : Tensor, shape (C, H, W) or (1, C, H, W)
        Noisy image, image scale.
    sigma : float, keyword-only
        Noise level on the image scale (needed by SURE and by NLM).
    clean : Tensor, keyword-only
        Clean image of the same shape, for ``stop="oracle"``.
    stop : {"sure", "sure-trace", "oracle"} or float, keyword-only
        Stopping rule, or a fixed number of twicing steps ``t >= 1`` (1: plain filtering
        ``z = W y``). ``"sure"`` is the Monte-Carlo SURE, which recomputes the filter once
        for a perturbed image (about twice the cost).
    max_bytes : int or None, keyword-only
        Memory budget (default 4 GiB). An image whose filter would need more is denoised
        in overlapping tiles, each with its own filter and ``t``
        (:mod:`filterscope.ntk.tiling`); None: always the whole image.
    **filter_options
        Passed to :func:`filter_basis`.

    Returns
    -------
    x_hat : Tensor, shape (C, H, W), float64, not clipped
    info : dict
        ``t``, ``stop``, ``rank``, ``columns``, timings, and ``nystrom_error`` when
        ``error_columns`` was given (see :func:`filter_basis`); for a tiled image also
        ``tiles``, ``tile`` (side) and ``tile_t`` (see
        :func:`filterscope.ntk.tiling.denoise_in_tiles`).
    """
    start = time.perf_counter()
    x = as_image(y)
    if sigma is not None and (math.isnan(sigma) or sigma <= 0):
        raise InputError(f"sigma must be positive, got {sigma}")
    _check_steps(stop)
    if stop in ("sure", "sure-trace") and sigma is None:
        raise InputError("SURE stopping needs the noise level sigma")
    if stop == "oracle" and clean is None:
        raise InputError("oracle stopping needs the clean image (clean)")
    if clean is not None:
        clean = as_image(clean)
        if clean.shape != x.shape:
            raise InputError(
                f"clean has shape {tuple(clean.shape)}, the noisy image {tuple(x.shape)}"
            )
    channels, height, width = x.shape
    columns = filter_options.get("columns", DEFAULT_COLUMNS)
    tile = None
    if max_bytes is not None:
        tile = choose_tile(height, width, channels, columns=columns, max_bytes=max_bytes)
    if tile is None:
        x_hat, info = _denoise_whole(x, sigma, clean, stop, filter_options)
    else:

        def denoise_tile(part, where):
            part_clean = None if clean is None else clean[:, where[0], where[1]]
            return _denoise_whole(part, sigma, part_clean, stop, filter_options)

        x_hat, info = denoise_in_tiles(x, tile, denoise_tile)
    info["seconds"] = time.perf_counter() - start
    return x_hat, info


def _check_steps(stop: str | float) -> None:
    """Refuse a fixed number of twicing steps below 1 (``t = 0`` is the zero filter: a
    black image). The stopping rules still search ``t`` on their own grid."""
    if isinstance(stop, str):
        return
    try:
        t = float(stop)
    except (TypeError, ValueError):
        raise InputError(f"stop must be a rule or a number of steps, got {stop!r}") from None
    if not t >= 1:
        raise InputError(
            f"stop must be at least 1 twicing step (1: plain filtering; 0 steps would give "
            f"a black image), got {stop:g}"
        )


def _denoise_whole(x, sigma, clean, stop, filter_options) -> tuple[torch.Tensor, dict]:
    """:func:`denoise` of one image or tile with one filter."""
    start = time.perf_counter()

    def build(image):
        return filter_basis(image, sigma=sigma, **filter_options)

    basis = build(x)
    t, info = select_steps(basis, x, stop=stop, sigma=sigma, clean=clean, rebuild=build)
    x_hat = twicing(basis, x, t)
    info.update(
        rank=basis.rank,
        columns=basis.info.get("columns"),
        method=basis.info.get("method"),
        basis_seconds=basis.info.get("seconds"),
        precision=basis.info.get("precision", "double"),
        seconds=time.perf_counter() - start,
    )
    if "nystrom_error" in basis.info:
        info["nystrom_error"] = basis.info["nystrom_error"]
    return x_hat, info


class FixedFilter(Denoiser):
    """The linear map ``H_t = I - (I - W)^t`` of a filter computed once (``W`` held fixed).

    ``forward(y)`` applies ``H_t`` to every channel of a ``(B, C, H, W)`` batch; it is
    differentiable, and its Jacobian is :meth:`matrix` (per channel).
    """

    blind = True

    def __init__(self, basis: FilterBasis, t: float):
        super().__init__()
        self.basis = basis
        self.t = float(t)
        self.gains = twicing_gains(basis.eigvals, self.t)

    def matrix(self) -> torch.Tensor:
        """``H_t`` as a ``d × d`` float64 matrix (small images)."""
        b = self.basis
        h = (b.eigvecs * self.gains) @ b.eigvecs.T
        if b.left is not None:
            h = b.left[:, None] * h * b.right[None, :]
        return h

    def forward(self, y: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        b = self.basis
        bsz, c, hh, ww = y.shape
        flat = y.to(torch.float64).reshape(bsz * c, hh * ww).T
        if b.right is not None:
            flat = b.right[:, None] * flat
        z = b.eigvecs @ (self.gains[:, None] * (flat.T.contiguous() @ b.eigvecs).T)
        if b.left is not None:
            z = b.left[:, None] * z
        return z.T.reshape(bsz, c, hh, ww).to(y.dtype)


class NonLocalFilterDenoiser(Denoiser):
    """NTK or NLM non-local filtering with twicing, as a :class:`Denoiser`.

    Each image of the batch gets its own filter (computed from the image itself) and its
    own ``t``. ``blind`` is False for SURE stopping and for NLM (both need ``sigma``).

    Parameters
    ----------
    stop : {"sure", "sure-trace"} or float, keyword-only
        Stopping rule or a number of twicing steps (at least 1). Oracle stopping needs
        the clean image: use :func:`denoise` directly.
    **filter_options
        Passed to :func:`filter_basis` (``method``, ``depth``, ``kernel_size``,
        ``columns``...).

    :meth:`denoise_with_info` returns, with the estimate, what :func:`denoise`
    reported for each image (``t``, ``stop``, ``rank``, timings...).
    """

    #: The filter is built from the image without autograd: no Jacobian to analyse.
    differentiable = False

    def __init__(self, *, stop: str | float = "sure", **filter_options):
        super().__init__()
        if stop == "oracle":
            raise InputError("oracle stopping needs the clean image; call ntk.denoise()")
        _check_steps(stop)
        self.stop = stop
        self.filter_options = filter_options
        method = filter_options.get("method", "ntk")
        self.blind = not (isinstance(stop, str) or method == "nlm")

    def fixed_filter(self, y: torch.Tensor, sigma: float | None = None) -> FixedFilter:
        """The filter and ``t`` this denoiser would use for one image, frozen."""
        x = as_image(y)
        basis = filter_basis(x, sigma=sigma, **self.filter_options)
        t, _ = select_steps(
            basis,
            x,
            stop=self.stop,
            sigma=sigma,
            rebuild=lambda img: filter_basis(img, sigma=sigma, **self.filter_options),
        )
        return FixedFilter(basis, t)

    def forward(self, y: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        return self.denoise_with_info(y, sigma).x_hat

    def denoise_with_info(self, y: torch.Tensor, sigma=None, **kwargs) -> Denoised:
        """The estimate, and per image what :func:`denoise` reported (``t``, ``stop``...)."""
        if not self.blind:
            sigma = self.require_sigma(sigma)
        outs, infos = [], []
        for b, s in enumerate(per_image_sigmas(sigma, y.shape[0])):
            x_hat, info = denoise(y[b], sigma=s, stop=self.stop, **self.filter_options)
            outs.append(x_hat.to(y.dtype))
            infos.append(info)
        return Denoised(torch.stack(outs), infos)


def ntk_denoiser(**options) -> NonLocalFilterDenoiser:
    """:class:`NonLocalFilterDenoiser` with the NTK filter (defaults: Table 1's setting)."""
    return NonLocalFilterDenoiser(method="ntk", **options)


def nlm_denoiser(**options) -> NonLocalFilterDenoiser:
    """:class:`NonLocalFilterDenoiser` with the NLM affinity of equation 4."""
    options.setdefault("kernel_size", 7)
    return NonLocalFilterDenoiser(method="nlm", **options)
