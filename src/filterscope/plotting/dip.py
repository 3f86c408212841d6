"""Figures of the deep-image-prior analysis (Tachella et al. 2021, Figures 4 and 5).

- :func:`plot_weight_change`: PSNR, mean ``ℓ2`` and mean ``ℓ∞`` weight change of the
  intermediate layers against the width, one line per optimiser, log–log (Figure 4).
- :func:`plot_preactivation_eigenvectors`: the leading eigenvectors of the covariance of
  the last pre-activations, one row per training setting (Figure 5).
- :func:`plot_trajectories`: PSNR (or SURE) against the iteration for several runs.
- :func:`plot_ntk_gap`: the gap between a trained network and NTK twicing against the
  width (the theory-versus-practice check of :func:`filterscope.dip.ntk_gap`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .analysis import _pyplot, _save

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _slope(widths, values) -> float | None:
    from ..dip.weights import loglog_slope

    pairs = [(w, v) for w, v in zip(widths, values, strict=True) if v and v > 0]
    if len({w for w, _ in pairs}) < 2:
        return None
    return loglog_slope([w for w, _ in pairs], [v for _, v in pairs])


def plot_weight_change(
    rows: Sequence[Mapping], path: str | os.PathLike | None = None, *, title: str = ""
) -> Path | Figure:
    """Figure 4: weight change of the intermediate layers against the width.

    Parameters
    ----------
    rows : sequence of mapping
        One per run: ``optimizer`` (the line it belongs to), ``width``, ``l2`` (mean
        ``‖w^t − w^0‖₂`` over the intermediate layers), ``linf`` (mean ``max|Δw|``) and,
        optionally, ``psnr`` (dB). Several rows with the same optimiser and width (Monte
        Carlo repetitions) are drawn as their mean (geometric for the weight changes)
        with min–max error bars.
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    title : str, keyword-only

    Returns
    -------
    Path or Figure

    Notes
    -----
    The legend gives the fitted log–log slope (theory: −1/2 for gradient descent).
    """
    plt = _pyplot()
    has_psnr = any(r.get("psnr") is not None for r in rows)
    keys = (["psnr"] if has_psnr else []) + ["l2", "linf"]
    labels = {"psnr": "PSNR (dB)", "l2": "mean ‖w^t − w^0‖₂", "linf": "mean max |w^t − w^0|"}
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.5), squeeze=False)
    for optimizer in sorted({r["optimizer"] for r in rows}):
        mine = [r for r in rows if r["optimizer"] == optimizer]
        widths = sorted({r["width"] for r in mine})
        for ax, key in zip(axes[0], keys, strict=True):
            groups = [[r[key] for r in mine if r["width"] == w and r.get(key)] for w in widths]
            keep = [(w, g) for w, g in zip(widths, groups, strict=True) if g]
            if not keep:
                continue
            ws = np.array([w for w, _ in keep], dtype=float)
            # weight changes spread over decades: their geometric mean, whose log-log fit
            # is the least-squares fit to every run
            center = np.mean if key == "psnr" else (lambda g: np.exp(np.mean(np.log(g))))
            mean = np.array([center(g) for _, g in keep])
            err = np.array(  # clipped at 0: a geometric mean can round past min or max
                [
                    [m - min(g) for m, (_, g) in zip(mean, keep, strict=True)],
                    [max(g) - m for m, (_, g) in zip(mean, keep, strict=True)],
                ]
            )
            err = np.maximum(err, 0.0)
            label = optimizer
            if key != "psnr":
                slope = _slope(ws, mean)
                if slope is not None:
                    label = f"{optimizer} (slope {slope:.2f})"
            ax.errorbar(ws, mean, yerr=err, marker="o", capsize=3, label=label)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.set_xscale("log", base=2)
        if key != "psnr":
            ax.set_yscale("log")
        ax.set_xlabel("channels c")
        ax.set_ylabel(labels[key])
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_preactivation_eigenvectors(
    panels: Mapping[str, torch.Tensor], path: str | os.PathLike | None = None, *, title: str = ""
) -> Path | Figure:
    """Figure 5: leading eigenvectors of ``Σ_{a^{L-1}}`` as images, one row per setting.

    Parameters
    ----------
    panels : mapping of str to Tensor, shape (k, H, W)
        Row label (e.g. ``"Adam, noise input"``) to the eigenvectors of
        :func:`~filterscope.dip.weights.preactivation_eigenvectors`.
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    title : str, keyword-only

    Returns
    -------
    Path or Figure
    """
    plt = _pyplot()
    rows = list(panels.items())
    k = max(v.shape[0] for _, v in rows)
    fig, axes = plt.subplots(len(rows), k, figsize=(2.2 * k, 2.3 * len(rows)), squeeze=False)
    for i, (label, vecs) in enumerate(rows):
        for j in range(k):
            ax = axes[i, j]
            ax.axis("off")
            if j >= vecs.shape[0]:
                continue
            a = vecs[j].detach().to("cpu", torch.float64).numpy()
            lim = max(float(np.abs(a).max()), 1e-12)
            ax.imshow(a, cmap="gray", vmin=-lim, vmax=lim)
            ax.set_title(f"{label}: #{j + 1}" if j == 0 else f"#{j + 1}", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_trajectories(
    runs: Mapping[str, Mapping],
    path: str | os.PathLike | None = None,
    *,
    title: str = "",
    levels: Mapping[str, float] | None = None,
) -> Path | Figure:
    """PSNR against the iteration (log scale) for several runs.

    ``runs`` maps a label to a trajectory dict (``FitResult.trajectory``). Runs without
    a PSNR curve are drawn with their SURE estimate, as ``10 log10(1/SURE)`` (dashed).
    ``levels`` maps a label to a PSNR drawn as a dotted horizontal line (published
    values, say).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, value in (levels or {}).items():
        ax.axhline(value, color="0.6", linestyle=":", linewidth=1)
        ax.annotate(
            label,
            (0.01, value),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            color="0.4",
            va="bottom",
        )
    for label, traj in runs.items():
        it = np.asarray(traj["iteration"], dtype=float)
        if traj.get("psnr"):
            ax.plot(np.maximum(it, 1), traj["psnr"], label=label)
        elif traj.get("sure"):
            sure = [10 * math.log10(1 / s) if s > 0 else np.nan for s in traj["sure"]]
            ax.plot(np.maximum(it, 1), sure, "--", label=f"{label} (SURE)")
    ax.set_xscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("PSNR (dB)")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def plot_ntk_gap(
    result: Mapping, path: str | os.PathLike | None = None, *, title: str = ""
) -> Path | Figure:
    """Theory against practice: the relative gap to NTK twicing against the width.

    ``result`` is the dict of :func:`filterscope.dip.ntk_gap`; the left panel is the
    overall gap (log–log, with the ``c^{-1/2}`` reference), the right one the gap along
    the trajectory for each width.
    """
    plt = _pyplot()
    widths = np.asarray(result["widths"], dtype=float)
    gaps = np.asarray(result["gap"], dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    slope = result.get("slope")
    label = "measured" if slope is None else f"measured (slope {slope:.2f})"
    ax1.loglog(widths, gaps, "o-", label=label)
    ax1.loglog(widths, gaps[0] * np.sqrt(widths[0] / widths), "k--", label="∝ c^(−1/2)")
    ax1.set_xlabel("channels c")
    ax1.set_ylabel("relative gap to NTK twicing")
    ax1.legend()
    for w, curve in zip(result["widths"], result["gap_per_iteration"], strict=True):
        ax2.plot(np.arange(1, len(curve) + 1), curve, label=f"c = {w}")
    ax2.set_yscale("log")
    ax2.set_xlabel("gradient descent step t")
    ax2.set_ylabel("‖z_net − z_ntk‖ / ‖z_ntk‖")
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
