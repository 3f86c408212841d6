"""The four Jacobian analyses end to end, each one call that returns a report.

Each function takes a denoiser and the *clean* image(s), adds Gaussian noise from
``seed`` at each σ, runs the analysis and returns a report object: ``to_json()`` gives
the JSON-ready summary (σ on the 0–255 scale), ``summary()`` the lines a command prints,
and ``save_figures(path)`` draws the paper's figures (matplotlib, imported then).
``filterscope analyze ...`` is these functions plus file reading and writing.

- :func:`analyze_decomposition`: residual, linear part and net bias against σ (Figs 1, 8–10).
- :func:`analyze_filters`: equivalent filters of chosen pixels (Figure 4).
- :func:`analyze_spectrum`: SVD of a patch's Jacobian against σ (Figures 5–7).
- :func:`analyze_dimension`: matrix-free effective dimension of a whole image.
- :func:`analyze_noise_map`: the noise map a blind path feeds its network (issue 33).

σ is on the image scale in the arguments (25/255), on 0–255 in reports and figures.
Each function takes ``device``: the network runs there (a copy of it; the noise is
drawn on the CPU, so every device sees the same noisy images) and the report holds CPU
tensors.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..models.base import with_sigma
from ..models.noise_map import noise_map_summary
from ._core import Function, check_dense_size
from .decomposition import Decomposition, decomposition_vs_sigma, random_patches
from .filters import AdaptiveFilter, adaptive_filters
from .matrix_free import estimate_effective_dim, top_singular_triplets
from .spectrum import PatchSpectrum, spectrum_vs_sigma

#: Suffixes of the figures each report's ``save_figures`` writes beside ``OUT.png``.
FIGURES = {
    "decomposition": ("", "_parts"),
    "filters": ("",),
    "spectrum": ("", "_subspaces", "_vectors"),
    "dimension": ("",),
    "noise-map": ("",),
}


def figure_paths(path: str | os.PathLike, analysis: str) -> list[Path]:
    """The files ``save_figures(path)`` of ``analysis`` writes: ``path`` and its siblings."""
    p = Path(path)
    return [p.with_name(p.stem + suffix + p.suffix) for suffix in FIGURES[analysis]]


def _check_sigma(sigma: float, name: str = "sigma") -> float:
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise InputError(f"{name} must be >= 0, got {sigma * 255:g} (0-255 scale)")
    return sigma


def _training_range(net: object) -> tuple[float, float] | None:
    """σ range (0–255) from the model card, when the card states it."""
    card = getattr(net, "card", None)
    try:
        lo, hi = card["training"]["sigma_range_255"]
        return float(lo), float(hi)
    except (TypeError, KeyError, ValueError):
        return None


def _spread(count: int, most: int) -> list[int]:
    """Up to ``most`` indices spread evenly over ``range(count)``, first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({round(k * (count - 1) / (most - 1)) for k in range(most)})


def _placed(
    denoiser: nn.Module | Function, device: str | torch.device | None
) -> tuple[nn.Module | Function, torch.device]:
    """The denoiser to run and the device to run it on. ``device`` None: where the
    denoiser's weights are (the CPU for a plain function); "auto": a GPU when there is
    one. A module elsewhere is copied there (the caller's model stays where it is); a
    function is given tensors on ``device``. An unknown or absent device is refused."""
    from ..devices import resolve_device
    from ..models.base import module_device

    if device is None:
        return denoiser, module_device(denoiser)
    device = resolve_device(device)
    if isinstance(denoiser, nn.Module) and module_device(denoiser) != device:
        denoiser = copy.deepcopy(denoiser).to(device)
    return denoiser, device


def _noisy(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    from ..noise import add_noise

    return add_noise(x, sigma, generator=seed)


# ----------------------------------------------------------------------------- decomposition


@dataclass
class DecompositionReport:
    """Result of :func:`analyze_decomposition`.

    ``results`` holds one dict of mean norms per σ (see
    :func:`~filterscope.analysis.decomposition_vs_sigma`); ``examples`` the parts of the
    first image or patch at each σ.
    """

    results: list[dict]
    examples: list[Decomposition]
    sigmas_255: list[float]
    patch: int
    patches: int
    names: list[str]
    seed: int
    dtype: torch.dtype
    seconds: float
    training_range: tuple[float, float] | None = None

    @property
    def whole(self) -> bool:
        return self.patch == 0

    def to_json(self) -> dict[str, Any]:
        units = "images" if self.whole else "patches"
        return {
            "mode": "whole images" if self.whole else "patches",
            "patch": None if self.whole else self.patch,
            "patches": None if self.whole else self.patches,
            "images": list(self.names),
            "seed": self.seed,
            "dtype": str(self.dtype).replace("torch.", ""),
            "norm": "per image or patch 255*||v||_2/sqrt(pixels) (RMS on the 0-255 scale), "
            f"mean over {units}",
            "results": self.results,
            "seconds": self.seconds,
        }

    def summary(self) -> list[str]:
        return [
            f"sigma {r['sigma']:6.1f}: noise {r['noise_norm']:8.3f}  residual "
            f"{r['residual_norm']:8.3f}  linear {r['linear_norm']:8.3f}  bias {r['bias_norm']:.3g}"
            for r in self.results
        ]

    def save_figures(self, path: str | os.PathLike, *, label: str = "") -> list[Path]:
        """Norms against σ at ``path`` (Figures 1, 8) and the parts of the first image or
        patch at up to four σ's at ``<stem>_parts<suffix>`` (Figures 9–10)."""
        from ..plotting.analysis import plot_decomposition, plot_decomposition_grid

        count = len(self.names)
        what = (
            f"{count} whole image{'s' if count != 1 else ''}"
            if self.whole
            else f"{self.patches} {self.patch}px patches"
        )
        norms, parts = figure_paths(path, "decomposition")
        written = [
            plot_decomposition(
                self.results, norms, title=f"{label}: {what}", training_range=self.training_range
            )
        ]
        rows = _spread(len(self.sigmas_255), 4)
        example = self.names[0] if self.whole else f"first patch ({self.names[0]})"
        written.append(
            plot_decomposition_grid(
                [self.examples[i] for i in rows],
                [self.sigmas_255[i] for i in rows],
                parts,
                title=f"{label}: {example}",
            )
        )
        return written


def analyze_decomposition(
    denoiser: nn.Module | Function,
    images: Sequence[torch.Tensor],
    sigmas: Sequence[float],
    *,
    patch: int = 20,
    patches: int = 100,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
) -> DecompositionReport:
    """First-order decomposition ``y - f(y) = (I - A_y) y - b_y`` against σ.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser on ``(B, C, H, W)`` tensors.
    images : sequence of Tensor, each (C, H, W)
        Clean images in [0, 1], all with the same channel count.
    sigmas : sequence of float
        Noise levels, image scale.
    patch : int, keyword-only
        Side of the random square patches (Figure 1: 20); 0: the whole images, each one
        network input (Figure 8).
    patches : int, keyword-only
        Number of random patches (ignored when ``patch`` is 0).
    seed : int, keyword-only
        Seed of the patch positions and of the noise.
    dtype : torch.dtype, keyword-only
        float64 (a bias-free network's net bias ~1e-13) or float32 (about 2x faster).
    names : sequence of str, keyword-only
        Names of the images (file names) for the report; default ``image 0``, ...
    device : str, torch.device or None, keyword-only
        Where the network runs: ``"cpu"``, ``"cuda"``, ``"auto"`` (a GPU when there is
        one); None: where its weights are.

    Returns
    -------
    DecompositionReport
    """
    net, device = _placed(denoiser, device)
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 0:
        raise InputError(
            f"patch must be a number of pixels >= 1, or 0 for whole images, got {patch}"
        )
    if patches < 1:
        raise InputError(f"patches must be positive, got {patches}")
    images = list(images)
    if not images:
        raise InputError("no images given")
    smallest = min(min(image.shape[-2:]) for image in images)
    if patch > smallest:
        raise InputError(
            f"patch {patch} is larger than the smallest image side ({smallest} pixels); "
            f"use patch {smallest} or less, or patch 0 for whole images"
        )
    sigmas = [_check_sigma(s) for s in sigmas]
    if patch == 0:
        x = [image.to(device) for image in images]
    else:
        generator = torch.Generator().manual_seed(int(seed))
        x = random_patches(images, patch=patch, count=patches, generator=generator).to(device)
    start = time.perf_counter()
    results, examples = decomposition_vs_sigma(
        net, x, sigmas, seed=seed, dtype=dtype, return_examples=True
    )
    return DecompositionReport(
        results=results,
        examples=[
            Decomposition(e.y.cpu(), e.output.cpu(), e.linear.cpu(), e.bias.cpu()) for e in examples
        ],
        sigmas_255=[s * 255.0 for s in sigmas],
        patch=patch,
        patches=patches,
        names=list(names) if names is not None else [f"image {i}" for i in range(len(images))],
        seed=seed,
        dtype=dtype,
        seconds=time.perf_counter() - start,
        training_range=_training_range(denoiser),
    )


# ----------------------------------------------------------------------------- filters


@dataclass
class FiltersReport:
    """Result of :func:`analyze_filters`: the noisy image and the filter of each pixel."""

    y: torch.Tensor
    filters: list[AdaptiveFilter]
    sigma_255: float
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma_255,
            "seed": self.seed,
            "filters": [f.to_dict() for f in self.filters],
        }

    def summary(self) -> list[str]:
        return [
            f"pixel {f.row.pixel}: sum {f.sum:.4f}, extent rms {f.extent_rms:.2f} px, "
            f"99% within {f.extent_99} px, negative {f.negative_fraction:.1%}"
            for f in self.filters
        ]

    def save_figures(self, path: str | os.PathLike, *, label: str = "") -> list[Path]:
        """The marked pixels and their filters, negative weights red (Figure 4)."""
        from ..plotting.analysis import plot_filters

        title = f"{label}, σ = {self.sigma_255:g}"
        return [plot_filters(self.y, self.filters, path, title=title)]


def analyze_filters(
    denoiser: nn.Module | Function,
    x: torch.Tensor,
    pixels: Sequence[Sequence[int]],
    *,
    sigma: float,
    seed: int = 0,
    channel: int = 0,
    device: str | torch.device | None = None,
) -> FiltersReport:
    """Equivalent filters (rows of ``A_y``) of chosen pixels of the noisy full-size image.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser on ``(B, C, H, W)`` tensors.
    x : Tensor, shape (1, C, H, W)
        Clean image in [0, 1].
    pixels : sequence of (x, y)
        Column and row of each output pixel.
    sigma : float, keyword-only
        Noise level, image scale.
    seed : int, keyword-only
        Seed of the noise.
    channel : int, keyword-only
        Output channel (RGB models).
    device : str, torch.device or None, keyword-only
        Where the network runs (see :func:`analyze_decomposition`).

    Returns
    -------
    FiltersReport
    """
    sigma = _check_sigma(sigma)
    net, device = _placed(denoiser, device)
    y = _noisy(x, sigma, seed)
    filters = adaptive_filters(with_sigma(net, sigma), y.to(device), pixels, channel=channel)
    filters = [replace(f, row=replace(f.row, weights=f.row.weights.cpu())) for f in filters]
    return FiltersReport(y=y.cpu(), filters=filters, sigma_255=sigma * 255.0, seed=seed)


# ----------------------------------------------------------------------------- spectrum


@dataclass
class SpectrumReport:
    """Result of :func:`analyze_spectrum`: one :class:`PatchSpectrum` per σ, the nesting
    of signal subspaces across σ, and the log–log fit of ``d`` against σ."""

    spectra: list[PatchSpectrum]
    nesting: list[dict]
    fit: dict | None
    clean: torch.Tensor
    patch: int
    at: tuple[int, int]
    seed: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "patch": self.patch,
            "at": list(self.at),
            "seed": self.seed,
            "results": [s.to_dict() for s in self.spectra],
            "nesting": self.nesting,
            "fit": self.fit,
            "seconds": self.seconds,
        }

    def summary(self) -> list[str]:
        lines = [
            f"sigma {r['sigma']:6.1f}: d = {r['effective_dim']:8.2f}  clean energy "
            f"{r['clean_energy_fraction']:.4f}  mean cos {r['cosine_mean']:.3f}"
            for r in (s.to_dict() for s in self.spectra)
        ]
        lines += [
            f"sigma {n['sigma']:g} subspace inside sigma {n['reference_sigma']:g}: "
            f"{n['fraction']:.3f}"
            for n in self.nesting
        ]
        if self.fit is not None:
            lines.append(f"log-log slope of d against sigma: {self.fit['slope']:.3f}")
        return lines

    def save_figures(
        self, path: str | os.PathLike, *, label: str = "", image_name: str = "image"
    ) -> list[Path]:
        """Singular values, cosines and ``d`` against σ (Figure 5); clean energy and
        nesting (Figure 7); leading and trailing singular vectors at σ ≈ 50 (Figure 6)."""
        from ..plotting.analysis import plot_singular_vectors, plot_spectrum_panels, plot_subspaces

        results = [s.to_dict() for s in self.spectra]
        panels, subspaces, vectors_path = figure_paths(path, "spectrum")
        left, top = self.at
        where = f"{image_name}, {self.patch}x{self.patch} patch at ({left}, {top})"
        written = [plot_spectrum_panels(results, panels, fit=self.fit, title=f"{label}: {where}")]
        written.append(plot_subspaces(results, self.nesting, subspaces, title=where))
        chosen = min(self.spectra, key=lambda sp: abs(sp.sigma * 255.0 - 50.0))
        n = len(chosen.singular_values)
        idx = sorted({0, 1, 2, n - 3, n - 2, n - 1} & set(range(n)))
        labels = [f"#{i + 1}  s={float(chosen.singular_values[i]):.2g}" for i in idx]
        written.append(
            plot_singular_vectors(
                chosen.singular_vector_images(idx),
                vectors_path,
                labels=labels,
                clean=self.clean[0],
                title=f"left singular vectors, sigma = {chosen.sigma * 255.0:g}",
            )
        )
        return written


def check_spectrum_patch(
    shape: Sequence[int], patch: int, at: tuple[int, int] | None, max_bytes: int
) -> tuple[int, int]:
    """Check a patch of side ``patch`` at top-left ``at`` (None: centred) of an image of
    ``shape`` (…, C, H, W) and the size of its dense Jacobian; return ``(left, top)``."""
    channels, height, width = shape[-3:]
    if patch < 1:
        raise InputError(f"patch must be a positive number of pixels, got {patch}")
    if patch > min(height, width):
        raise InputError(
            f"patch {patch} is larger than the {width}x{height} image; use patch "
            f"{min(height, width)} or less"
        )
    check_dense_size(
        channels * patch * patch, 4, max_bytes, what=f"the Jacobian of a {patch}x{patch} patch"
    )
    if at is None:
        return (width - patch) // 2, (height - patch) // 2
    left, top = at
    if not (0 <= left <= width - patch and 0 <= top <= height - patch):
        raise InputError(
            f"a {patch}x{patch} patch at ({left}, {top}) does not fit in the {width}x"
            f"{height} image; at = (x, y) is its top-left corner, x <= {width - patch}, "
            f"y <= {height - patch}"
        )
    return left, top


def analyze_spectrum(
    denoiser: nn.Module | Function,
    x: torch.Tensor,
    sigmas: Sequence[float],
    *,
    patch: int = 40,
    at: tuple[int, int] | None = None,
    seed: int = 0,
    max_bytes: int = 2 << 30,
    device: str | torch.device | None = None,
) -> SpectrumReport:
    """SVD of the Jacobian block of a patch inside the noisy image at each σ (rows and
    columns of the patch of the whole image's Jacobian; Mohan et al. 2020, §6.2).

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser on ``(B, C, H, W)`` tensors.
    x : Tensor, shape (1, C, H, W)
        Clean image in [0, 1].
    sigmas : sequence of float
        Noise levels, image scale.
    patch : int, keyword-only
        Side of the square patch.
    at : (x, y) or None, keyword-only
        Column and row of the patch's top-left corner; None: centred.
    seed : int, keyword-only
        Seed of the noise.
    max_bytes : int, keyword-only
        Largest dense Jacobian to build.
    device : str, torch.device or None, keyword-only
        Where the network runs and the SVD is computed (see
        :func:`analyze_decomposition`).

    Returns
    -------
    SpectrumReport
    """
    left, top = check_spectrum_patch(x.shape, patch, at, max_bytes)
    sigmas = [_check_sigma(s) for s in sigmas]
    net, device = _placed(denoiser, device)
    clean = x[:, :, top : top + patch, left : left + patch]
    start = time.perf_counter()
    spectra, summary = spectrum_vs_sigma(
        net,
        x.to(device),
        sigmas,
        seed=seed,
        max_bytes=max_bytes,
        box=(top, left, patch, patch),
    )
    return SpectrumReport(
        spectra=[
            replace(
                s,
                u=s.u.cpu(),
                singular_values=s.singular_values.cpu(),
                vh=s.vh.cpu(),
                cosines=s.cosines.cpu(),
            )
            for s in spectra
        ],
        nesting=summary["nesting"],
        fit=summary.get("fit"),
        clean=clean.cpu(),
        patch=patch,
        at=(left, top),
        seed=seed,
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- dimension


@dataclass
class DimensionReport:
    """Result of :func:`analyze_dimension`: the estimate of
    :func:`~filterscope.analysis.estimate_effective_dim` and, when asked, the top
    singular values."""

    estimate: dict
    sigma_255: float
    seed: int
    top_singular_values: list[float] | None = None
    top_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        payload = {"sigma": self.sigma_255, "seed": self.seed, **self.estimate}
        if self.top_singular_values is not None:
            payload["top_singular_values"] = self.top_singular_values
            payload["top_seconds"] = self.top_seconds
        return payload

    def summary(self) -> list[str]:
        r = self.estimate
        lo, hi = r["interval"]
        return [
            f"effective dimension {r['effective_dim']:.1f} of {r['pixels']} "
            f"({r['confidence']:.0%} interval {lo:.1f}-{hi:.1f}, {r['probes']} probes, "
            f"{r['seconds']:.1f} s)"
        ]

    def save_figures(self, path: str | os.PathLike, *, label: str = "") -> list[Path]:
        """The probe values, their running mean and the interval."""
        from ..plotting.analysis import plot_dimension

        return [plot_dimension(self.estimate, path, title=f"σ = {self.sigma_255:g}")]


def analyze_dimension(
    denoiser: nn.Module | Function,
    x: torch.Tensor,
    *,
    sigma: float,
    probes: int = 32,
    batch: int = 4,
    rtol: float | None = None,
    confidence: float = 0.95,
    top: int = 0,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> DimensionReport:
    """Matrix-free effective dimension ``d = E‖A_y z‖²`` of the whole noisy image.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser on ``(B, C, H, W)`` tensors.
    x : Tensor, shape (1, C, H, W)
        Clean image in [0, 1].
    sigma : float, keyword-only
        Noise level, image scale.
    probes, batch, rtol, confidence : keyword-only
        See :func:`~filterscope.analysis.estimate_effective_dim`; ``probes`` >= 2 for
        an interval.
    top : int, keyword-only
        Also the ``top`` largest singular values (block Krylov); 0: not computed.
    seed : int, keyword-only
        Seed of the noise and of the probes.
    device : str, torch.device or None, keyword-only
        Where the network runs (see :func:`analyze_decomposition`).

    Returns
    -------
    DimensionReport
    """
    sigma = _check_sigma(sigma)
    if probes < 2:
        raise InputError(f"probes must be at least 2 for an interval, got {probes}")
    net, device = _placed(denoiser, device)
    net = with_sigma(net, sigma)
    y = _noisy(x, sigma, seed).to(device)
    estimate = estimate_effective_dim(
        net, y, probes=probes, batch=batch, rtol=rtol, confidence=confidence, seed=seed
    )
    report = DimensionReport(estimate=estimate, sigma_255=sigma * 255.0, seed=seed)
    if top:
        start = time.perf_counter()
        _, s, _ = top_singular_triplets(net, y, top, seed=seed)
        report.top_singular_values = s.tolist()
        report.top_seconds = time.perf_counter() - start
    return report


# ----------------------------------------------------------------------------- noise map


@dataclass
class NoiseMapReport:
    """Result of :func:`analyze_noise_map`: the noisy image, the noise map its blind path
    feeds the network (``fed``) and the estimator's local map (``local``), each
    ``(1, k, H, W)`` on the image scale."""

    y: torch.Tensor
    fed: torch.Tensor
    local: torch.Tensor
    sigma_255: float
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma_255,
            "seed": self.seed,
            "noise_map_255": noise_map_summary(self.fed),
            "local_map_255": noise_map_summary(self.local),
        }

    def summary(self) -> list[str]:
        lines = []
        for name, level in (("fed to the network", self.fed), ("local estimate", self.local)):
            m = noise_map_summary(level)
            lines.append(
                f"noise map {name}: mean {m['mean']:.2f}, min {m['min']:.2f}, "
                f"max {m['max']:.2f} (0-255)"
            )
        return lines

    def save_figures(self, path: str | os.PathLike, *, label: str = "") -> list[Path]:
        """Noisy image | map fed to the network | local map, on one colour scale."""
        from ..plotting.analysis import plot_noise_maps

        maps = {"fed to the network": self.fed[0], "local estimate": self.local[0]}
        title = f"{label}, σ = {self.sigma_255:g}" if self.sigma_255 else label
        return [plot_noise_maps(self.y[0], maps, path, title=title)]


def analyze_noise_map(
    denoiser: nn.Module, x: torch.Tensor, *, sigma: float, seed: int = 0
) -> NoiseMapReport:
    """The noise map a model's blind path estimates for a noisy image, as it runs.

    Parameters
    ----------
    denoiser : nn.Module
        A model with a noise-map estimator (a DRUNet with ``noise_estimator``; its
        ``estimate_noise_map`` is what ``sigma=None`` feeds the network: the local map,
        or one level per image with ``pooled_noise_map``).
    x : Tensor, shape (1, C, H, W)
        Clean image in [0, 1]; with ``sigma = 0``, an image already noisy (a photo),
        taken as it is.
    sigma : float, keyword-only
        Gaussian noise added to ``x``, image scale; 0 adds none.
    seed : int, keyword-only
        Seed of the noise.

    Returns
    -------
    NoiseMapReport

    Notes
    -----
    Runs on the whole image at once (no tiles): one pass of the estimator, a few
    hundred multiply-adds per pixel.
    """
    sigma = _check_sigma(sigma)
    estimator = getattr(denoiser, "estimator", None)
    if not isinstance(estimator, nn.Module) or not hasattr(denoiser, "estimate_noise_map"):
        name = denoiser.label() if hasattr(denoiser, "label") else type(denoiser).__name__
        raise InputError(f"{name} has no noise-map estimator, so it has no noise map to show")
    y = _noisy(x, sigma, seed) if sigma > 0 else x
    dtype = getattr(denoiser, "input_dtype", None) or y.dtype
    with torch.no_grad():
        fed = denoiser.estimate_noise_map(y.to(dtype)).float()
        local = estimator(y.to(dtype)).float()
    return NoiseMapReport(
        y=y.cpu(), fed=fed.cpu(), local=local.cpu(), sigma_255=sigma * 255, seed=seed
    )
