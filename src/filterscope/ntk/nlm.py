"""The classical comparison: the non-local means affinity of equation 4.

``W[i, j] = exp(-‖y_i - y_j‖² / (n_p h²))`` for the ``r × r`` patches ``y_i``, ``y_j``
(``n_p = C r²`` entries, so ``h`` is on the per-pixel image scale). The raw affinity is
symmetric positive semi-definite (a Gaussian kernel of the patches); it is normalised by
rows (``diag(1/W1) W``, the usual NLM weights) or by Sinkhorn's symmetric scaling
(footnote 4), see :mod:`filterscope.ntk.nystrom`, and then used exactly like the NTK
filters: applied once (``t = 1``) or with twicing.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from .kernels import as_image, image_patches

NLM_H_FACTOR = 0.5  # default h = NLM_H_FACTOR · σ


class NLMAffinity:
    """NLM affinity of one image; satisfies :class:`filterscope.ntk.nystrom.ColumnSource`.

    Parameters
    ----------
    image : Tensor or ndarray, shape (H, W), (C, H, W) or (1, C, H, W)
    h : float
        Bandwidth on the image scale (> 0), e.g. ``σ``.
    patch_size : int, keyword-only
        Odd ``r``.
    padding : {"circular", "zero"}, keyword-only

    Notes
    -----
    Entries depend on two patches only, so any block costs one ``r² C``-deep matrix product.
    """

    pairwise = True

    def __init__(self, image, h: float, *, patch_size: int = 7, padding: str = "circular"):
        if not h > 0 or math.isinf(h):
            raise InputError(f"NLM bandwidth h must be positive, got {h}")
        if patch_size < 1 or patch_size % 2 == 0:
            raise InputError(f"patch size must be a positive odd integer, got {patch_size}")
        x = as_image(image)
        c, hh, ww = x.shape
        if min(hh, ww) < patch_size:
            raise InputError(
                f"image is {ww}x{hh} pixels, smaller than the {patch_size}x{patch_size} patch"
            )
        self.shape = (hh, ww)
        self.d = hh * ww
        self.patches = image_patches(x, patch_size, padding=padding) / math.sqrt(
            c * patch_size**2 * h * h
        )
        self.sq = self.patches.pow(2).sum(1)
        self._patches32 = self._sq32 = None  # float32 copies for factor_rows()

    def block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``W[rows, cols]``."""
        g = self.patches[rows] @ self.patches[cols].T
        g.mul_(2.0).sub_(self.sq[rows, None]).sub_(self.sq[None, cols]).clamp_max_(0.0)
        return g.exp_()

    def factor_rows(
        self,
        start: int,
        stop: int,
        cols: torch.Tensor,
        weights: torch.Tensor,
        *,
        precision: str = "single",
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``W[start:stop, cols] @ weights`` in float32, shape ``(stop - start, k)``.

        The exponent ``-‖p_i - p_j‖²/(n_p h²)`` is formed from a float32 product of the
        patches (absolute error about ``1e-7 · ‖p‖²``). Only ``precision="single"``: the
        exponent amplifies the rounding of int8 patches by ``‖p‖² / h²``.
        """
        if precision != "single":
            raise ValueError(f"NLM blocks are float32 only, got precision={precision!r}")
        if self._patches32 is None:
            self._patches32 = self.patches.to(torch.float32)
            self._sq32 = self.sq.to(torch.float32)
        cols = torch.as_tensor(cols, dtype=torch.long)
        g = self._patches32[start:stop] @ self._patches32[cols].T
        g.mul_(2.0).sub_(self._sq32[start:stop, None]).sub_(self._sq32[None, cols])
        return torch.mm(g.clamp_max_(0.0).exp_(), weights.to(torch.float32), out=out)

    def columns(self, cols: torch.Tensor) -> torch.Tensor:
        """``W[:, cols]``, shape ``(d, m)``."""
        return self.block(torch.arange(self.d), torch.as_tensor(cols, dtype=torch.long))

    def matrix(self) -> torch.Tensor:
        """The full ``d × d`` affinity (small images)."""
        return self.columns(torch.arange(self.d))

    def column_chunk(self, budget_bytes: int) -> int:
        return max(1, int(budget_bytes // (16 * self.d)))
