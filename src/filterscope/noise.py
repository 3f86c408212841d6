"""Noise models. σ is on the image scale ([0, 1] images; 25/255 ≈ 0.098)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from .camera_noise import (
    DEFAULT_OPTIONS,
    NoiseOptions,
    camera_noise,
    correlated_noise,
    poisson_gaussian_noise,
    sensor_noise_for_sigma,
)
from .errors import InputError

#: The smallest image side :func:`estimate_noise_level` accepts.
MIN_ESTIMATE_SIDE = 8


def _generator(seed: int | torch.Generator | None) -> torch.Generator | None:
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


def gaussian_noise(
    shape: tuple[int, ...],
    sigma: float | torch.Tensor,
    *,
    generator: int | torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """I.i.d. zero-mean Gaussian noise of standard deviation ``sigma``.

    ``sigma`` may be a float or a tensor broadcastable to ``shape`` (one σ per image:
    shape ``(B, 1, 1, 1)``). The noise is drawn on the CPU from ``generator`` so it is
    the same on every machine for a given seed; ``device`` draws it on another device
    instead, from a generator of that device (GPU training).
    """
    noise = torch.randn(shape, generator=_generator(generator), dtype=dtype, device=device)
    return noise * sigma


def uniform_noise(
    shape: tuple[int, ...],
    sigma: float | torch.Tensor,
    *,
    generator: int | torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Zero-mean uniform noise with standard deviation ``sigma`` (half-width σ·√3)."""
    unit = torch.rand(shape, generator=_generator(generator), dtype=dtype, device=device)
    unit = unit * 2.0 - 1.0
    return unit * (sigma * math.sqrt(3.0))


NOISE_KINDS = {"gaussian": gaussian_noise, "uniform": uniform_noise}


#: Every noise model :func:`apply_noise` draws. "gaussian", "uniform" and "correlated"
#: have the same std σ at every pixel; the others are signal-dependent
#: (:mod:`filterscope.camera_noise`).
NOISE_MODELS = ("gaussian", "uniform", "correlated", "poisson-gaussian", "camera")

#: The models whose noise std depends on the image: σ is a nominal level for them, and
#: their std map, not σ, says how noisy each pixel is.
SIGNAL_DEPENDENT_MODELS = ("poisson-gaussian", "camera")


def _check_kind(kind: str) -> None:
    if kind not in NOISE_MODELS:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {', '.join(NOISE_MODELS)}")


def add_noise(
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    kind: str = "gaussian",
    generator: int | torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``y = x + n`` with noise of the given kind and standard deviation.

    The noisy image is not clipped to [0, 1] (the protocol of the papers), except by
    the ``"camera"`` model, whose output is a stored photograph (see
    :func:`apply_noise` for the kinds and what σ means for each).
    """
    _check_kind(kind)
    if kind in NOISE_KINDS:
        noise = NOISE_KINDS[kind](tuple(x.shape), sigma, generator=generator, dtype=x.dtype)
        return x + noise.to(x.device)
    return apply_noise(x, sigma, kind=kind, generator=generator)[0]


def apply_noise(
    x: torch.Tensor,
    sigma: float | torch.Tensor | None,
    *,
    kind: str = "gaussian",
    generator: int | torch.Generator | None = None,
    options: NoiseOptions = DEFAULT_OPTIONS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images and the std of their noise at each pixel, for any noise model.

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W)
        Clean images in [0, 1].
    sigma : float, Tensor with one value per image, or None
        Image scale. "gaussian", "uniform", "correlated": the noise std at every pixel
        (required). "poisson-gaussian", "camera": a nominal level, the shot noise
        ``a = σ²`` with the matching median read noise
        (:func:`~filterscope.camera_noise.sensor_noise_for_sigma`), or None to draw
        the sensor's parameters per image from ``options``.
    kind : str, keyword-only
        One of :data:`NOISE_MODELS`.
    generator : int, torch.Generator or None, keyword-only
        Seed or generator of every random draw. The models run on the generator's
        device (the results come back to ``x``'s).
    options : NoiseOptions, keyword-only
        Parameter ranges of the non-Gaussian models.

    Returns
    -------
    noisy, std_map : Tensor, shape (B, C, H, W)
        See :func:`~filterscope.camera_noise.poisson_gaussian_noise`,
        :func:`~filterscope.camera_noise.camera_noise` (clipped, quantised, approximate
        std map) and :func:`~filterscope.camera_noise.correlated_noise`; for "gaussian"
        and "uniform", ``x + n`` unclipped and σ everywhere.
    """
    _check_kind(kind)
    if sigma is None and kind not in SIGNAL_DEPENDENT_MODELS:
        raise InputError(f"sigma: {kind} noise needs its standard deviation")
    generator = _generator(generator)
    device = generator.device if generator is not None else x.device
    images = x.to(device)
    if kind in NOISE_KINDS:
        level = torch.as_tensor(sigma, dtype=x.dtype, device=device)
        if level.dim() == 1:
            level = level.view(-1, 1, 1, 1)
        noise = NOISE_KINDS[kind](
            tuple(x.shape), level, generator=generator, dtype=x.dtype, device=device
        )
        noisy, std_map = images + noise, level.expand_as(images).contiguous()
    elif kind == "correlated":
        noisy, std_map = correlated_noise(images, sigma, options=options, generator=generator)
    elif kind == "poisson-gaussian":
        shot = read = None
        if sigma is not None:
            shot, read = sensor_noise_for_sigma(sigma, options=options)
        noisy, std_map = poisson_gaussian_noise(
            images, shot=shot, read=read, options=options, generator=generator
        )
    else:
        noisy, std_map = camera_noise(images, sigma=sigma, options=options, generator=generator)
    return noisy.to(x.device), std_map.to(x.device)


def mixed_noise(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    kinds: tuple[str, ...] | list[str],
    weights: tuple[float, ...] | list[float] | None = None,
    generator: torch.Generator | None = None,
    options: NoiseOptions = DEFAULT_OPTIONS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image gets noise of one of ``kinds``, drawn per image: training's mixture.

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W)
        Clean patches.
    sigmas : Tensor, B values
        Per patch σ (image scale) for the kinds with one std per pixel ("gaussian",
        "uniform", "correlated"); the signal-dependent kinds draw their sensor's
        parameters from ``options`` instead (σ = None in :func:`apply_noise`).
    kinds : sequence of str
        Distinct names from :data:`NOISE_MODELS`.
    weights : sequence of float, keyword-only
        Relative frequency of each kind (normalised; default equal). One kind draws
        nothing for the choice.
    generator : torch.Generator, keyword-only
        Source of every draw: first the kind of every patch, then each kind's noise
        for its patches, kind by kind in the order of ``kinds``, so a generator state
        fixes the whole batch (an exact resume).
    options : NoiseOptions, keyword-only
        Ranges of the non-Gaussian models.

    Returns
    -------
    noisy, std_map : Tensor, shape (B, C, H, W)
    """
    kinds = list(kinds)
    for kind in kinds:
        _check_kind(kind)
    if len(set(kinds)) != len(kinds) or not kinds:
        raise InputError(f"noise: need distinct noise kinds, got {kinds}")
    weights = [1.0] * len(kinds) if weights is None else [float(w) for w in weights]
    if len(weights) != len(kinds) or min(weights) < 0 or sum(weights) <= 0:
        raise InputError(
            f"noise_weights: need one non-negative weight per kind ({len(kinds)}), "
            f"not all zero, got {weights}"
        )
    batch = x.shape[0]
    device = generator.device if generator is not None else torch.device("cpu")
    if len(kinds) == 1:
        choice = torch.zeros(batch, dtype=torch.long)
    else:
        table = torch.tensor(weights, dtype=torch.float64, device=device)
        choice = torch.multinomial(table, batch, replacement=True, generator=generator).cpu()
    sigmas = torch.as_tensor(sigmas).reshape(-1)
    noisy, std_map = torch.empty_like(x), torch.empty_like(x)
    for index, kind in enumerate(kinds):
        members = torch.nonzero(choice == index).flatten()
        if members.numel() == 0:
            continue
        members_here = members.to(x.device)
        level = None if kind in SIGNAL_DEPENDENT_MODELS else sigmas[members.to(sigmas.device)]
        noisy[members_here], std_map[members_here] = apply_noise(
            x[members_here], level, kind=kind, generator=generator, options=options
        )
    return noisy, std_map


def sample_sigmas(
    batch_size: int,
    sigma_range: tuple[float, float],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    power: float = 1.0,
) -> torch.Tensor:
    """One σ per image from ``sigma_range``; shape ``(B, 1, 1, 1)``.

    σ = lo + (hi − lo)·u^power with u uniform in [0, 1]: uniform for ``power`` = 1,
    denser toward ``lo`` above 1. Drawn on the CPU, or on ``device`` from a generator
    of that device.
    """
    lo, hi = sigma_range
    if lo < 0 or hi < lo:
        raise ValueError(f"sigma_range must satisfy 0 <= lo <= hi, got {sigma_range}")
    if not power > 0:
        raise ValueError(f"power must be positive, got {power}")
    u = torch.rand(batch_size, 1, 1, 1, generator=generator, device=device)
    if power != 1:
        u = u**power
    return lo + (hi - lo) * u


def _daubechies4_filters() -> tuple[torch.Tensor, torch.Tensor]:
    """Low- and high-pass analysis filters of the 4-tap Daubechies wavelet (db2), unit norm."""
    root3 = math.sqrt(3.0)
    lowpass = [1 + root3, 3 + root3, 3 - root3, 1 - root3]
    highpass = [(-1) ** k * lowpass[3 - k] for k in range(4)]
    scale = 4 * math.sqrt(2.0)
    return (
        torch.tensor(lowpass, dtype=torch.float64) / scale,
        torch.tensor(highpass, dtype=torch.float64) / scale,
    )


def _wavelet_bands(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The coarse (LL) and finest diagonal detail (HH) bands of ``(N, 1, H, W)`` planes."""
    lowpass, highpass = (
        f.to(device=planes.device, dtype=planes.dtype) for f in _daubechies4_filters()
    )
    kernels = torch.stack(
        [lowpass[:, None] * lowpass[None, :], highpass[:, None] * highpass[None, :]]
    )
    # Windows start on odd rows and columns, as in PyWavelets' transform, so the plain
    # estimate (flat_fraction = 1) tracks scikit-image's estimate_sigma (within about 1%).
    bands = torch.nn.functional.conv2d(planes[..., 1:, 1:], kernels[:, None], stride=2)
    return bands[:, :1], bands[:, 1:]


def _flat_detail_mad(plane: torch.Tensor, flat_fraction: float) -> torch.Tensor:
    """Median of ``|HH|`` over the ``flat_fraction`` of positions of a ``(1, 1, H, W)``
    plane where its coarse band varies least (see :func:`estimate_noise_level`),
    leaving out positions whose wavelet window holds a clipped pixel; on a clipped
    plane, divided by how much the truncation of the noise at the clip levels shrinks
    it there (:func:`_truncation_mad_factor`)."""
    coarse, detail = _wavelet_bands(plane)
    variation = (coarse[..., 1:, :-1] - coarse[..., :-1, :-1]).abs() + (
        coarse[..., :-1, 1:] - coarse[..., :-1, :-1]
    ).abs()
    variation = torch.nn.functional.avg_pool2d(
        variation, 3, stride=1, padding=1, count_include_pad=False
    ).flatten()
    magnitudes = detail[..., :-1, :-1].abs().flatten()
    inner = plane[..., 1:, 1:]
    low, high = inner.amin(), inner.amax()
    extreme = (inner == low) | (inner == high)
    clipped = _clipped_windows(extreme, detail.shape[-2:])[..., :-1, :-1].flatten()
    # Where almost every window holds a clipped pixel, the few that do not are those
    # whose noise happened to stay small: a sample biased low (σ = 100 on 8-bit BSD68
    # read 55-76 on some images). Then every window enters, read through censoring.
    censored = float(clipped.float().mean()) >= HEAVY_CLIPPING
    if censored:
        clipped = torch.zeros_like(clipped)
    candidates = int((~clipped).sum())
    variation = variation.masked_fill(clipped, math.inf)
    keep = max(1, round(flat_fraction * candidates))
    threshold = variation.kthvalue(keep).values
    chosen = (variation <= threshold) & ~clipped
    mad = magnitudes[chosen].median()
    if float(extreme.float().mean()) < CLIPPED_FRACTION:
        return mad
    # The 4x4 window's mean: the db2 low-pass sums to sqrt(2) in each direction.
    window_means = coarse[..., :-1, :-1].flatten()[chosen] / 2
    # The factor is a mean over windows: an even subsample bounds its cost on photos.
    window_means = window_means[:: max(1, window_means.numel() // TRUNCATION_SAMPLES)]
    correction = _censoring_std_factor if censored else _truncation_mad_factor
    factor = correction(
        float(mad.detach()) / NORMAL_MAD,  # the factor is a constant (degree 0)
        window_means.detach().double().cpu().numpy(),
        float(low.detach()),
        float(high.detach()),
    )
    return mad / factor


#: Φ⁻¹(3/4): the median of |N(0, σ²)| is this times σ.
NORMAL_MAD = 0.6744897501960817

#: Fraction of a plane's pixels at its minimum or maximum from which the noise is taken
#: as clipped there (a float image with unclipped noise has one of each; 8-bit files
#: of unclipped noise a few; a clipped σ = 25 photograph typically several percent).
CLIPPED_FRACTION = 0.002

#: At most about this many windows (evenly spaced) enter the truncation factor.
TRUNCATION_SAMPLES = 4096

#: Fraction of a plane's wavelet windows holding a clipped pixel from which the
#: estimate reads every window as censored noise (:func:`_censoring_std_factor`)
#: instead of the unclipped windows as truncated noise: 0.98-0.99 for σ = 100 on 8-bit
#: BSD68 images, 0.8-0.95 at σ = 75, under 0.8 below.
HEAVY_CLIPPING = 0.97


def _truncation_mad_factor(sigma_read: float, means: np.ndarray, low: float, high: float) -> float:
    """How much truncation to ``[low, high]`` shrinks the median absolute deviation of
    the noise around the chosen windows' means, at the σ that reads ``sigma_read``.

    The windows :func:`_flat_detail_mad` keeps hold no clipped pixel, so each pixel's
    noise there is a normal truncated to ``[low − x, high − x]``. Its median absolute
    value is ``σ·t(a, b)`` with ``a = (low − x)/σ``, ``b = (high − x)/σ`` and
    ``Φ(min(t, b)) − Φ(max(−t, a)) = (Φ(b) − Φ(a))/2`` (bisection); untruncated,
    ``t = 0.6745``. The factor is the mean of ``t/0.6745`` over the windows at the σ
    that solves ``σ·factor(σ) = sigma_read`` (fixed-point iteration from
    ``sigma_read``, σ capped at half the range). It depends on σ only through the
    ratios, so it is positively homogeneous of degree 0: the estimate divided by it
    stays of degree 1, and (as a constant of the gradient) keeps Euler's identity.
    Approximations: the window's mean stands for every pixel's clean value, and the
    detail coefficient (a weighted sum of 16 pixels, one tap carrying half the
    weight) shrinks as one pixel does. NumPy in float64: a few thousand values, where
    torch's per-operation overhead dominated.
    """
    from scipy.special import ndtr  # scikit-image's dependency, so always installed

    def truncated_mad(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        half = (ndtr(b) - ndtr(a)) / 2
        lo_t, hi_t = np.zeros_like(a), np.maximum(-a, b)
        for _ in range(30):  # the bracket shrinks to 1e-9 of its width
            t = (lo_t + hi_t) / 2
            below = ndtr(np.minimum(t, b)) - ndtr(np.maximum(-t, a)) < half
            lo_t, hi_t = np.where(below, t, lo_t), np.where(below, hi_t, t)
        return (lo_t + hi_t) / 2 / NORMAL_MAD

    return _shrinkage_at_fixed_point(truncated_mad, sigma_read, means, low, high)


def _censoring_std_factor(sigma_read: float, means: np.ndarray, low: float, high: float) -> float:
    """How much clipping to ``[low, high]`` shrinks the noise of the chosen windows, at
    the σ that reads ``sigma_read``: :func:`_truncation_mad_factor` for windows that
    hold clipped pixels.

    A clipped pixel keeps the bound (censoring), so each pixel's noise is a normal
    censored to ``[a, b] = [(low − x)/σ, (high − x)/σ]``, with standard deviation
    ``σ·s(a, b)``; a detail coefficient sums 16 such pixels and reads about that. The
    factor is the mean of ``s`` over the windows at the σ that solves
    ``σ·factor(σ) = sigma_read`` (fixed point, σ capped at half the range), of degree 0
    as the truncation factor is. Approximation: the window's mean stands for every
    pixel's clean value.
    """
    from scipy.special import ndtr

    def censored_std(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        below, above = ndtr(a), 1.0 - ndtr(b)
        density_a, density_b = (np.exp(-z * z / 2) / math.sqrt(2 * math.pi) for z in (a, b))
        mean = a * below + density_a - density_b + b * above
        second = a * a * below + (1 - below - above) - (b * density_b - a * density_a)
        return np.sqrt(np.maximum(second + b * b * above - mean * mean, 0.0))

    return _shrinkage_at_fixed_point(censored_std, sigma_read, means, low, high, noisy_means=True)


def _shrinkage_at_fixed_point(
    shrinkage: Callable[[np.ndarray, np.ndarray], np.ndarray],
    sigma_read: float,
    means: np.ndarray,
    low: float,
    high: float,
    *,
    noisy_means: bool = False,
) -> float:
    """``sigma_read / σ`` at the σ that solves ``σ·mean(shrinkage(a, b)) = sigma_read``,
    ``a = (low − x)/σ`` and ``b = (high − x)/σ`` for each window's clean mean ``x``
    (fixed-point iteration from ``sigma_read``, σ capped at half the range): the factor
    of :func:`_truncation_mad_factor` and :func:`_censoring_std_factor`.

    With ``noisy_means`` (every window, as the censored reading takes them), the
    measured ``means`` carry the full noise (a window mean weighs its pixels with squares
    summing to 1/4: noise of standard deviation σ·factor/2, half the noise at σ = 100),
    which spreads them towards the clip levels, where the shrinkage is strongest: read
    as they are, they made σ too large (Set12 at σ = 100, 8-bit: 103.6 on average). So
    they are first drawn towards their centre until their variance loses the noise's (a
    moment-matching deconvolution), at each step's σ. The truncated reading keeps only
    windows whose noise stayed inside the range, whose means are not spread that way
    (drawn in, they read σ = 75 lower still: 0.93 of it instead of 0.97 on the test's
    image). Degree 0 in the scale, as the shrinkage."""
    if not sigma_read > 0:
        return 1.0
    centre, spread = float(means.mean()), float(means.var())
    sigma, factor = sigma_read, 1.0
    clean_means = means
    for _ in range(50):
        if noisy_means and spread > 0:
            keep = math.sqrt(max(1.0 - (sigma * factor) ** 2 / 4 / spread, 0.0))
            clean_means = centre + keep * (means - centre)
        a = np.minimum((low - clean_means) / sigma, 0.0)
        b = np.maximum((high - clean_means) / sigma, 0.0)
        factor = max(float(shrinkage(a, b).mean()), 1e-6)
        # Noise wider than half the range is barely seen inside it: not identifiable,
        # and the iteration can run away there.
        updated = min(sigma_read / factor, (high - low) / 2)
        converged = abs(updated - sigma) <= 1e-6 * updated
        sigma = updated
        if converged:
            break
    return sigma_read / sigma


def _clipped_windows(extreme: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Whether each wavelet window (4×4, stride 2, as :func:`_wavelet_bands`) of a
    ``(1, 1, H, W)`` plane holds a pixel at the plane's maximum or minimum, from
    ``extreme``, the mask of those pixels in ``plane[..., 1:, 1:]`` (where the
    windows start).

    A stored photo clips its noise at 0 and 1: a bright sky clipped to 1 is flat, so
    it would be chosen as the flattest part, and its detail band holds far less than σ
    (σ = 50 read as 43 on average on clipped 8-bit Set12/BSD68 images, 28 at worst).
    Leaving those windows out reads 45 (40 at worst) there, and changes nothing on
    unclipped noise. The plane's own extremes, not 0 and 1, mark clipping, so the mask
    is the same for ``a·y`` as for ``y`` and the estimate stays positively homogeneous.
    """
    touched = torch.nn.functional.max_pool2d(extreme.float(), 4, stride=2)
    return touched[..., : size[0], : size[1]] > 0


def estimate_noise_level(y: torch.Tensor, *, flat_fraction: float = 0.25) -> torch.Tensor:
    """Standard deviation of white Gaussian noise in each image, from the finest diagonal
    wavelet band of its flattest parts (a median absolute deviation, after Donoho).

    Parameters
    ----------
    y : Tensor, shape (B, C, H, W)
        Noisy images, any scale (the estimate is on the same scale), H, W >= 8.
    flat_fraction : float, keyword-only
        Fraction in (0, 1] of the positions whose detail coefficients are used: those
        where the coarse band varies least (3×3 mean of its absolute differences). 1 uses
        every coefficient (the classical estimate, as scikit-image's ``estimate_sigma``).

    Returns
    -------
    Tensor, shape (B,)
        ``median(|d|) / 0.6745`` over the chosen db2 diagonal detail coefficients ``d``
        of each channel (valid positions only, no boundary extension), averaged over
        channels; the dtype of ``y`` (float32 at least).

    Notes
    -----
    The coarse band and the detail band of an orthogonal wavelet carry independent
    parts of white noise, so choosing positions by the coarse band does not bias the
    estimate on noise; it keeps texture, which the classical estimate counts as noise,
    out of it. On the first 12 BSD68 images at σ = 5/255 the mean estimate is 5.4/255
    with the default against 6.6/255 with ``flat_fraction = 1``.

    Positively homogeneous (``estimate(a y) = a estimate(y)`` for ``a > 0``) and
    differentiable almost everywhere, so a bias-free network fed this estimate stays
    bias-free and its Jacobian analysis (Euler's identity) still holds. Cost
    ``O(B C H W)`` plus a selection per channel; runs outside autocast in float32 or more.
    """
    if y.dim() != 4 or min(y.shape[-2:]) < MIN_ESTIMATE_SIDE:
        raise InputError(
            f"y must be a (B, C, H, W) tensor with H, W >= {MIN_ESTIMATE_SIDE}, "
            f"got {tuple(y.shape)}"
        )
    if not 0 < flat_fraction <= 1:
        raise InputError(f"flat_fraction must be in (0, 1], got {flat_fraction}")
    dtype = torch.promote_types(y.dtype, torch.float32)
    batch, channels, height, width = y.shape
    planes = y.reshape(batch * channels, 1, height, width)
    # One plane at a time: the transform's buffers for a whole RGB photo at once took
    # several times the photo's own memory.
    with torch.autocast(y.device.type, enabled=False):
        mad = torch.stack(
            [_flat_detail_mad(plane[None].to(dtype), flat_fraction) for plane in planes]
        )
    return (mad / NORMAL_MAD).reshape(batch, channels).mean(dim=1)
