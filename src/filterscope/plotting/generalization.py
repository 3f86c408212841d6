"""Generalization across noise levels (Mohan et al. 2020, Figures 3, 11, 12, 18, 19).

Output quality against input quality, one curve per model, the training range
shaded, the identity (no denoising) dashed. The input comes from a result of
:func:`filterscope.evaluation.evaluate` (or ``filterscope evaluate --json``): a dict or
the path of its JSON file.

A model's training range (σ on the 0–255 scale) is read from ``training_ranges`` passed
by the caller, else from the result's ``models`` section (which ``filterscope evaluate``
fills from the model's metadata, its card's ``training.sigma_range_255``); never from
the model's name.
It is drawn in input units through the result's own σ → input-quality mapping: linear
interpolation in log σ between the evaluated σ values. Outside them, input PSNR is
extrapolated at −20 dB per decade of σ, and input SSIM reaches the plot's edge; σ = 0
is the right-hand edge (no noise).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .analysis import _pyplot, _save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = {"psnr": ("PSNR (dB)", "psnr_in", "psnr"), "ssim": ("SSIM", "ssim_in", "ssim")}
ARCH_LABELS = {"dncnn": "DnCNN", "rcnn": "Recurrent CNN", "unet": "UNet", "sdensenet": "DenseNet"}
# Colours of the paper's Figures 11 and 12: red with bias, blue bias-free.
BIAS_COLOR = "tab:red"
BIAS_FREE_COLOR = "tab:blue"
BAND_COLOR = "tab:blue"


def load_result(result: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """An evaluation result as a dict, read from its JSON file if given a path."""
    if isinstance(result, Mapping):
        return dict(result)
    return json.loads(Path(result).read_text())


def _model_names(result: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for entry in result["results"]:
        if entry["model"] not in names:
            names.append(entry["model"])
    return names


def _curve(result: Mapping[str, Any], name: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(input, output) values of one model, in order of increasing σ."""
    _, key_in, key_out = METRICS[metric]
    entries = sorted((e for e in result["results"] if e["model"] == name), key=lambda e: e["sigma"])
    return (
        np.array([e[key_in] for e in entries], dtype=float),
        np.array([e[key_out] for e in entries], dtype=float),
    )


def input_quality_by_sigma(
    result: Mapping[str, Any], metric: str = "psnr"
) -> tuple[np.ndarray, np.ndarray]:
    """The result's σ (0–255) → mean input PSNR or SSIM, σ increasing.

    All models of one sweep see the same noisy images, so the input quality at a σ is
    the same for all of them; the mean over models absorbs float round-off.
    """
    _, key_in, _ = METRICS[metric]
    by_sigma: dict[float, list[float]] = {}
    for entry in result["results"]:
        by_sigma.setdefault(float(entry["sigma"]), []).append(float(entry[key_in]))
    sigmas = np.array(sorted(s for s in by_sigma if s > 0), dtype=float)
    values = np.array([np.mean(by_sigma[s]) for s in sigmas], dtype=float)
    return sigmas, values


def sigma_to_input(
    sigma_255: float, sigmas: np.ndarray, values: np.ndarray, metric: str = "psnr"
) -> float:
    """Input quality at ``sigma_255`` from a σ → input-quality table (see the module notes).

    Returns ``inf`` for σ = 0 (and, for SSIM, below the table), ``-inf`` for SSIM above
    the table: the band then reaches the plot's edge.
    """
    if sigma_255 <= 0 or len(sigmas) == 0:
        return math.inf
    log_sigma = math.log(sigma_255)
    logs = np.log(sigmas)
    if logs[0] <= log_sigma <= logs[-1]:
        return float(np.interp(log_sigma, logs, values))
    if metric == "psnr":
        # Outside the table: PSNR of white noise falls by 20 dB per decade of σ.
        end = 0 if log_sigma < logs[0] else -1
        return float(values[end] - 20.0 * (log_sigma - logs[end]) / math.log(10.0))
    return math.inf if log_sigma < logs[0] else -math.inf


def training_range(
    result: Mapping[str, Any],
    name: str,
    training_ranges: Mapping[str, Sequence[float] | None] | None = None,
) -> tuple[float, float] | None:
    """A model's training σ range (0–255) from the caller or the result's metadata."""
    if training_ranges and name in training_ranges:
        given = training_ranges[name]
        return None if given is None else (float(given[0]), float(given[1]))
    info = (result.get("models") or {}).get(name) or {}
    if info.get("training_sigma_range_255") is not None:
        lo, hi = info["training_sigma_range_255"]
        return (float(lo), float(hi))
    return None


def _x_limits(result: Mapping[str, Any], names: Sequence[str], metric: str) -> tuple[float, float]:
    xs = np.concatenate([_curve(result, n, metric)[0] for n in names])
    xs = xs[np.isfinite(xs)]
    lo, hi = float(xs.min()), float(xs.max())
    margin = 0.05 * (hi - lo) if hi > lo else (1.0 if metric == "psnr" else 0.05)
    return lo - margin, hi + margin


def _draw_band(ax, band: tuple[float, float], xlim: tuple[float, float], **style) -> None:
    left, right = max(min(band), xlim[0]), min(max(band), xlim[1])
    if right > left:
        ax.axvspan(left, right, **style)


def _band(
    sigma_range: tuple[float, float], table: tuple[np.ndarray, np.ndarray], metric: str
) -> tuple[float, float]:
    sigmas, values = table
    # High σ is low input quality: the band runs from hi (left) to lo (right).
    return (
        sigma_to_input(sigma_range[1], sigmas, values, metric),
        sigma_to_input(sigma_range[0], sigmas, values, metric),
    )


def _format_range(sigma_range: tuple[float, float]) -> str:
    return f"[{sigma_range[0]:g}, {sigma_range[1]:g}]"


def _finish_axes(ax, metric: str, xlim: tuple[float, float]) -> None:
    label = METRICS[metric][0]
    ax.plot(xlim, xlim, "k--", linewidth=0.8, label="identity (noisy input)")
    ax.set_xlim(*xlim)
    ax.set_xlabel(f"input {label}")
    ax.set_ylabel(f"output {label}")
    ax.grid(alpha=0.3)


def _default_title(result: Mapping[str, Any]) -> str:
    protocol = result.get("protocol") or {}
    parts = [f"{protocol.get('noise', 'gaussian')} noise"]
    if protocol.get("blur"):
        parts.append(f"blur {protocol['blur']:g} px")
    data = protocol.get("data") or result.get("data")
    if data:
        parts.insert(0, Path(str(data)).name)
    return ", ".join(parts)


def plot_generalization(
    result: Mapping[str, Any] | str | os.PathLike,
    path: str | os.PathLike | None = None,
    *,
    models: Sequence[str] | None = None,
    training_ranges: Mapping[str, Sequence[float] | None] | None = None,
    metrics: Sequence[str] = ("psnr", "ssim"),
    title: str | None = None,
) -> Path | Figure:
    """Output against input quality for every model of a sweep (Figure 3 layout).

    Parameters
    ----------
    result : dict or path
        What :func:`filterscope.evaluation.evaluate` returned (optionally with a
        ``models`` section, as written by ``filterscope evaluate``), or its JSON file.
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    models : sequence of str, keyword-only
        Models to draw, in this order (default: all, in the result's order).
    training_ranges : mapping, keyword-only
        Model name → training σ range ``(lo, hi)`` on the 0–255 scale, or None for
        none; overrides what the result and the names say.
    metrics : sequence of {"psnr", "ssim"}, keyword-only
        One panel per metric: output PSNR against input PSNR (Figures 3, 11), output
        SSIM against input SSIM (Figure 12).
    title : str, keyword-only
        Figure title (default: data folder, noise kind and blur from the result).

    Returns
    -------
    Path or Figure
        ``path``.

    Notes
    -----
    Each distinct training range is shaded once (light blue; overlapping ranges look
    darker), converted to input quality as the module docstring says.
    """
    plt = _pyplot()
    result = load_result(result)
    names = list(models) if models is not None else _model_names(result)
    unknown = sorted(set(names) - set(_model_names(result)))
    if unknown:
        raise ValueError(f"models not in the result: {unknown}")
    for metric in metrics:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose from {sorted(METRICS)}")
    ranges = {name: training_range(result, name, training_ranges) for name in names}
    distinct = sorted({r for r in ranges.values() if r is not None}, key=lambda r: (r[1], r[0]))

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.0 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        xlim = _x_limits(result, names, metric)
        table = input_quality_by_sigma(result, metric)
        for sigma_range in distinct:
            _draw_band(
                ax,
                _band(sigma_range, table, metric),
                xlim,
                color=BAND_COLOR,
                alpha=0.12,
                linewidth=0,
                label=f"training σ ∈ {_format_range(sigma_range)}",
            )
        for name in names:
            x_in, y_out = _curve(result, name, metric)
            ax.plot(x_in, y_out, "o-", markersize=3.5, linewidth=1.4, label=short_label(name))
        _finish_axes(ax, metric, xlim)
    # One legend below both panels, so that it hides no curve.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle(_default_title(result) if title is None else title)
    fig.tight_layout()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(3, len(labels)),
        fontsize=7,
        frameon=False,
    )
    return _save(fig, path)


def short_label(name: str, *, parts: int = 3) -> str:
    """A model name for a legend: checkpoint paths shortened to their last ``parts`` parts."""
    pieces = [p for p in name.replace("\\", "/").split("/") if p]
    if len(pieces) <= parts:
        return name
    return "…/" + "/".join(pieces[-parts:])


def classify_model(
    result: Mapping[str, Any], name: str
) -> tuple[str, bool, tuple[float, float]] | None:
    """``(arch, bias, training range)`` of a network in a result, or None if unknown.

    Read from the result's ``models`` section (the models' metadata), never from the name.
    """
    info = (result.get("models") or {}).get(name) or {}
    arch, bias = info.get("arch"), info.get("bias")
    sigma_range = training_range(result, name)
    if arch is None or bias is None or sigma_range is None:
        return None
    return str(arch), bool(bias), sigma_range


def plot_generalization_grid(
    result: Mapping[str, Any] | str | os.PathLike,
    path: str | os.PathLike | None = None,
    *,
    metric: str = "psnr",
    archs: Sequence[str] | None = None,
    include_others: bool = True,
    title: str | None = None,
) -> Path | Figure:
    """Bias against bias-free, one panel per architecture and training range.

    Rows are architectures, columns training ranges (increasing); in each panel the
    network with bias is red and the bias-free one blue, as in Figures 11 (PSNR) and
    12 (SSIM) of Mohan et al.; a single ``archs=("dncnn",)`` row is Figure 3, and a
    result on uniform noise gives Figures 18 and 19.

    Parameters
    ----------
    result : dict or path
        An evaluation result holding many networks (e.g. all published checkpoints,
        named by their paths ``.../<arch>/<bias|bias_free>/<lo>-<hi>.pt``).
    path : str, path-like or None
        File to write (format from the suffix); None: return the figure instead.
    metric : {"psnr", "ssim"}, keyword-only
        Output PSNR against input PSNR, or output SSIM against input SSIM.
    archs : sequence of str, keyword-only
        Rows to draw, in this order (default: every architecture in the result).
    include_others : bool, keyword-only
        Also draw, in gray in every panel, the models that are not a classified
        network (the BM3D/NLM baselines, for instance).
    title : str, keyword-only
        Figure title (default: from the result's protocol).

    Returns
    -------
    Path or Figure
        ``path``.

    Raises
    ------
    ValueError
        No model of the result could be placed in the grid.
    """
    plt = _pyplot()
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {sorted(METRICS)}")
    result = load_result(result)
    names = _model_names(result)
    placed: dict[tuple[str, tuple[float, float]], dict[bool, str]] = {}
    others = []
    for name in names:
        found = classify_model(result, name)
        if found is None:
            others.append(name)
            continue
        arch, bias, sigma_range = found
        placed.setdefault((arch, sigma_range), {})[bias] = name
    if not placed:
        raise ValueError("no model of the result has a known architecture, bias and range")
    order = list(ARCH_LABELS)
    present = sorted({a for a, _ in placed}, key=lambda a: order.index(a) if a in order else 99)
    rows = [a for a in (archs or present) if a in present]
    if not rows:
        raise ValueError(f"none of the architectures {list(archs or [])} is in the result")
    columns = sorted({r for a, r in placed if a in rows}, key=lambda r: (r[1], r[0]))

    table = input_quality_by_sigma(result, metric)
    xlim = _x_limits(result, names, metric)
    fig, axes = plt.subplots(
        len(rows),
        len(columns),
        figsize=(3.3 * len(columns), 3.0 * len(rows)),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for r, arch in enumerate(rows):
        for c, sigma_range in enumerate(columns):
            ax = axes[r][c]
            pair = placed.get((arch, sigma_range), {})
            _draw_band(
                ax,
                _band(sigma_range, table, metric),
                xlim,
                color=BAND_COLOR,
                alpha=0.15,
                linewidth=0,
                label="training range",
            )
            if include_others:
                for k, name in enumerate(others):
                    x_in, y_out = _curve(result, name, metric)
                    shade = str(0.25 + 0.45 * k / max(1, len(others) - 1))
                    ax.plot(x_in, y_out, "-", color=shade, linewidth=1.0, label=short_label(name))
            for bias, color, label in (
                (True, BIAS_COLOR, "CNN"),
                (False, BIAS_FREE_COLOR, "BF-CNN"),
            ):
                if bias in pair:
                    x_in, y_out = _curve(result, pair[bias], metric)
                    ax.plot(
                        x_in, y_out, "o-", color=color, markersize=3, linewidth=1.4, label=label
                    )
            _finish_axes(ax, metric, xlim)
            ax.set_title(
                f"{ARCH_LABELS.get(arch, arch)}, σ ∈ {_format_range(sigma_range)}", fontsize=9
            )
            if r != len(rows) - 1:
                ax.set_xlabel("")
            if c != 0:
                ax.set_ylabel("")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(_default_title(result) if title is None else title)
    fig.tight_layout()
    return _save(fig, path)


__all__ = [
    "classify_model",
    "input_quality_by_sigma",
    "load_result",
    "plot_generalization",
    "plot_generalization_grid",
    "short_label",
    "sigma_to_input",
    "training_range",
]
