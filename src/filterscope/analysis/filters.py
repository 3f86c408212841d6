"""Adaptive filters: the rows of ``A_y`` read as weighted averages (Mohan et al. 2020, §6.1).

``f(y)[i] = Σ_j A_y[i, j] y[j] (+ b_y[i])``: the row ``a_y(i)`` is the filter that
computes output pixel ``i``. For BF-DnCNN it sums to ~1 (a local average), some weights
are negative, and its extent grows with σ while it stays within image structures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ._core import Function
from .jacobian import JacobianRow, jacobian_rows


@dataclass
class AdaptiveFilter:
    """The equivalent filter of one output pixel.

    Attributes
    ----------
    row : JacobianRow
        The weights on their window (``row.weights``, ``row.box``) and the output value.
    sum : float
        Sum of all weights (1 for an average).
    negative_fraction : float
        ``Σ |negative weights| / Σ |weights|``.
    extent_rms : float
        RMS distance in pixels of the weights from the pixel, weighted by ``w²``.
    extent_99 : int
        Smallest Chebyshev radius (pixels) around the pixel holding 99% of ``Σ w²``.
    """

    row: JacobianRow
    sum: float
    negative_fraction: float
    extent_rms: float
    extent_99: int

    def to_dict(self, *, weights: bool = True) -> dict:
        """JSON-ready summary; ``filter`` is the weight window as nested lists (gray: 2-D)."""
        t, b, lft, rgt = self.row.box
        out = {
            "pixel": list(self.row.pixel),
            "channel": self.row.channel,
            "sum": self.sum,
            "negative_fraction": self.negative_fraction,
            "extent_rms": self.extent_rms,
            "extent_99": self.extent_99,
            "output_value": self.row.value,
            "box": {"top": t, "bottom": b, "left": lft, "right": rgt},
        }
        if weights:
            w = self.row.weights
            out["filter"] = (w[0] if w.shape[0] == 1 else w).tolist()
        return out


def describe_row(row: JacobianRow) -> AdaptiveFilter:
    """Sum, sign balance and spatial extent of a Jacobian row."""
    w = row.weights.to(torch.float64)
    t, b, lft, rgt = row.box
    px, py = row.pixel
    rows = torch.arange(t, b, dtype=torch.float64, device=w.device)[:, None] - py
    cols = torch.arange(lft, rgt, dtype=torch.float64, device=w.device)[None, :] - px
    energy = w.pow(2).sum(0)
    total = float(energy.sum())
    if total > 0:
        rms = float(((rows**2 + cols**2) * energy).sum() / total) ** 0.5
        cheb = torch.maximum(rows.abs(), cols.abs()).expand_as(energy).round().long()
        per_radius = torch.zeros(int(cheb.max()) + 1, dtype=torch.float64, device=w.device)
        per_radius.index_add_(0, cheb.flatten(), energy.flatten())
        cumulative = per_radius.cumsum(0) / total
        extent_99 = int((cumulative < 0.99 - 1e-12).sum())
    else:
        rms, extent_99 = 0.0, 0
    magnitude = float(w.abs().sum())
    negative = float(w.clamp(max=0).abs().sum())
    return AdaptiveFilter(
        row=row,
        sum=float(w.sum()),
        negative_fraction=negative / magnitude if magnitude > 0 else 0.0,
        extent_rms=rms,
        extent_99=extent_99,
    )


def adaptive_filters(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    pixels: Sequence[Sequence[int]],
    *,
    channel: int = 0,
    radius: int | str | None = "auto",
    chunk: int = 16,
    dtype: torch.dtype = torch.float64,
) -> list[AdaptiveFilter]:
    """Equivalent filters (rows of ``A_y``) of chosen pixels of a full-size noisy image.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser on ``(B, C, H, W)`` tensors.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        Noisy image, any size.
    pixels : sequence of (x, y)
        Column and row of each output pixel.
    channel, radius, chunk, dtype
        See :func:`~filterscope.analysis.jacobian.jacobian_rows` (rows are exact:
        computed on receptive-field crops).

    Returns
    -------
    list of AdaptiveFilter
        In the order of ``pixels``.
    """
    rows = jacobian_rows(
        denoiser, y, pixels, channel=channel, radius=radius, chunk=chunk, dtype=dtype
    )
    return [describe_row(row) for row in rows]
