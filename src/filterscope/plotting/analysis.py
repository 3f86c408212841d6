"""Figures of the Jacobian analysis (Mohan et al. 2020, Figures 1, 4–7, 9)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import FilterscopeError


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise FilterscopeError(
            "plotting needs matplotlib; install it with `pip install filterscope[plot]`"
        ) from None
    return plt


def _gray(t: torch.Tensor) -> np.ndarray:
    """``(C, H, W)``/``(H, W)`` tensor -> ``(H, W)`` or ``(H, W, 3)`` array."""
    a = t.detach().to("cpu", torch.float64).numpy()
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    return a


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_decomposition(
    results: Sequence[dict], path: str | os.PathLike, *, title: str = ""
) -> Path:
    """Figure 1: mean norms of noise, residual and net bias against σ (0–255).

    ``results`` are the dicts of :func:`~filterscope.analysis.decomposition_vs_sigma`.
    """
    plt = _pyplot()
    sig = [r["sigma"] for r in results]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(sig, [r["noise_norm"] for r in results], "k--", label="noise ‖n‖")
    ax.plot(sig, [r["residual_norm"] for r in results], "o-", label="residual ‖y − f(y)‖")
    ax.plot(sig, [r["bias_norm"] for r in results], "s-", color="tab:red", label="net bias ‖b_y‖")
    ax.set_xlabel("noise level σ (0–255)")
    ax.set_ylabel("RMS (0–255)")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_decomposition_images(
    y: torch.Tensor,
    output: torch.Tensor,
    linear: torch.Tensor,
    bias: torch.Tensor,
    path: str | os.PathLike,
    *,
    title: str = "",
) -> Path:
    """Figures 9–10: noisy input, output, linear part ``A_y y`` and net bias ``b_y``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    panels = [
        ("noisy y", y),
        ("f(y)", output),
        ("linear part A_y y", linear),
        ("net bias b_y", bias),
    ]
    for ax, (name, img) in zip(axes, panels, strict=True):
        a = _gray(img[0] if img.dim() == 4 else img)
        if name.startswith("net bias"):
            lim = max(float(np.abs(a).max()), 1e-12)
            im = ax.imshow(a, cmap="RdBu_r", vmin=-lim, vmax=lim)
            fig.colorbar(im, ax=ax, fraction=0.046)
        else:
            ax.imshow(a, cmap="gray", vmin=0, vmax=1)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def plot_filters(
    y: torch.Tensor, filters: Sequence, path: str | os.PathLike, *, title: str = ""
) -> Path:
    """Figure 4: the noisy image with the pixels marked, and each pixel's filter.

    Positive weights are gray levels, negative weights red (as in the paper); each
    panel states the sum of its weights. ``filters`` are
    :class:`~filterscope.analysis.AdaptiveFilter` objects.
    """
    plt = _pyplot()
    img = _gray(y[0] if y.dim() == 4 else y)
    n = len(filters)
    fig, axes = plt.subplots(1, n + 1, figsize=(3.2 * (n + 1), 3.4))
    axes[0].imshow(img, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("noisy input")
    for k, f in enumerate(filters):
        px, py = f.row.pixel
        axes[0].add_patch(
            plt.Rectangle((px - 2, py - 2), 4, 4, fill=False, edgecolor="red", linewidth=1.5)
        )
        axes[0].annotate(str(k + 1), (px + 3, py - 3), color="red", fontsize=9)
        w = f.row.weights.to(torch.float64).sum(0).numpy()
        scale = max(float(np.abs(w).max()), 1e-12)
        pos = np.clip(w / scale, 0, 1)
        neg = np.clip(-w / scale, 0, 1)
        rgb = np.stack([1 - pos, 1 - pos - neg, 1 - pos - neg], axis=-1)
        rgb = np.clip(rgb, 0, 1)  # white background, dark positive, red negative
        t, b, lft, rgt = f.row.box
        axes[k + 1].imshow(rgb, extent=(lft - 0.5, rgt - 0.5, b - 0.5, t - 0.5))
        axes[k + 1].plot([px], [py], "+", color="tab:blue")
        axes[k + 1].set_title(f"pixel {k + 1} ({px}, {py}): sum {f.sum:.3f}")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def plot_spectrum(
    results: Sequence[dict], path: str | os.PathLike, *, fit: dict | None = None, title: str = ""
) -> Path:
    """Figure 5: singular values per σ, and effective dimension against σ with the 1/σ fit.

    ``results`` are ``PatchSpectrum.to_dict()`` dicts (σ on 0–255).
    """
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for r in results:
        ax1.plot(r["singular_values"], label=f"σ = {r['sigma']:g}")
    ax1.set_xlabel("index")
    ax1.set_ylabel("singular value")
    ax1.set_xscale("log")
    ax1.legend()
    sig = np.array([r["sigma"] for r in results])
    dims = np.array([r["effective_dim"] for r in results])
    ax2.loglog(sig, dims, "o-", color="tab:red", label="d = Σ s²")
    if fit is not None:
        grid = np.linspace(sig.min(), sig.max(), 50)
        ax2.loglog(grid, fit["alpha"] / grid, "k--", label=f"α/σ (slope {fit['slope']:.2f})")
    ax2.set_xlabel("noise level σ (0–255)")
    ax2.set_ylabel("effective dimension")
    ax2.legend()
    fig.suptitle(title)
    return _save(fig, path)


def plot_singular_vectors(
    vectors: torch.Tensor,
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Figure 6: singular vectors as images (``(k, C, H, W)``), each on a symmetric scale."""
    plt = _pyplot()
    k = vectors.shape[0]
    fig, axes = plt.subplots(1, k, figsize=(2.2 * k, 2.4), squeeze=False)
    for j in range(k):
        a = _gray(vectors[j])
        lim = max(float(np.abs(a).max()), 1e-12)
        axes[0, j].imshow(a if a.ndim == 2 else a.mean(-1), cmap="gray", vmin=-lim, vmax=lim)
        axes[0, j].set_title(labels[j] if labels else f"#{j + 1}", fontsize=8)
        axes[0, j].axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def plot_dimension(result: dict, path: str | os.PathLike, *, title: str = "") -> Path:
    """Running mean of the probe values with the final confidence interval."""
    plt = _pyplot()
    samples = np.asarray(result["samples"], dtype=float)
    running = np.cumsum(samples) / np.arange(1, len(samples) + 1)
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(np.arange(1, len(samples) + 1), samples, ".", alpha=0.4, label="‖A z‖² per probe")
    ax.plot(np.arange(1, len(samples) + 1), running, "-", label="running mean")
    lo, hi = result["interval"]
    ax.axhspan(lo, hi, color="tab:green", alpha=0.2, label=f"{result['confidence']:.0%} interval")
    ax.set_xlabel("probes")
    ax.set_ylabel("effective dimension")
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)
