"""Figures of the Jacobian analysis (Mohan et al. 2020, Figures 1, 4–10).

Every function returns a :class:`matplotlib.figure.Figure` (to show in a notebook, or to
edit), or, given a ``path``, writes the figure there (PNG, PDF, SVG... by suffix) and
returns the path. matplotlib's global state (the pyplot backend and figure list) is left
alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import FilterscopeError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class _Figures:
    """The pyplot calls the figures make (``subplots``, ``close``, ``Rectangle``), on
    plain :class:`matplotlib.figure.Figure` objects: pyplot is never imported, so the
    global backend is never switched (a notebook's inline backend survives) and no
    figure is left open in pyplot's list. ``Figure.savefig`` draws with Agg by itself."""

    def __init__(self):
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        self._figure = Figure
        self.Rectangle = Rectangle

    def subplots(self, nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
        figure = self._figure(figsize=figsize)
        return figure, figure.subplots(nrows, ncols, **kwargs)

    def close(self, figure) -> None:
        """Nothing to release: a figure outside pyplot is freed like any object."""


def _pyplot() -> _Figures:
    try:
        return _Figures()
    except ImportError:
        raise FilterscopeError(
            "plotting needs matplotlib; install it with `pip install filterscope[plot]`"
        ) from None


def _gray(t: torch.Tensor) -> np.ndarray:
    """``(C, H, W)``/``(H, W)`` tensor -> ``(H, W)`` or ``(H, W, 3)`` array."""
    a = t.detach().to("cpu", torch.float64).numpy()
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    return a


def _save(fig: Figure, path: str | os.PathLike | None, *, dpi: int = 120) -> Path | Figure:
    """What every plotting function returns: the figure itself when no ``path`` is
    given (to show in a notebook or edit), else the path it was written to."""
    if path is None:
        return fig
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_decomposition(
    results: Sequence[dict],
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
    training_range: tuple[float, float] | None = None,
) -> Path | Figure:
    """Figures 1 and 8: mean norms of noise, residual and net bias against σ (0–255).

    Parameters
    ----------
    results : sequence of dict
        The dicts of :func:`~filterscope.analysis.decomposition_vs_sigma` (``sigma``,
        ``noise_norm``, ``residual_norm``, ``bias_norm``).
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    title : str, keyword-only
        Figure title.
    training_range : (float, float) or None, keyword-only
        σ range (0–255) the model was trained on, shaded as in the paper.
    """
    plt = _pyplot()
    sig = [r["sigma"] for r in results]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    if training_range is not None:
        ax.axvspan(*training_range, color="tab:blue", alpha=0.12, label="training range")
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
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
) -> Path | Figure:
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
    y: torch.Tensor, filters: Sequence, path: str | os.PathLike | None = None, *, title: str = ""
) -> Path | Figure:
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


def _draw_effective_dimension(ax, results: list[dict], fit: dict | None) -> None:
    """d = Σ s_i² against σ on log–log axes, with the α/σ fit when given (Figure 5c)."""
    sig = np.array([r["sigma"] for r in results], dtype=float)
    dims = np.array([r["effective_dim"] for r in results], dtype=float)
    ax.loglog(sig, dims, "o-", color="tab:red", label="d = Σ s_i²")
    if fit is not None:
        grid = np.geomspace(sig.min(), sig.max(), 50)
        ax.loglog(grid, fit["alpha"] / grid, "k--", label=f"α/σ (slope {fit['slope']:.2f})")
    ax.set_xlabel("noise level σ (0–255)")


def plot_spectrum(
    results: Sequence[dict],
    path: str | os.PathLike | None = None,
    *,
    fit: dict | None = None,
    title: str = "",
) -> Path | Figure:
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
    _draw_effective_dimension(ax2, results, fit)
    ax2.set_ylabel("effective dimension")
    ax2.legend()
    fig.suptitle(title)
    return _save(fig, path)


def plot_singular_vectors(
    vectors: torch.Tensor,
    path: str | os.PathLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    clean: torch.Tensor | None = None,
    title: str = "",
) -> Path | Figure:
    """Figure 6: singular vectors as images, each on its own symmetric gray scale.

    Parameters
    ----------
    vectors : Tensor, shape (k, C, H, W)
        Singular vectors reshaped to the patch (``PatchSpectrum.singular_vector_images``).
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    labels : sequence of str or None, keyword-only
        One title per vector.
    clean : Tensor of shape (C, H, W) or None, keyword-only
        Clean patch, shown first on [0, 1] (as in the paper).
    title : str, keyword-only
        Figure title.
    """
    plt = _pyplot()
    k = vectors.shape[0]
    extra = 0 if clean is None else 1
    fig, axes = plt.subplots(1, k + extra, figsize=(2.2 * (k + extra), 2.4), squeeze=False)
    if clean is not None:
        axes[0, 0].imshow(_gray(clean), cmap="gray", vmin=0, vmax=1)
        axes[0, 0].set_title("clean", fontsize=8)
        axes[0, 0].axis("off")
    for j in range(k):
        ax = axes[0, j + extra]
        a = _gray(vectors[j])
        lim = max(float(np.abs(a).max()), 1e-12)
        ax.imshow(a if a.ndim == 2 else a.mean(-1), cmap="gray", vmin=-lim, vmax=lim)
        ax.set_title(labels[j] if labels else f"#{j + 1}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def plot_dimension(
    result: dict, path: str | os.PathLike | None = None, *, title: str = ""
) -> Path | Figure:
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


def plot_noise_maps(
    y: torch.Tensor,
    maps: dict[str, torch.Tensor],
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
) -> Path | Figure:
    """The noisy image ``y`` (C, H, W) beside noise maps ((k, H, W) each, image scale),
    the maps on one colour scale in 0-255 units (the channels' RMS when k > 1)."""
    plt = _pyplot()
    levels = {name: 255.0 * m.square().mean(0).sqrt() for name, m in maps.items()}
    top = max(float(level.max()) for level in levels.values()) or 1.0
    fig, axes = plt.subplots(1, 1 + len(levels), figsize=(3.9 * (1 + len(levels)), 3.4))
    axes[0].imshow(np.clip(_gray(y), 0, 1), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("noisy")
    for ax, (name, level) in zip(axes[1:], levels.items(), strict=True):
        shown = ax.imshow(level.numpy(), cmap="magma", vmin=0, vmax=top)
        ax.set_title(f"{name}, mean {float(level.mean()):.2f}")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label="σ (0-255)")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def plot_decomposition_grid(
    examples: Sequence,
    sigmas: Sequence[float],
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
) -> Path | Figure:
    """Figures 9–10: one row per σ — noisy ``y``, denoised ``f(y)``, linear part
    ``A_y y``, net bias ``b_y`` and residual ``y − f(y)``.

    Parameters
    ----------
    examples : sequence of Decomposition
        One per σ (e.g. from ``decomposition_vs_sigma(..., return_examples=True)``);
        the first image of each is shown.
    sigmas : sequence of float
        The σ of each row, 0–255 (row labels).
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    title : str, keyword-only
        Figure title.

    Notes
    -----
    Images are on [0, 1] (gray). The net bias and the residual are shown on one
    symmetric red–blue scale per row, shared by the two so their sizes compare, clipped
    at the 99.5th percentile of their absolute values (a few extreme pixels would
    otherwise wash everything out). Titles give each part's RMS on the 0–255 scale.
    """
    plt = _pyplot()
    rows = len(examples)
    fig, axes = plt.subplots(rows, 5, figsize=(11, 2.4 * rows), squeeze=False)
    for r, (dec, sigma) in enumerate(zip(examples, sigmas, strict=True)):
        first = lambda t: _gray(t[0] if t.dim() == 4 else t)  # noqa: E731
        bias, residual = first(dec.bias), first(dec.residual)
        both = np.abs(np.concatenate([bias.ravel(), residual.ravel()]))
        lim = max(float(np.percentile(both, 99.5)), 1e-12)
        panels = [
            ("noisy y", first(dec.y), "gray"),
            ("denoised f(y)", first(dec.output), "gray"),
            ("linear part A_y y", first(dec.linear), "gray"),
            ("net bias b_y", bias, "signed"),
            ("residual y − f(y)", residual, "signed"),
        ]
        for c, (name, a, kind) in enumerate(panels):
            ax = axes[r, c]
            if kind == "gray":
                ax.imshow(a, cmap="gray", vmin=0, vmax=1)
            else:
                im = ax.imshow(a if a.ndim == 2 else a.mean(-1), cmap="RdBu_r", vmin=-lim, vmax=lim)
                if c == 4:
                    fig.colorbar(im, ax=ax, fraction=0.046)
            rms = 255 * float(np.sqrt(np.mean(np.square(a)))) if kind == "signed" else None
            ax.set_title(name if rms is None else f"{name} (RMS {rms:.2f})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"σ = {sigma:g}")
    fig.suptitle(title)
    return _save(fig, path, dpi=90)


def plot_spectrum_panels(
    results: Sequence[dict],
    path: str | os.PathLike | None = None,
    *,
    fit: dict | None = None,
    title: str = "",
) -> Path | Figure:
    """Figure 5 a–c: singular values per σ, cosines ``u_i · v_i`` in the signal subspace,
    and effective dimension against σ with the ``α/σ`` fit.

    ``results`` are ``PatchSpectrum.to_dict()`` dicts (σ on 0–255); ``fit`` is the
    ``fit`` entry of :func:`~filterscope.analysis.spectrum_vs_sigma`'s summary.
    """
    plt = _pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    for r in results:
        ax1.plot(
            np.arange(1, len(r["singular_values"]) + 1),
            r["singular_values"],
            label=f"σ = {r['sigma']:g}",
        )
        cos = np.asarray(r["cosines"], dtype=float)
        ax2.plot(np.arange(1, len(cos) + 1), cos, ".", markersize=3, label=f"σ = {r['sigma']:g}")
    ax1.set_xlabel("index i")
    ax1.set_ylabel("singular value s_i")
    ax1.set_xscale("log")
    ax1.set_title("(a) singular values")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("index i (signal subspace)")
    ax2.set_ylabel("u_i · v_i")
    ax2.set_ylim(-1.05, 1.05)
    ax2.set_title("(b) left/right cosines")
    _draw_effective_dimension(ax3, results, fit)
    ax3.set_ylabel("effective dimension d")
    ax3.set_title("(c) effective dimension")
    ax3.legend(fontsize=8)
    fig.suptitle(title, y=1.03)
    return _save(fig, path)


def plot_subspaces(
    results: Sequence[dict],
    nesting: Sequence[dict],
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
) -> Path | Figure:
    """Figure 7: clean-image energy inside the signal subspace against σ (left), and the
    fraction of each σ's signal subspace inside the reference σ's (right).

    ``results`` are ``PatchSpectrum.to_dict()`` dicts; ``nesting`` the ``nesting``
    entry of :func:`~filterscope.analysis.spectrum_vs_sigma`'s summary.
    """
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    pairs = [(r["sigma"], r["clean_energy_fraction"]) for r in results]
    pairs = [p for p in pairs if p[1] is not None]
    ax1.plot([p[0] for p in pairs], [p[1] for p in pairs], "o-", color="tab:green")
    ax1.set_ylim(0, 1.02)
    ax1.set_xlabel("noise level σ (0–255)")
    ax1.set_ylabel("‖P x‖² / ‖x‖²")
    ax1.set_title("clean energy in signal subspace")
    if nesting:
        ref = nesting[0]["reference_sigma"]
        ax2.plot([n["sigma"] for n in nesting], [n["fraction"] for n in nesting], "s-")
        ax2.set_title(f"subspace at σ inside σ = {ref:g} subspace")
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("noise level σ (0–255)")
    ax2.set_ylabel("fraction")
    fig.suptitle(title, y=1.03)
    return _save(fig, path)


def plot_filter_sums(
    sums: dict,
    path: str | os.PathLike | None = None,
    *,
    highlight: Sequence[bool] | None = None,
    highlight_label: str = "",
    title: str = "",
) -> Path | Figure:
    """Histograms of adaptive-filter sums, one panel per σ, with the 1 ± 0.05 band.

    Parameters
    ----------
    sums : dict
        σ (0–255) -> sequence of filter sums (same pixel order for every σ).
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    highlight : sequence of bool or None, keyword-only
        Pixels drawn as a separate, stacked histogram (e.g. dark regions).
    highlight_label : str, keyword-only
        Legend of the highlighted pixels.
    title : str, keyword-only
        Figure title.
    """
    plt = _pyplot()
    n = len(sums)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), squeeze=False)
    for ax, (sigma, values) in zip(axes[0], sums.items(), strict=True):
        v = np.asarray(values, dtype=float)
        bins = np.linspace(min(v.min(), 0.8), max(v.max(), 1.2), 41)
        if highlight is not None:
            mask = np.asarray(highlight, dtype=bool)
            ax.hist(
                [v[~mask], v[mask]],
                bins=bins,
                stacked=True,
                color=["tab:gray", "tab:red"],
                label=["other pixels", highlight_label],
            )
        else:
            ax.hist(v, bins=bins, color="tab:gray")
        ax.axvspan(0.95, 1.05, color="tab:green", alpha=0.15, label="1 ± 0.05")
        within = float(np.mean(np.abs(v - 1) <= 0.05))
        ax.set_title(
            f"σ = {float(sigma):g}: median {np.median(v):.3f}, {within:.0%} within ±0.05",
            fontsize=9,
        )
        ax.set_xlabel("sum of filter weights")
    axes[0, 0].set_ylabel("pixels")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
