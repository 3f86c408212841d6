"""Eigendecomposition of a non-local filter: full matrix, or Nyström from a few columns.

A filter ``W`` (``d × d``, ``d`` pixels) is represented by its leading eigenpairs as a
:class:`FilterBasis`; twicing (:mod:`filterscope.ntk.twicing`) then works in that basis
(equation 6). For large images only ``m ≪ d`` columns at uniformly random pixels are
computed (Section 4.1; Williams & Seeger 2001; Talebi & Milanfar 2014) and

    ``W ≈ C W_JJ⁺ Cᵀ = F Fᵀ``,  ``F = C U_k Λ_k^{-1/2}``  (``d × k``)

with ``C = W[:, J]`` and ``W_JJ = U Λ Uᵀ`` truncated to its ``k`` leading eigenpairs; the
exact eigendecomposition of ``F Fᵀ`` follows from the small ``k × k`` matrix ``Fᵀ F``.
``C`` is never held whole: it is produced in blocks of rows (kernels whose entries depend
on two patches only: the one-hidden-layer 1×1-output NTK, NLM) or of columns (deeper
kernels), each multiplied into ``F`` and dropped, so memory is ``O(d k + block)``.
For pairwise kernels the blocks are formed in reduced precision: ``precision="int8"``
takes the NTK's patch correlations from exact int32 products of int8 patches (about
``1e-3`` absolute in ``ρ``; the core ``W_JJ`` is rounded the same way), ``"single"``
from float32 products (about ``1e-6`` relative; the core stays float64); NLM blocks are
always float32. int8 products are 3.5 times faster than float32 on a CPU with VNNI or
AMX but 15-30 times slower on one without (``torch._int_mm`` then has no fast kernel),
so the default ``"auto"`` takes int8 only where it is fast
(:func:`filterscope.machine.choose_int8`), else ``"single"``. The leading
eigenpairs of ``W_JJ`` come from a randomized eigensolver when ``k ≪ m``
(:func:`leading_eigh`). Cost for the one-hidden-layer 11×11 NTK of a 512×512 colour
image at 2% columns: ``d · m · 363 ≈ 5·10¹¹`` multiply-adds for ``C`` (the bulk),
``d · m`` arc-cosine evaluations and ``d · m · k`` for ``F``.

Normalisations (for NLM, footnote 4 of the paper): ``"row"`` gives the row-stochastic
``D⁻¹W`` (``D = diag(W1)``), held as ``D^{-1/2} S D^{1/2}`` with the symmetric
``S = D^{-1/2} W D^{-1/2}``; ``"sinkhorn"`` gives the symmetric doubly-stochastic
``diag(s) W diag(s)`` (Sinkhorn–Knopp). With Nyström the degrees are those of the
approximation (``F Fᵀ 1``), as in Fowlkes et al. 2004. ``"max"`` (the default for NTK
filters) scales ``W = ηΘ`` with ``η = 1/λ_max``, so the eigenvalues lie in (0, 1].
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from ..errors import InputError
from ..machine import choose_int8
from ..noise import _generator
from .basis import FilterBasis

NORMALIZATIONS = ("max", "row", "sinkhorn", "none")
PRECISIONS = ("auto", "int8", "single", "double")
DEFAULT_PRECISION = "auto"


def resolve_precision(precision: str, source: object | None = None) -> str:
    """The Nyström arithmetic actually taken for ``precision`` on this machine.

    ``"auto"``: ``"int8"`` where int8 products are fast here
    (:func:`filterscope.machine.choose_int8`), else ``"single"``; ``"int8"`` for a
    ``source`` without int8 blocks (NLM) is ``"single"``.

    Raises
    ------
    InputError
        Unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = "int8" if choose_int8("ntk") else "single"
    if precision == "int8" and source is not None and not hasattr(source, "quantized_block"):
        return "single"
    return precision


class ColumnSource(Protocol):
    """What Nyström needs from an affinity: its size and its columns (or blocks)."""

    d: int
    shape: tuple[int, int]
    pairwise: bool

    def block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor: ...

    def columns(self, cols: torch.Tensor) -> torch.Tensor: ...

    def column_chunk(self, budget_bytes: int) -> int: ...


def sample_columns(
    num_pixels: int,
    fraction: float = 0.02,
    *,
    generator: int | torch.Generator | None = 0,
) -> torch.Tensor:
    """Uniformly random distinct pixels (Section 4.1), sorted.

    Parameters
    ----------
    num_pixels : int
        ``d``.
    fraction : float
        In (0, 1]; ``m = max(1, round(fraction · d))`` columns. 1 takes every pixel.
    generator : int or torch.Generator, keyword-only

    Returns
    -------
    LongTensor, shape (m,)
    """
    if not (0 < fraction <= 1) or math.isnan(fraction):
        raise InputError(f"column fraction must be in (0, 1], got {fraction}")
    m = max(1, int(round(fraction * num_pixels)))
    if m >= num_pixels:
        return torch.arange(num_pixels)
    perm = torch.randperm(num_pixels, generator=_generator(generator))
    return perm[:m].sort().values


def _truncate(vals: torch.Tensor, vecs: torch.Tensor, rank: int | None, rcond: float):
    order = torch.argsort(vals, descending=True)
    vals, vecs = vals[order], vecs[:, order]
    top = float(vals[0]) if vals.numel() else 0.0
    if not torch.isfinite(vals).all():
        raise InputError("the affinity matrix has non-finite eigenvalues")
    if top <= 0:
        raise InputError("the affinity matrix is zero (a constant black image?)")
    keep = vals > rcond * top
    if rank is not None:
        keep &= torch.arange(vals.numel()) < rank
    return vals[keep], vecs[:, keep]


OVERSAMPLE = 32  # extra random directions of the randomized eigensolver
POWER_ITERATIONS = 2


def leading_eigh(
    a: torch.Tensor, rank: int | None, *, rcond: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading eigenpairs of a symmetric PSD matrix, descending.

    Parameters
    ----------
    a : Tensor, shape (m, m), float64
    rank : int or None
        Eigenpairs wanted (None: all).
    rcond : float, keyword-only
        Drop eigenvalues ``≤ rcond · λ_max``.

    Returns
    -------
    (vals, vecs) : Tensor (k,), Tensor (m, k)

    Notes
    -----
    ``torch.linalg.eigh`` (``O(m³)``, 75 s for ``m = 5243`` on one core) when all or many
    eigenpairs are wanted; otherwise a randomized range finder with
    ``POWER_ITERATIONS`` power iterations (Halko, Martinsson & Tropp 2011, algorithm 4.4
    and 5.3; ``O(m² (rank + OVERSAMPLE))``) and a seeded probe, so the result is
    deterministic. For a fast-decaying spectrum (every kernel here) its eigenvalues agree
    with the exact ones to about ``1e-8`` relative; any orthonormal basis gives a valid
    Nyström approximation ``C U (Uᵀ W_JJ U)⁻¹ Uᵀ Cᵀ`` (the projected Nyström method).
    """
    m = a.shape[0]
    if rank is None or 2 * (rank + OVERSAMPLE) >= m:
        vals, vecs = torch.linalg.eigh(a)
        return _truncate(vals, vecs, rank, rcond)
    probe = torch.randn(m, rank + OVERSAMPLE, generator=torch.Generator().manual_seed(0))
    a32 = a.to(torch.float32)
    q = probe
    for _ in range(POWER_ITERATIONS + 1):
        q = torch.linalg.qr(a32 @ q).Q
    q = torch.linalg.qr(q.to(torch.float64)).Q
    small = q.T @ a @ q
    vals, s = torch.linalg.eigh(0.5 * (small + small.T))
    return _truncate(vals, q @ s, rank, rcond)


ROW_BLOCK = 512  # rows per float32 block of C: cache-sized for the element-wise maps


def _factor(source: ColumnSource, cols: torch.Tensor, *, rank, rcond, memory_budget, precision):
    """``F`` (d × k) with ``F Fᵀ = C W_JJ⁺ Cᵀ`` truncated to ``k`` eigenpairs."""
    d, m = source.d, cols.numel()
    kept = None
    quantized = precision == "int8" and hasattr(source, "quantized_block")
    if source.pairwise:
        w_jj = source.quantized_block(cols, cols) if quantized else source.block(cols, cols)
    else:
        chunk = source.column_chunk(memory_budget)
        keep_all = 8 * d * m <= memory_budget
        w_jj = torch.empty(m, m, dtype=torch.float64)
        parts = []
        for start in range(0, m, chunk):
            block = source.columns(cols[start : start + chunk])
            w_jj[:, start : start + block.shape[1]] = block[cols]
            if keep_all:
                parts.append(block)
        kept = torch.cat(parts, 1) if keep_all else None
    lam, u = leading_eigh(0.5 * (w_jj + w_jj.T), rank, rcond=rcond)
    b = u / torch.sqrt(lam)  # (m, k)
    k = lam.numel()
    if kept is not None:
        return kept @ b
    if source.pairwise and precision != "double" and hasattr(source, "factor_rows"):
        f = torch.empty(d, k, dtype=torch.float32)
        block_precision = "int8" if quantized else "single"
        for start in range(0, d, ROW_BLOCK):
            stop = min(d, start + ROW_BLOCK)
            source.factor_rows(start, stop, cols, b, precision=block_precision, out=f[start:stop])
        return f.to(torch.float64)
    f = torch.zeros(d, k, dtype=torch.float64)
    if source.pairwise:
        rows = max(1, int(memory_budget // (8 * (m + k) * 3)))
        for start in range(0, d, rows):
            idx = torch.arange(start, min(d, start + rows))
            f[idx] = source.block(idx, cols) @ b
    else:
        chunk = source.column_chunk(memory_budget)
        for start in range(0, m, chunk):
            block = source.columns(cols[start : start + chunk])
            f.addmm_(block, b[start : start + block.shape[1]])
    return f


def _sinkhorn(matvec, d: int, *, iterations: int = 200, tol: float = 1e-10) -> torch.Tensor:
    """Symmetric Sinkhorn–Knopp: ``s`` with ``s ∘ (W s) = 1``."""
    s = torch.ones(d, dtype=torch.float64)
    for _ in range(iterations):
        ws = matvec(s)
        ws = ws.clamp_min(1e-12 * float(ws.max()))  # Nyström degrees can be ~0 or negative
        new = torch.sqrt(s / ws)
        if torch.max(torch.abs(new - s) / s) < tol:
            s = new
            break
        s = new
    if not torch.isfinite(s).all():
        raise InputError(
            "Sinkhorn scaling diverged: the approximated affinity has near-zero degrees "
            "(use more columns or a wider NLM bandwidth h)"
        )
    return s


def _basis_from_factor(
    f: torch.Tensor, shape, *, normalize: str, rcond: float, info: dict
) -> FilterBasis:
    left = right = None
    if normalize == "row":
        deg = (f @ f.sum(0)).clamp_min(1e-12 * float(f.pow(2).sum(1).max()))
        f = f / torch.sqrt(deg)[:, None]
        left, right = deg.rsqrt(), deg.sqrt()
    elif normalize == "sinkhorn":
        s = _sinkhorn(lambda v: f @ (f.T @ v), f.shape[0])
        f = f * s[:, None]
    gram = f.T @ f
    vals, q = torch.linalg.eigh(0.5 * (gram + gram.T))
    vals, q = _truncate(vals, q, None, rcond)
    vecs = (f @ q) / torch.sqrt(vals)
    return _finish(vals, vecs, shape, normalize, left, right, info)


def _finish(vals, vecs, shape, normalize, left, right, info) -> FilterBasis:
    top = float(vals[0])
    scale = 1.0 / top if normalize in ("max",) else 1.0 / max(1.0, top)
    if normalize == "none":
        scale = 1.0
    info = dict(info, lambda_max_raw=top)
    return FilterBasis(vals * scale, vecs, tuple(shape), left, right, scale, info)


def nystrom_basis(
    source: ColumnSource,
    columns: torch.Tensor,
    *,
    normalize: str = "max",
    rank: int | None = None,
    rcond: float = 1e-10,
    memory_budget: int = 512 * 2**20,
    precision: str = DEFAULT_PRECISION,
) -> FilterBasis:
    """Leading eigenpairs of a filter from ``m`` of its columns (Nyström).

    Parameters
    ----------
    source : ColumnSource
        The affinity of one image, e.g. :class:`filterscope.ntk.kernels.ColumnEngine`
        or :class:`filterscope.ntk.nlm.NLMAffinity`.
    columns : LongTensor, shape (m,)
        Distinct pixel indices (see :func:`sample_columns`).
    normalize : {"max", "row", "sinkhorn", "none"}, keyword-only
        See the module notes. ``"max"`` (NTK): ``η = 1/λ_max``.
    rank : int or None, keyword-only
        Keep at most this many eigenpairs of ``W_JJ`` (None: all above ``rcond``).
    rcond : float, keyword-only
        Relative cut-off for the eigenvalues of ``W_JJ`` (pseudo-inverse).
    memory_budget : int, keyword-only
        Bytes for one block of ``C``.
    precision : {"auto", "int8", "single", "double"}, keyword-only
        Arithmetic of the ``d × m`` product ``C U Λ^{-1/2}`` of pairwise kernels (the
        one-hidden-layer NTK, NLM), formed in float32 blocks (``factor_rows``).
        ``"auto"`` (default): ``"int8"`` where it is fast on this CPU, else ``"single"``
        (:func:`resolve_precision`; the one taken is ``info["precision"]``).
        ``"int8"``: the NTK's correlations from int8 patches and exact int32
        products, about ``1e-3`` absolute, with ``W_JJ`` rounded alike (Set9 at σ = 25:
        the same PSNR to 0.01 dB and the same SURE choice as float32); NLM falls back to
        ``"single"``. ``"single"``: float32 products, about ``1e-6`` relative, ``W_JJ`` in
        float64. ``"double"``: everything in float64 (reference; 3-10x slower).

    Returns
    -------
    FilterBasis

    Notes
    -----
    Cost: the columns (``d · m · r² C`` for pairwise kernels), ``O(m³)`` for the
    eigendecomposition of ``W_JJ`` (``O(m² rank)`` with the randomized solver of
    :func:`leading_eigh` when ``rank ≪ m``), ``O(d m k)`` for ``F`` and ``O(d k²)`` for the
    final orthogonalisation. With ``columns = all pixels``, no truncation and
    ``precision="double"`` the result equals the full-matrix eigendecomposition
    (:func:`matrix_basis`) to round-off.
    """
    if normalize not in NORMALIZATIONS:
        raise InputError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    precision = resolve_precision(precision, source)
    cols = torch.as_tensor(columns, dtype=torch.long).reshape(-1)
    f = _factor(
        source, cols, rank=rank, rcond=rcond, memory_budget=memory_budget, precision=precision
    )
    info = {
        "method": "nystrom",
        "columns": int(cols.numel()),
        "nystrom_rank": f.shape[1],
        "precision": precision,
    }
    return _basis_from_factor(f, source.shape, normalize=normalize, rcond=rcond, info=info)


def matrix_basis(
    matrix: torch.Tensor,
    shape: tuple[int, int],
    *,
    normalize: str = "max",
    rank: int | None = None,
    rcond: float = 0.0,
) -> FilterBasis:
    """Eigendecomposition of a full ``d × d`` symmetric PSD affinity (small images).

    Parameters
    ----------
    matrix : Tensor, shape (d, d)
    shape : (H, W)
    normalize, rank, rcond : keyword-only
        As in :func:`nystrom_basis`; the degrees and Sinkhorn scaling are exact here.

    Returns
    -------
    FilterBasis
    """
    if normalize not in NORMALIZATIONS:
        raise InputError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    w = matrix.to(torch.float64)
    w = 0.5 * (w + w.T)
    left = right = None
    if normalize == "row":
        deg = w.sum(1)
        w = w / torch.sqrt(deg[:, None] * deg[None, :])
        left, right = deg.rsqrt(), deg.sqrt()
    elif normalize == "sinkhorn":
        s = _sinkhorn(lambda v: w @ v, w.shape[0])
        w = s[:, None] * w * s[None, :]
    vals, vecs = torch.linalg.eigh(w)
    vals = vals.clamp_min(0.0)
    order = torch.argsort(vals, descending=True)
    vals, vecs = vals[order], vecs[:, order]
    keep = vals > rcond * vals[0] if rcond > 0 else torch.ones_like(vals, dtype=torch.bool)
    if rank is not None:
        keep &= torch.arange(vals.numel()) < rank
    info = {"method": "full", "columns": w.shape[0]}
    return _finish(vals[keep], vecs[:, keep], shape, normalize, left, right, info)


def nystrom_error(
    source: ColumnSource,
    basis: FilterBasis,
    *,
    num_test: int = 32,
    seen: torch.Tensor | None = None,
    generator: int | torch.Generator | None = 1,
) -> dict:
    """How well the (unnormalised) Nyström approximation reproduces unseen columns.

    Computes ``num_test`` exact columns of the raw affinity at random pixels and compares
    them with ``(1/η) V Λ Vᵀ e_j`` of a ``normalize="max"`` or ``"none"`` basis.

    Parameters
    ----------
    seen : LongTensor, shape (m,), optional
        The Nyström columns of ``basis``. Test pixels are drawn from the other pixels
        first, since a seen column is reproduced almost exactly and would make the report
        optimistic; only when fewer than ``num_test`` pixels are unseen are seen ones used
        to fill up (``unseen_test`` in the result says how many were not).

    Returns
    -------
    dict
        ``relative_frobenius`` (over the test columns), ``relative_diagonal`` (the test
        columns' diagonal entries), ``num_test``, ``unseen_test``, ``rank``.
    """
    if basis.left is not None:
        raise ValueError("nystrom_error needs a symmetric (max/none-normalised) basis")
    gen = _generator(generator)
    order = torch.randperm(source.d, generator=gen)
    unseen = torch.ones(source.d, dtype=torch.bool)
    if seen is not None:
        unseen[torch.as_tensor(seen, dtype=torch.long).reshape(-1)] = False
    # a stable sort keeps the random order within the unseen and within the seen pixels
    order = order[torch.sort((~unseen[order]).to(torch.uint8), stable=True).indices]
    test = order[: min(num_test, source.d)]
    exact = source.columns(test)
    approx = (basis.eigvecs * (basis.eigvals / basis.scale)) @ basis.eigvecs[test].T
    diag_exact = exact[test, torch.arange(test.numel())]
    diag_approx = approx[test, torch.arange(test.numel())]
    return {
        "relative_frobenius": float(torch.linalg.norm(approx - exact) / torch.linalg.norm(exact)),
        "relative_diagonal": float(
            torch.linalg.norm(diag_approx - diag_exact) / torch.linalg.norm(diag_exact)
        ),
        "num_test": int(test.numel()),
        "unseen_test": int(unseen[test].sum()),
        "rank": basis.rank,
    }
