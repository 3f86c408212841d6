"""A non-local filter held by its eigenpairs, and the twicing gains of its eigenvalues.

:class:`FilterBasis` is what :mod:`filterscope.ntk.nystrom` computes (full matrix or
Nyström) and what :mod:`filterscope.ntk.twicing` filters with; both import it from here,
so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..analysis._core import check_pixels
from ..errors import InputError


def twicing_gains(eigvals: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """``g_i(t) = 1 - (1 - λ_i)^t`` (equation 6); ``t`` scalar or ``(T,)`` → ``(T, k)``.

    ``λ`` is clamped to [0, 1] so that the power is real for non-integer ``t``.
    """
    base = (1.0 - eigvals.clamp(0.0, 1.0)).to(torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() == 0:
        return 1.0 - base.pow(t)
    return 1.0 - base[None, :].pow(t[:, None])


def pixel_indices(pixels, height: int, width: int) -> list[int]:
    """Flat indices ``y * width + x`` of ``(x, y)`` pixels (column, row) or of flat
    indices, each checked to lie inside a ``width`` × ``height`` image."""
    indices = []
    for pixel in pixels:
        if isinstance(pixel, (tuple, list)):
            ((x, y),) = check_pixels([pixel], height, width)
            indices.append(y * width + x)
        else:
            index = int(pixel)
            if not 0 <= index < height * width:
                raise InputError(
                    f"pixel index {index} is outside the {width}x{height} image "
                    f"(0..{height * width - 1})"
                )
            indices.append(index)
    return indices


@dataclass
class FilterBasis:
    """A filter ``W = diag(left) V diag(λ) Vᵀ diag(right)`` in its eigenbasis.

    Attributes
    ----------
    eigvals : Tensor, shape (k,), float64
        Eigenvalues of the (scaled) filter, descending, in [0, 1].
    eigvecs : Tensor, shape (d, k), float64
        Orthonormal eigenvectors (eigenimages, row-major pixels).
    shape : tuple of int
        ``(H, W)``.
    left, right : Tensor, shape (d,), or None
        Diagonal similarity of a non-symmetric filter (row normalisation:
        ``left = D^{-1/2}``, ``right = D^{1/2}``); None for symmetric filters.
    scale : float
        Factor ``η`` applied to the raw affinity (``W = η K``; 1 when normalised).
    info : dict
        How it was computed (columns, rank, timings...).
    """

    eigvals: torch.Tensor
    eigvecs: torch.Tensor
    shape: tuple[int, int]
    left: torch.Tensor | None = None
    right: torch.Tensor | None = None
    scale: float = 1.0
    info: dict = field(default_factory=dict)

    @property
    def d(self) -> int:
        return self.eigvecs.shape[0]

    @property
    def rank(self) -> int:
        return self.eigvals.numel()

    def matrix(self) -> torch.Tensor:
        """The ``d × d`` filter (small images only)."""
        w = (self.eigvecs * self.eigvals) @ self.eigvecs.T
        if self.left is not None:
            w = self.left[:, None] * w * self.right[None, :]
        return w

    def rows(self, pixels, *, t: float | None = None) -> torch.Tensor:
        """Rows of the filter for chosen pixels, as images (Figure 2).

        Parameters
        ----------
        pixels : sequence of (x, y) or of int (flat indices)
            ``(x, y)`` = (column, row); a flat index is ``y * W + x``.
        t : float or None, keyword-only
            None: rows of ``W``; a number: rows of the twicing filter
            ``H_t = I - (I - W)^t`` (equation 6).

        Returns
        -------
        Tensor, shape (n, H, W), float64
            ``out[k]`` holds the weights ``W[i_k, j]`` of every pixel ``j``.
        """
        height, width = self.shape
        idx = torch.tensor(pixel_indices(pixels, height, width), dtype=torch.long)
        if t is None:
            gains = self.eigvals
        else:
            gains = twicing_gains(self.eigvals, t)
        out = (self.eigvecs[idx] * gains) @ self.eigvecs.T
        if self.left is not None:
            out = self.left[idx, None] * out * self.right[None, :]
        return out.reshape(-1, *self.shape)

    def eigenimages(self, n: int | None = None) -> torch.Tensor:
        """The ``n`` leading eigenvectors as images, shape ``(n, H, W)``."""
        n = self.rank if n is None else min(n, self.rank)
        return self.eigvecs[:, :n].T.reshape(n, *self.shape)
