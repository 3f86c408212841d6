"""Noise-level sweeps: every denoiser on every image at every σ, with reproducible noise.

The protocol is that of the published metrics of Mohan et al. (ICLR 2020;
``published_metrics.json``), with the noise fixed by a seed:

- one noise draw per (image, σ), seeded from ``(seed, image index, σ)``, so every
  model sees the same noisy image and a rerun (or a sweep over a subset of σ) draws
  the same noise;
- the noisy image goes into the network **unclipped**;
- PSNR/SSIM from :mod:`filterscope.metrics`: estimate clipped to [0, 1], data range 1,
  SSIM with scikit-image's defaults (7×7 uniform window);
- input quality (``psnr_in``/``ssim_in``) is measured on the noisy image clipped to
  [0, 1], as the published ``psnr - psnr_delta`` implies (about 10.3 dB at σ = 100,
  not the 8.1 dB of unclipped noise);
- reported values are means over the images of per-image values.

For the restoration experiment (Mohan et al. 2020, Fig. 20) a sweep can also blur the
clean image with a Gaussian of ``blur`` pixels before adding the noise; the
reference of PSNR/SSIM stays the clean, unblurred image.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..blur import gaussian_blur
from ..errors import InputError
from ..io import list_images, read_image, to_tensor
from ..metrics import psnr, ssim
from ..models.base import Denoised, Denoiser, module_device
from ..noise import NOISE_MODELS, add_noise

ImageList = Sequence[tuple[str, torch.Tensor]]
DenoiserLike = Callable[..., torch.Tensor]


def sigma_to_255(sigma: float) -> float:
    """σ on the 0–255 scale of results and JSON: ``255 σ``, rounded to 9 decimals so that
    ``25 / 255`` reads back as ``25.0``."""
    return round(255.0 * float(sigma), 9)


def noise_seed(seed: int, image_index: int, sigma: float) -> int:
    """Seed of the noise added to image ``image_index`` at noise level ``sigma``.

    Derived with :class:`numpy.random.SeedSequence` from ``(seed, image_index,
    round(1000 * 255 σ))``, so nearby σ values and consecutive images get independent
    streams, and the value does not depend on which other images or σ are in the sweep.

    Parameters
    ----------
    seed, image_index : int
        Base seed and position of the image in the sweep, both >= 0.
    sigma : float
        Noise level on the image scale (25/255 for σ = 25 on the 0–255 scale).

    Returns
    -------
    int
        A 63-bit seed for :meth:`torch.Generator.manual_seed`.
    """
    if seed < 0 or image_index < 0 or sigma < 0:
        raise ValueError("seed, image index and sigma must be non-negative")
    entropy = [int(seed), int(image_index), int(round(1000 * sigma_to_255(sigma)))]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


def check_sigmas(sigmas: Sequence[float]) -> list[float]:
    """The noise levels as floats, after checking they are on the image scale.

    Raises
    ------
    InputError
        No σ, a negative or non-finite one, or one above 1: a σ of 25 means the caller
        used the 0–255 scale, which Python functions do not take.
    """
    values = [float(s) for s in sigmas]
    if not values:
        raise InputError("no noise level (sigma) given")
    for value in values:
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"noise levels must be finite and >= 0, got {value:g}")
        if value > 1:
            raise InputError(
                f"noise level {value:g} is above 1: sigmas are on the image scale "
                f"(25/255 = 0.098 for sigma 25 on the 0-255 scale); divide by 255"
            )
    return values


def load_image_folder(
    folder: str | os.PathLike, *, limit: int | None = None
) -> list[tuple[str, torch.Tensor]]:
    """Read the images of a folder (sorted by name) as ``(name, (1, C, H, W) tensor)`` pairs.

    Parameters
    ----------
    folder : str or path-like
        Folder of image files (PNG, TIFF, JPEG...).
    limit : int, keyword-only
        Read only the first ``limit`` images.

    Returns
    -------
    list of (str, Tensor)
        File names and float32 tensors in [0, 1].
    """
    paths = list_images(folder)
    if limit is not None:
        paths = paths[:limit]
    return [(path.name, to_tensor(read_image(path)[0])) for path in paths]


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _prepare(denoiser: DenoiserLike, precision: str | None) -> DenoiserLike:
    if isinstance(denoiser, nn.Module):
        denoiser.eval()
        # Imported here: reduced-precision inference is an optional part of the library.
        from ..models.fast import FastDenoiser, optimize_for_inference

        # Only networks are converted: a module without weights (BM3D, NLM, NTK...) has
        # no arithmetic to speed up. The converted copy passes σ on to the network.
        if (
            precision is not None
            and not isinstance(denoiser, FastDenoiser)
            and _has_parameters(denoiser)
        ):
            denoiser = optimize_for_inference(denoiser, precision=precision)
    return denoiser


def _run(denoiser: DenoiserLike, y: torch.Tensor, sigma: float) -> Denoised:
    """The estimate (CPU, float32) and what the denoiser estimated per image.

    σ is always passed: blind denoisers ignore it.
    """
    device = module_device(denoiser)
    y = y.to(device)
    if isinstance(denoiser, Denoiser):
        out = denoiser.denoise_with_info(y, sigma)
    else:
        out = Denoised(denoiser(y, sigma), [{} for _ in range(y.shape[0])])
    if out.x_hat.shape != y.shape:
        raise ValueError(f"denoiser returned shape {tuple(out.x_hat.shape)} for {tuple(y.shape)}")
    return Denoised(out.x_hat.detach().to("cpu", torch.float32), out.per_image)


def sigma_source(denoiser: DenoiserLike) -> str | None:
    """Where a denoiser's noise level comes from: ``"blind"``, ``"true"`` or ``"estimated"``.

    :attr:`filterscope.models.base.Denoiser.sigma_source` for a Denoiser; None for a
    plain callable (it gets the true σ, and may or may not use it).
    """
    if isinstance(denoiser, Denoiser):
        return denoiser.sigma_source
    return None


def _check_images(images: ImageList | str | os.PathLike) -> list[tuple[str, torch.Tensor]]:
    if isinstance(images, (str, os.PathLike)):
        images = load_image_folder(images)
    checked = []
    for entry in images:
        name, image = entry
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"image {name!r}: expected a (1, C, H, W) tensor")
        checked.append((str(name), image.detach().to("cpu", torch.float32)))
    if not checked:
        raise ValueError("no images to evaluate")
    return checked


def _batches(images: list[tuple[str, torch.Tensor]], batch_size: int) -> list[list[int]]:
    """Indices of consecutive images of the same shape, at most ``batch_size`` per group."""
    groups: list[list[int]] = []
    for index, (_, image) in enumerate(images):
        if (
            groups
            and len(groups[-1]) < batch_size
            and images[groups[-1][0]][1].shape == image.shape
        ):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def evaluate(
    denoisers: Mapping[str, DenoiserLike],
    images: ImageList | str | os.PathLike,
    sigmas: Sequence[float],
    *,
    noise: str = "gaussian",
    blur: float = 0.0,
    seed: int = 0,
    batch_size: int = 1,
    precision: str | None = None,
    progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Mean PSNR/SSIM of each denoiser at each noise level, with per-image values.

    Parameters
    ----------
    denoisers : mapping of str to callable
        Display name → denoiser. A denoiser maps a ``(B, C, H, W)`` float32 noisy batch
        (nominally in [0, 1], not clipped) to an estimate of the same shape, e.g. a
        :class:`~filterscope.models.Denoiser`, called as ``denoiser(y, sigma)`` with σ
        on the image scale (blind ones ignore it). Modules are put in eval mode and run
        on the device of their parameters.
    images : sequence of (str, Tensor) or path
        ``(name, (1, C, H, W) float32 tensor in [0, 1])`` pairs, or a folder of image
        files (read in name order).
    sigmas : sequence of float
        Noise standard deviations on the image scale (``25 / 255`` for σ = 25 on the
        0–255 scale); values above 1 are refused as a sign of the 0–255 scale.
    noise : {"gaussian", "uniform", "correlated", "poisson-gaussian", "camera"}, keyword-only
        Noise model (:func:`filterscope.noise.apply_noise`): uniform noise of the same
        standard deviation; "correlated", Gaussian noise of marginal std σ blurred by a
        small kernel; "poisson-gaussian" and "camera", signal-dependent noise whose
        shot-noise variance at intensity 1 is σ² (a nominal level; "camera" goes
        through a camera pipeline and is clipped and stored in 8 bits, possibly JPEG).
        The models' other parameters are drawn from each image's seed.
    blur : float, keyword-only
        Standard deviation in pixels of a Gaussian blur applied to the clean image
        before the noise is added (:func:`filterscope.blur.gaussian_blur`); 0 (the
        default) adds noise only. PSNR/SSIM are always measured against the clean,
        unblurred image. The noise draw does not depend on ``blur``, so sweeps at
        different blur levels share their noise.
    seed : int, keyword-only
        Base seed; the noise of image ``i`` at ``σ`` is fixed by :func:`noise_seed`.
    batch_size : int, keyword-only
        Images of the same shape (consecutive in ``images``) run through a model
        together, up to this many at a time. The results do not depend on it beyond
        float round-off.
    precision : {"float32", "bfloat16"} or None, keyword-only
        When given, every ``nn.Module`` denoiser with parameters (a network) is
        first converted with :func:`filterscope.models.fast.optimize_for_inference` at
        this precision; other denoisers (BM3D, NLM...) run as they are. None runs all
        denoisers as given.
    progress : bool, keyword-only
        Show a tqdm progress bar on stderr over all (model, image, σ) evaluations.
    on_result : callable, keyword-only
        Called with each result entry (one model at one σ, see below) as soon as it is
        complete, e.g. to save partial results.

    Returns
    -------
    dict
        JSON-serialisable::

            {"protocol": {...},
             "results": [{"model": name, "noise": "gaussian", "blur": 0.0,
                          "sigma": 25.0, "sigma_source": "blind",
                          "psnr_in": ..., "ssim_in": ..., "psnr": ..., "ssim": ...,
                          "seconds": ..., "per_image": [{"image": name, "psnr": ...,
                          "ssim": ..., "psnr_in": ..., "ssim_in": ...}, ...]}, ...]}

        ``results`` is ordered by model (in the order of ``denoisers``), then σ (in
        the order of ``sigmas``). ``sigma`` is on the 0–255 scale; PSNR in dB;
        ``psnr``/``ssim`` are means over the images; ``seconds`` is the time spent
        in the denoiser. ``sigma_source`` is :func:`sigma_source` of the denoiser.
        What a :class:`~filterscope.models.base.Denoiser` reports per image through
        :meth:`~filterscope.models.base.Denoiser.denoise_with_info` is added to its
        per-image entry: an estimated σ as ``"sigma_estimated"`` (0–255 scale), other
        scalar values (a stopping step ``"t"``...) under their own names.

    Notes
    -----
    The noisy images of one σ are generated once and shared by all models. The
    models run under :func:`torch.inference_mode`.
    """
    from tqdm.auto import tqdm

    sigmas, blur = _check_arguments(denoisers, sigmas, noise, blur, batch_size)
    image_list = _check_images(images)
    originals = {str(name): d for name, d in denoisers.items()}
    models = {name: _prepare(d, precision) for name, d in originals.items()}
    sweep = _Sweep(image_list, models, noise, blur, seed)
    groups = _batches(image_list, batch_size)
    # entries[model][sigma index] accumulates per-image results
    entries = {
        name: [sweep.empty_entry(name, originals[name], sigma) for sigma in sigmas]
        for name in models
    }
    total = len(models) * len(image_list) * len(sigmas)
    bar = tqdm(total=total, desc="evaluate", unit="img", file=sys.stderr, disable=not progress)
    try:
        with torch.inference_mode():
            for s_index, sigma in enumerate(sigmas):
                at_sigma = {name: entries[name][s_index] for name in models}
                for group in groups:
                    sweep.score_group(group, sigma, at_sigma, bar.update)
                for entry in at_sigma.values():
                    _summarise(entry)
                    if on_result is not None:
                        on_result(entry)
    finally:
        bar.close()

    results = [entry for name in models for entry in entries[name]]
    protocol = _protocol(image_list, sigmas, noise, blur, seed, precision)
    return {"protocol": protocol, "results": results}


def _check_arguments(
    denoisers: Mapping[str, DenoiserLike],
    sigmas: Sequence[float],
    noise: str,
    blur: float,
    batch_size: int,
) -> tuple[list[float], float]:
    """:func:`evaluate`'s checks of its arguments; the checked σ list and blur width."""
    if noise not in NOISE_MODELS:
        raise ValueError(f"unknown noise kind {noise!r}; choose from {', '.join(NOISE_MODELS)}")
    if not denoisers:
        raise ValueError("no denoisers to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    checked = check_sigmas(sigmas)
    blur = float(blur)
    if not blur >= 0 or not np.isfinite(blur):
        raise ValueError(f"blur width must be a non-negative number of pixels, got {blur}")
    return checked, blur


@dataclass(frozen=True)
class _Sweep:
    """What stays fixed during one :func:`evaluate` call: the checked images, the
    prepared models and how the clean images are degraded."""

    images: list[tuple[str, torch.Tensor]]
    models: dict[str, DenoiserLike]
    noise: str
    blur: float
    seed: int

    def empty_entry(self, name: str, denoiser: DenoiserLike, sigma: float) -> dict[str, Any]:
        """The result entry of model ``name`` at ``sigma``, before any image is scored."""
        return {
            "model": name,
            "noise": self.noise,
            "blur": self.blur,
            "sigma": sigma_to_255(sigma),
            "sigma_source": sigma_source(denoiser),
            "seconds": 0.0,
            "per_image": [None] * len(self.images),
        }

    def noisy(self, x: torch.Tensor, group: list[int], sigma: float) -> torch.Tensor:
        """The noisy batch of the images ``group`` (clean batch ``x``) at ``sigma``: each
        image blurred (when ``blur`` > 0) and given its own seeded noise draw."""
        # Zero blur skips the convolution, so plain denoising sweeps see
        # exactly the noisy images they always did.
        degraded = x if self.blur == 0 else gaussian_blur(x, self.blur)
        return torch.cat(
            [
                add_noise(
                    degraded[k : k + 1],
                    sigma,
                    kind=self.noise,
                    generator=noise_seed(self.seed, i, sigma),
                )
                for k, i in enumerate(group)
            ]
        )

    def score_group(
        self,
        group: list[int],
        sigma: float,
        entries: dict[str, dict[str, Any]],
        advance: Callable[[int], Any],
    ) -> None:
        """Run every model on the noisy batch of the images ``group`` at ``sigma``, record
        time and per-image scores in ``entries[model]``, and call ``advance`` with the
        number of images after each model."""
        x = torch.cat([self.images[i][1] for i in group])
        y = self.noisy(x, group, sigma)
        # Input quality on the clipped noisy image (the published deltas).
        psnr_in = psnr(y, x).tolist()
        ssim_in = ssim(y, x).tolist()
        for name, model in self.models.items():
            start = time.perf_counter()
            out = _run(model, y, sigma)
            entry = entries[name]
            entry["seconds"] += time.perf_counter() - start
            x_hat = out.x_hat
            values = zip(psnr(x_hat, x).tolist(), ssim(x_hat, x).tolist(), strict=True)
            for k, (i, (p, s)) in enumerate(zip(group, values, strict=True)):
                entry["per_image"][i] = {
                    "image": self.images[i][0],
                    "psnr": p,
                    "ssim": s,
                    "psnr_in": psnr_in[k],
                    "ssim_in": ssim_in[k],
                }
                measured = entry["per_image"][i]
                # What the method reports never replaces what is measured here (DIP's
                # own "psnr" is None: it has no clean image).
                extra = _estimated(out.per_image[k])
                measured.update({key: v for key, v in extra.items() if key not in measured})
            advance(len(group))


def _estimated(info: dict[str, Any]) -> dict[str, Any]:
    """What a denoiser estimated for one image, for the JSON: σ on the 0–255 scale as
    ``sigma_estimated``, other JSON-ready numbers and strings as they are."""
    out = {}
    for key, value in info.items():
        if key == "sigma":
            out["sigma_estimated"] = 255.0 * float(value)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[key] = value
    return out


def _summarise(entry: dict[str, Any]) -> dict[str, Any]:
    per_image = entry["per_image"]
    for key in ("psnr_in", "ssim_in", "psnr", "ssim"):
        entry[key] = float(np.mean([item[key] for item in per_image]))
    # Key order of the documented JSON shape: summary first, per-image list last.
    keys = ("model", "noise", "blur", "sigma", "sigma_source", "psnr_in", "ssim_in", "psnr")
    ordered = {k: entry[k] for k in keys}
    ordered.update(ssim=entry["ssim"], seconds=entry["seconds"], per_image=per_image)
    entry.clear()
    entry.update(ordered)
    return entry


def _protocol(
    images: list[tuple[str, torch.Tensor]],
    sigmas: list[float],
    noise: str,
    blur: float,
    seed: int,
    precision: str | None,
) -> dict[str, Any]:
    from .. import __version__

    protocol = {
        "noise": noise,
        "blur": blur,
        "sigmas_255": [sigma_to_255(s) for s in sigmas],
        "seed": seed,
        "noise_seed": "numpy SeedSequence([seed, image index, round(1000 * sigma_255)])",
        "num_images": len(images),
        "images": [name for name, _ in images],
        "noisy_input_clipped": noise == "camera",
        "metrics": (
            "PSNR/SSIM of the estimate clipped to [0, 1], data range 1; SSIM 7x7 uniform "
            "window (scikit-image defaults); psnr_in/ssim_in on the noisy image clipped to "
            "[0, 1]; means over images of per-image values"
        ),
        "precision": precision,
        "filterscope_version": __version__,
        "torch_version": torch.__version__,
    }
    if blur > 0:
        protocol["blur_note"] = (
            "clean image blurred with a Gaussian of this standard deviation in pixels "
            "(reflected borders) before the noise is added; metrics against the clean, "
            "unblurred image"
        )
    return protocol


def results_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, σ) without the per-image lists, for printing.

    Parameters
    ----------
    result : dict
        What :func:`evaluate` returned.
    """
    return [{k: v for k, v in entry.items() if k != "per_image"} for entry in result["results"]]


__all__ = [
    "check_sigmas",
    "evaluate",
    "load_image_folder",
    "noise_seed",
    "results_table",
    "sigma_source",
    "sigma_to_255",
]
