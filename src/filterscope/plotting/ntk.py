"""Figures of the neural-tangent filters (Tachella et al. 2021, Figures 1 and 2).

- :func:`plot_filter_rows`: the noisy image with chosen pixels marked and, for each pixel,
  its row of the filter ``W`` shown as an image (Figure 2: the weights with which the
  filter averages every pixel of the image into the chosen one).
- :func:`plot_eigenimages`: the leading eigenimages of the filter with their eigenvalues,
  and the eigenvalue decay (Figure 1).

Both take plain arrays/tensors (see :meth:`filterscope.ntk.FilterBasis.rows` and
:meth:`~filterscope.ntk.FilterBasis.eigenimages`), write one PNG and return its path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .analysis import _gray, _pyplot, _save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 90  # image panels: small PNGs


def _window(center: int, half: int | None, size: int) -> tuple[int, int]:
    if half is None:
        return 0, size
    lo = max(0, min(center - half, size - 2 * half - 1))
    return lo, min(size, lo + 2 * half + 1)


def plot_filter_rows(
    y: torch.Tensor,
    rows: torch.Tensor | np.ndarray,
    pixels: Sequence[tuple[int, int]],
    path: str | os.PathLike | None = None,
    *,
    window: int | None = None,
    stretch: bool = True,
    title: str = "",
) -> Path | Figure:
    """Figure 2: each chosen pixel's filter weights, as an image around the pixel.

    Parameters
    ----------
    y : Tensor, shape (C, H, W) or (1, C, H, W)
        The (noisy) image the filter was computed from, values in [0, 1].
    rows : Tensor or ndarray, shape (n, H, W)
        Row ``i`` of the filter for each pixel (``FilterBasis.rows(pixels)``).
    pixels : sequence of (x, y)
        The ``n`` pixels: column and row.
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    window : int or None, keyword-only
        Show a ``window × window`` crop around each pixel (None: the whole image).
    stretch : bool, keyword-only
        For rows without negative weights, map the smallest shown weight (not 0) to white:
        the NTK affinities of a positive image all lie within a factor of a few, and the
        stretch shows which pixels the filter prefers.
    title : str, keyword-only

    Notes
    -----
    Weights are shown on a white-to-black scale up to the row's largest weight;
    negative weights (Nyström round-off, or twicing) are red on the same scale.
    """
    plt = _pyplot()
    img = _gray(y[0] if y.dim() == 4 else y)
    rows = np.asarray(rows.detach().cpu() if isinstance(rows, torch.Tensor) else rows)
    n = len(pixels)
    height, width = rows.shape[-2:]
    half = None if window is None else window // 2
    fig, axes = plt.subplots(1, n + 1, figsize=(2.8 * (n + 1), 3.0), squeeze=False)
    axes = axes[0]
    axes[0].imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("input")
    for k, (pc, pr) in enumerate(pixels):
        axes[0].plot([pc], [pr], "o", mfc="none", color="red", markersize=7)
        axes[0].annotate(str(k + 1), (pc + 4, pr - 4), color="red", fontsize=9)
        r0, r1 = _window(pr, half, height)
        c0, c1 = _window(pc, half, width)
        w = rows[k].astype(np.float64)[r0:r1, c0:c1]
        low = float(w.min()) if stretch and w.min() >= 0 else 0.0
        scale = max(float(np.abs(w).max()) - low, 1e-300)
        pos = np.clip((w - low) / scale, 0, 1)
        neg = np.clip(-w / scale, 0, 1)
        rgb = np.clip(np.stack([1 - pos, 1 - pos - neg, 1 - pos - neg], axis=-1), 0, 1)
        ax = axes[k + 1]
        ax.imshow(rgb, extent=(c0 - 0.5, c1 - 0.5, r1 - 0.5, r0 - 0.5))
        ax.plot([pc], [pr], "+", color="tab:blue")
        ax.set_title(f"pixel {k + 1} (x={pc}, y={pr})", fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=DPI)


def plot_eigenimages(
    eigenimages: torch.Tensor | np.ndarray,
    eigvals: torch.Tensor | np.ndarray,
    path: str | os.PathLike | None = None,
    *,
    columns: int = 4,
    title: str = "",
) -> Path | Figure:
    """Figure 1: the leading eigenimages of a filter and its eigenvalue decay.

    Parameters
    ----------
    eigenimages : Tensor or ndarray, shape (n, H, W)
        Leading eigenvectors as images (``FilterBasis.eigenimages(n)``); each is shown
        with a symmetric gray scale (mid-gray = 0; an eigenvector's sign is arbitrary).
    eigvals : Tensor or ndarray, shape (k,)
        Eigenvalues, descending (``k ≥ n``); the last panel plots all of them, log scale.
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    columns : int, keyword-only
        Panels per row.
    title : str, keyword-only
    """
    plt = _pyplot()
    images = np.asarray(eigenimages.cpu() if isinstance(eigenimages, torch.Tensor) else eigenimages)
    vals = np.asarray(eigvals.cpu() if isinstance(eigvals, torch.Tensor) else eigvals)
    n = len(images)
    panels = n + 1
    ncol = min(columns, panels)
    nrow = -(-panels // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.6 * nrow), squeeze=False)
    axes = axes.reshape(-1)
    for i in range(n):
        span = max(float(np.abs(images[i]).max()), 1e-300)
        axes[i].imshow(images[i], cmap="gray", vmin=-span, vmax=span)
        axes[i].set_title(f"v{i + 1}, λ = {vals[i]:.3g}", fontsize=9)
        axes[i].axis("off")
    ax = axes[n]
    positive = vals[vals > 0]
    ax.semilogy(np.arange(1, positive.size + 1), positive, ".-", markersize=2)
    ax.set_xlabel("index i")
    ax.set_ylabel("eigenvalue λ_i")
    ax.set_title("eigenvalue decay", fontsize=9)
    for ax in axes[panels:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi=DPI)
