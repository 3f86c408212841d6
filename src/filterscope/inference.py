"""Running a trained denoiser on images of any size: tiling, channel matching, files.

Large images are cut into tiles; each tile is padded with a halo of ``overlap`` pixels
of real image context on every side (tiles at the border take their context from
further inside, so that all padded tiles have one shape), the model runs on the padded
tile, and only the tile's centre is kept. For a convolutional network whose receptive
radius is at most ``overlap`` (DnCNN: ``num_layers`` pixels), the result equals the
whole-image result up to float round-off, while memory stays bounded by a few tile-sized
activations.

Channels: a model runs on images of its own channel count, with one adaptation: a gray
model denoises each channel of an RGB image as a gray image. A colour model is never
run on a gray image (it was not trained on gray ones: the three outputs of the
replicated gray image lose about 5 dB); :func:`check_model_channels` refuses it, here
and in :func:`filterscope.evaluation.evaluate`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ._options import merge_options
from .devices import resolve_device
from .errors import OVERWRITE_ADVICE, ChannelError, CheckpointError, FilterscopeError, InputError
from .io import check_output_path, list_images, read_image, to_tensor, write_image
from .machine import AUTO, choose_precision, return_large_blocks
from .models.base import Denoiser, module_device
from .models.fast import optimize_for_inference
from .models.noise_map import NoiseMapEstimator, noise_level_map, noise_map_summary

#: Input pixels (summed over the tiles of one batch) per model call: with 64 hidden
#: channels in float32 one activation is then 256 MiB, so a few live ones fit in 1–2 GiB.
DEFAULT_BATCH_PIXELS = 1 << 20

#: Halo (pixels) for models that do not declare a ``receptive_radius``.
DEFAULT_OVERLAP = 32

PRECISIONS = ("float32", "bfloat16")


def prepare_model(model: nn.Module, *, precision: str | None = None) -> nn.Module:
    """Return a module for inference at ``precision`` with the same ``forward(y)`` contract.

    Parameters
    ----------
    model : nn.Module
        A denoiser, already on its target device.
    precision : {"auto", "float32", "bfloat16"} or None, keyword-only
        Arithmetic of the forward pass; None or ``"auto"``: bfloat16 only where the
        model's device runs it natively (:func:`filterscope.machine.choose_precision`).
        Input and output stay float32 tensors in [0, 1].

    Returns
    -------
    nn.Module
        What :func:`filterscope.models.fast.optimize_for_inference` returns: a copy with
        norms folded into convolutions, channels-last, at ``precision``; a model
        without parameters (BM3D, NLM, NTK filters) is returned as it is.

    Raises
    ------
    InputError
        Unknown precision.
    """
    requested = AUTO if precision is None else precision
    if requested not in (AUTO, *PRECISIONS):
        raise InputError(
            f"precision must be one of auto, {', '.join(PRECISIONS)}, got {precision!r}"
        )
    if not any(True for _ in model.parameters()):
        # A method without weights (BM3D, NLM, an NTK filter, DIP) has no network
        # arithmetic to convert; it runs in its own precision.
        return model
    chosen = choose_precision("denoise", module_device(model), requested=requested)
    return optimize_for_inference(model, precision=chosen)


def _tile_starts(size: int, tile: int) -> list[int]:
    """Starts of cores of length ``tile`` covering ``[0, size)``; the last one is shifted
    back to end at ``size``, so every core has the same length."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, tile))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _axis_tiles(size: int, tile: int, overlap: int, align: int) -> list[tuple[int, int, int, int]]:
    """``(core_start, core_end, window_start, window_end)`` along one axis; every window
    has one length, a multiple of ``align``, and starts on a multiple of ``align``."""
    extent = -(-size // align) * align  # the axis padded up to a multiple of align
    # Enough for a core, its halo on both sides, and the shift down onto the grid.
    length = -(-(tile + 2 * overlap + align - 1) // align) * align
    if length >= extent:
        return [(0, size, 0, extent)]  # one window holds the whole axis: one core
    axis = []
    for start in _tile_starts(size, tile):
        window = min(max(start - overlap, 0) // align * align, extent - length)
        axis.append((start, min(start + tile, size), window, window + length))
    return axis


def tile_grid(
    height: int, width: int, *, tile: int, overlap: int, align: int = 1
) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Tiles covering an image: ``(core, padded)`` boxes, each ``(top, bottom, left, right)``.

    All padded boxes have one shape, so every model call reuses the same buffers: with
    tiles clipped at the border instead, their several shapes fragmented the allocator's
    memory (a 3000×2000 RGB photo peaked at about 1.45 times as much).

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    tile : int, keyword-only
        Side of a tile's core in pixels (the last core of a row or column overlaps its
        neighbour). Where one padded box spans a whole side, that side has one core.
    overlap : int, keyword-only
        Halo in pixels of context that each padded box holds around its core on every
        side, or up to the image border.
    align : int, keyword-only
        Padded boxes start at multiples of this and their sides are multiples of it, so
        a network that down-samples by ``align`` sees each tile on the same pixel grid as
        the whole image.

    Returns
    -------
    list of (core, padded)
        Half-open pixel ranges; the cores cover every pixel. Padded boxes may reach
        past the bottom and right border, up to the sides rounded up to a multiple of
        ``align``: the caller extends the image there by replication, as a network that
        pads the whole image to its stride does.
    """
    rows = _axis_tiles(height, tile, overlap, align)
    cols = _axis_tiles(width, tile, overlap, align)
    return [
        ((top, bottom, left, right), (row_start, row_end, col_start, col_end))
        for top, bottom, row_start, row_end in rows
        for left, right, col_start, col_end in cols
    ]


#: Smallest tile side: below it the tiles are so many (tile 1: 262,144 for 512x512) and
#: their context so large relative to them that the run would crawl.
MIN_TILE = 8


def _validate_options(tile: int, overlap: int) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise InputError(f"tile must be a positive number of pixels, got {tile!r}")
    floor = max(MIN_TILE, overlap)
    if tile < floor:
        raise InputError(
            f"tile must be at least {floor} pixels, got {tile}: smaller tiles only multiply "
            "the work (each tile also computes its context, the overlap, on every side)"
        )
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise InputError(f"overlap must be a number of pixels >= 0, got {overlap!r}")


def validate_sigma(sigma: float | None) -> float | None:
    """``sigma`` as a float, or None; refuses what cannot be a noise level on the image
    scale: no real number (a string, list, complex, array, bool), NaN or infinite,
    negative, or above 1 (a σ on the 0-255 scale given by mistake: 25 for 25/255)."""
    if sigma is None:
        return None
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise InputError(
            f"sigma must be one number on the image scale (25/255 = 0.098), got {sigma!r}"
        )
    if not math.isfinite(sigma) or sigma < 0:
        raise InputError(f"sigma must be finite and >= 0 (image scale), got {sigma!r}")
    if sigma > 1:
        raise InputError(
            f"sigma={sigma:g} is above 1, but sigma is on the image scale of [0, 1] images "
            f"(25/255 = 0.098); did you mean {sigma:g}/255 = {sigma / 255:.4g}?"
        )
    return float(sigma)


_CHANNEL_KINDS = {1: "gray", 3: "RGB"}


def check_model_channels(
    in_channels: int | None,
    channels: int,
    *,
    model_name: str,
    image_name: str,
    per_channel: bool = True,
) -> None:
    """Refuse a model for images of ``channels`` channels it should not run on.

    Parameters
    ----------
    in_channels : int or None
        Channels the model takes (``model.in_channels``); None: any count.
    channels : int
        Channels of the image(s): 1 (gray) or 3 (RGB).
    model_name, image_name : str, keyword-only
        How to name them in the message.
    per_channel : bool, keyword-only
        Whether the caller runs a gray model on each channel of an RGB image
        (:func:`denoise_tensor` does); False refuses that pairing too (an evaluation
        measures a model on its own kind of image).

    Raises
    ------
    ChannelError
        A colour model on a gray image, or any other mismatch except (with
        ``per_channel``) a gray model on RGB images.
    """
    if in_channels is None or in_channels == channels:
        return
    if per_channel and (in_channels, channels) == (1, 3):
        return

    def count(n: int) -> str:
        return f"{n} channel{'s' if n != 1 else ''}"

    kind = _CHANNEL_KINDS.get(channels, f"{channels}-channel")
    takes = _CHANNEL_KINDS.get(in_channels, f"{in_channels}-channel")
    raise ChannelError(
        f"{model_name} takes {takes} images ({count(in_channels)}) but {image_name} is "
        f"{kind} ({count(channels)}); use a model for {kind} images"
    )


def _model_name(model: object) -> str:
    name = getattr(model, "arch", "") or type(model).__name__
    return f"the {name} model"


def _box(images: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """``images[..., top:bottom, left:right]``, with the rows and columns past the bottom
    and right border (the stride grid's padding, see :func:`tile_grid`) replicated from
    the last ones; only the tiles that reach there are padded, not the whole image."""
    top, bottom, left, right = box
    height, width = images.shape[-2:]
    crop = images[:, :, top : min(bottom, height), left : min(right, width)]
    beyond_rows, beyond_cols = max(bottom - height, 0), max(right - width, 0)
    if beyond_rows or beyond_cols:
        crop = torch.nn.functional.pad(crop, (0, beyond_cols, 0, beyond_rows), mode="replicate")
    return crop


def _run_tiled(
    model: nn.Module,
    y: torch.Tensor,
    *,
    in_channels: int | None,
    tile: int,
    overlap: int,
    batch_pixels: int,
    progress: bool,
    sigma: float | None = None,
    model_name: str = "the model",
    keep_noise_map: bool = False,
) -> TiledRun:
    """Tiled forward pass of ``model`` over the images ``y``.

    ``sigma`` (image scale) is passed to ``model(tiles, sigma)`` for every batch of
    tiles. None calls ``model(tiles)``, unless the model estimates σ in its blind mode
    (:meth:`~filterscope.models.base.Denoiser.image_noise_level`): then each whole
    image's estimate goes to its tiles, so they agree with the whole-image result.

    With ``keep_noise_map``, a model holding a noise-map estimator also gives back the
    map its network was fed: the tiles' own local maps (the estimator's output, caught
    as it runs; under a self-ensemble, the untransformed pass's), or the level it was
    told or pooled, spread over the image.
    """
    _validate_options(tile, overlap)
    if y.dim() != 4 or y.shape[1] not in (1, 3):
        raise InputError(f"expected a (B, C, H, W) tensor with C in (1, 3), got {tuple(y.shape)}")
    if not y.is_floating_point():
        raise InputError(f"expected a float tensor in [0, 1], got {y.dtype}")
    batch, channels, height, width = y.shape
    check_model_channels(
        in_channels, channels, model_name=model_name, image_name="the input tensor"
    )
    model_input = y
    if in_channels == 1 and channels == 3:
        # A gray model sees each colour channel as a separate gray image.
        model_input = y.reshape(batch * channels, 1, height, width)

    out = torch.empty(model_input.shape, dtype=torch.float32, device=y.device)
    device = module_device(model)
    if sigma is None and isinstance(model, Denoiser):
        sigma = model.image_noise_level(model_input.to(device=device, dtype=torch.float32))
    estimator = _noise_map_estimator(model) if keep_noise_map else None
    fed_maps: list[torch.Tensor] = []  # the estimator's output for the current batch
    # A hook handle removes itself when its with-block ends, even on an error.
    hook: contextlib.AbstractContextManager = contextlib.nullcontext()
    if estimator is not None and sigma is None:
        hook = estimator.register_forward_hook(lambda module, args, output: fed_maps.append(output))
    noise_map = None
    align = int(getattr(model, "tile_alignment", 1))
    tiles = tile_grid(height, width, tile=tile, overlap=overlap, align=align)
    if len(tiles) > 1:
        return_large_blocks()  # freed tiles' activations leave, not pile up
    top, bottom, left, right = tiles[-1][1]
    box_height, box_width = bottom - top, right - left

    from tqdm import tqdm

    bar = tqdm(
        total=len(tiles),
        desc="denoising",
        unit="tile",
        file=sys.stderr,
        disable=not progress or len(tiles) <= 1,
    )
    images = model_input.shape[0]
    per_batch = max(1, batch_pixels // (images * box_height * box_width))
    with torch.inference_mode(), bar, hook:
        for start in range(0, len(tiles), per_batch):
            chunk = tiles[start : start + per_batch]
            x = torch.cat([_box(model_input, padded) for _, padded in chunk], dim=0)
            x = x.to(device=device, dtype=torch.float32)
            if sigma is None:
                x_hat = model(x)
            elif isinstance(sigma, torch.Tensor):  # one σ per image, repeated per tile
                x_hat = model(x, sigma.repeat(len(chunk)))
            else:
                x_hat = model(x, sigma)
            if x_hat.shape != x.shape:
                raise InputError(
                    f"{model_name} returned shape {tuple(x_hat.shape)} for input "
                    f"{tuple(x.shape)}; a denoiser keeps the shape"
                )
            _paste_cores(out, x_hat, chunk)
            if fed_maps:
                if noise_map is None:
                    shape = (images, fed_maps[0].shape[1], height, width)
                    noise_map = torch.empty(shape, dtype=torch.float32, device=y.device)
                _paste_cores(noise_map, fed_maps[0], chunk)
                fed_maps.clear()
            bar.update(len(chunk))
            del x, x_hat
    if estimator is not None and sigma is not None:
        channels_fed = int(estimator.mix_root.shape[0])
        noise_map = noise_level_map(model_input, sigma, channels=channels_fed, check=False)
    if noise_map is not None:
        noise_map = noise_map.to(device=y.device, dtype=torch.float32).reshape(
            batch, -1, height, width
        )  # a gray model on RGB images: one map per channel
    return TiledRun(out.reshape(batch, channels, height, width), len(tiles), noise_map)


class TiledRun(NamedTuple):
    """What :func:`_run_tiled` gives back."""

    estimate: torch.Tensor  #: (B, C, H, W) float32, on the device of the input
    tiles: int  #: how many tiles the image was cut into
    #: (B, k, H, W) float32, the noise map the network was fed; None unless asked for and
    #: the model has a noise-map estimator
    noise_map: torch.Tensor | None


def _noise_map_estimator(model: nn.Module) -> nn.Module | None:
    """The noise-map estimator inside ``model`` (a prepared or ensembled one too)."""
    return next((m for m in model.modules() if isinstance(m, NoiseMapEstimator)), None)


def _paste_cores(target: torch.Tensor, tiles_out: torch.Tensor, chunk: list) -> None:
    """Copy each tile's core of ``tiles_out`` (the model's output on the padded tiles of
    ``chunk``, each holding ``target.shape[0]`` images) into ``target``, converted to its
    dtype and device."""
    images = target.shape[0]
    for index, (core, padded) in enumerate(chunk):
        rows = slice(core[0] - padded[0], core[1] - padded[0])
        cols = slice(core[2] - padded[2], core[3] - padded[2])
        part = tiles_out[index * images : (index + 1) * images, :, rows, cols]
        target[:, :, core[0] : core[1], core[2] : core[3]] = part


def _with_ensemble(model: nn.Module, ensemble: bool) -> nn.Module:
    if not ensemble:
        return model
    from .ensemble import SelfEnsemble

    return SelfEnsemble(model)


def denoise_tensor(
    model: nn.Module,
    y: torch.Tensor,
    *,
    sigma: float | None = None,
    ensemble: bool = False,
    tile: int = 512,
    overlap: int | None = None,
    batch_pixels: int = DEFAULT_BATCH_PIXELS,
    progress: bool = False,
) -> torch.Tensor:
    """Denoise a batch of images of any size, tile by tile.

    Parameters
    ----------
    model : nn.Module
        Denoiser, ``model(y) -> x_hat`` (or ``model(y, sigma)``) on ``(B, C, H, W)``
        tensors. Run in eval mode (its previous mode is restored afterwards), on the
        device of its weights.
    y : Tensor, shape (B, C, H, W), C in {1, 3}
        Noisy images in [0, 1] (values slightly outside are fine), on any device.
    sigma : float or None, keyword-only
        Noise level on the image scale (25/255 ≈ 0.098), passed as ``model(tiles,
        sigma)`` for every tile: a model with a noise-level input (``drunet``) becomes
        non-blind, blind models ignore it. None: ``model(tiles)``.
    ensemble : bool, keyword-only
        Average the model over the 8 flips and rotations of each tile
        (:class:`filterscope.ensemble.SelfEnsemble`); 8 times the work.
    tile : int, keyword-only
        Side in pixels of the part of the image each tile contributes (a whole side
        when ``tile`` plus the halo spans it; see :func:`tile_grid`).
    overlap : int or None, keyword-only
        Halo in pixels of real image context added around each tile and thrown away
        afterwards. None: the model's ``receptive_radius`` if it has one, else 32.
    batch_pixels : int, keyword-only
        Input pixels per model call; tiles (all of one padded shape) are batched up to it.
    progress : bool, keyword-only
        Show a progress bar on stderr when there are several tiles.

    Returns
    -------
    Tensor, shape (B, C, H, W), float32
        Estimate of the clean images, not clipped, on the device of ``y``.

    Raises
    ------
    ChannelError
        A colour model on gray images (see :func:`check_model_channels`).
    InputError
        Bad tile, overlap or sigma, or a tensor that is not (B, 1 or 3, H, W).

    Notes
    -----
    A gray model (``in_channels == 1``) on RGB images denoises each channel as a gray
    image. With ``overlap`` at least the receptive radius, the result of a
    convolutional network equals the whole-image result to round-off.
    """
    sigma = validate_sigma(sigma)
    if overlap is None:
        overlap = int(getattr(model, "receptive_radius", DEFAULT_OVERLAP))
    # Restore each submodule's own mode afterwards (model.train() would set all alike).
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        x_hat = _run_tiled(
            _with_ensemble(model, ensemble),
            y,
            in_channels=getattr(model, "in_channels", None),
            tile=tile,
            overlap=overlap,
            batch_pixels=batch_pixels,
            progress=progress,
            sigma=sigma,
            model_name=_model_name(model),
        ).estimate
    finally:
        for module, training in modes:
            module.training = training
    return x_hat


def _installed_default(channels: int) -> str:
    """The shipped default model's name for ``channels``, refused when not installed."""
    from .models import zoo

    name = zoo.default_model_name(channels)
    if name not in zoo.list_shipped():
        raise CheckpointError(
            f"no model given and the default model {name!r} is not installed; "
            "name a shipped model or a checkpoint path"
        )
    return name


def _load_model(name_or_path: str | os.PathLike | None, channels: int) -> nn.Module:
    """Resolve a model by :func:`filterscope.hub.load_model` (registered name, checkpoint
    path or object path), or the shipped default for ``channels`` when None."""
    from .hub import load_model

    return load_model(_installed_default(channels) if name_or_path is None else name_or_path)


#: What ``noise_type`` may say: ``"auto"`` chooses per image (:func:`choose_noise_type`),
#: ``"gaussian"`` always takes the shipped default, ``"real"`` the real-noise model.
NOISE_TYPES = ("auto", "gaussian", "real")

#: :func:`choose_noise_type` takes the real-noise model when that model's estimated
#: noise map averages at least this many times the wavelet estimate of white noise,
#: unless its card names its own ``noise_type_threshold`` (:func:`real_noise_threshold`).
#: The finest wavelet band sees little of correlated camera noise, the estimator sees
#: it all; on white Gaussian noise the two agree. Set by
#: ``benchmarks/noise_type_choice.py`` on synthetic noise: the two kinds overlap for the
#: shipped real model (its estimator reads little of smoothed camera noise), so it sits
#: about 10% above the largest Gaussian value (1.85 at σ = 5 for stage 3, 1.89 for stage 8,
#: 1.90 for stage 9), where white noise keeps the default.
REAL_NOISE_RATIO = 2.05

#: The evidence is read on a centre crop of at most this side: the crops
#: ``benchmarks/noise_type_choice.py`` calibrates the thresholds on, and a fixed cost
#: (0.013 s, a twentieth of the default's 512×512 run; a 512 side cost a third). Smaller
#: images than MIN_EVIDENCE_SIDE are taken as Gaussian (the wavelet estimate needs 8 pixels).
EVIDENCE_SIDE = 256
MIN_EVIDENCE_SIDE = 8


def real_noise_evidence(real_model: nn.Module, y: torch.Tensor) -> float:
    """How much more noise ``real_model``'s estimator sees in ``y`` than white noise.

    Parameters
    ----------
    real_model : nn.Module
        A model with a noise-map estimator (:func:`estimated_noise_map`).
    y : Tensor, shape (1, C, H, W)
        A noisy image in [0, 1], H, W >= 8; read on its centre crop of at most
        :data:`EVIDENCE_SIDE` pixels a side.

    Returns
    -------
    float
        Mean of the estimated map over :func:`filterscope.noise.estimate_noise_level`.
        Both are positively homogeneous of degree 1, so the ratio does not change when
        the image is scaled, and a blind path that chooses by it stays positively
        homogeneous. ``inf`` when only the estimator sees noise, 1 when neither does.
    """
    from .noise import estimate_noise_level

    top = max(0, (y.shape[-2] - EVIDENCE_SIDE) // 2)
    left = max(0, (y.shape[-1] - EVIDENCE_SIDE) // 2)
    crop = y[..., top : top + EVIDENCE_SIDE, left : left + EVIDENCE_SIDE]
    with torch.inference_mode():
        estimated = float(estimated_noise_map(real_model, crop, per_pixel=True).mean())
        white = float(estimate_noise_level(crop.float())[0])
    if white <= 0:
        return math.inf if estimated > 0 else 1.0
    return estimated / white


def real_noise_threshold(real_model: nn.Module) -> float:
    """The evidence (:func:`real_noise_evidence`) at which ``real_model`` is chosen.

    Each estimator reads camera and white noise on its own scale, so a card may record
    the threshold that ``benchmarks/noise_type_choice.py`` set for its model
    (``noise_type_threshold``); cards without one use :data:`REAL_NOISE_RATIO`, which
    was set for them.

    Raises
    ------
    InputError
        The card's value is not a finite positive number.
    """
    card = getattr(real_model, "card", None)
    value = card.get("noise_type_threshold") if isinstance(card, dict) else None
    if value is None:
        return REAL_NOISE_RATIO
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"model card: noise_type_threshold must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"model card: noise_type_threshold must be positive, got {value!r}")
    return float(value)


def choose_noise_type(real_model: nn.Module, y: torch.Tensor) -> tuple[str, float]:
    """``("real" or "gaussian", evidence)`` for the noisy image ``y`` (1, C, H, W): real
    camera noise when :func:`real_noise_evidence` reaches :func:`real_noise_threshold`."""
    evidence = real_noise_evidence(real_model, y)
    return ("real" if evidence >= real_noise_threshold(real_model) else "gaussian"), evidence


def choose_shipped_model(
    y: torch.Tensor,
    *,
    sigma: float | None,
    noise_type: str = "auto",
    load: Callable[[str], nn.Module],
) -> tuple[str, dict[str, Any]]:
    """The shipped model to denoise ``y`` with when no model is named, and the choice.

    Parameters
    ----------
    y : Tensor, shape (1, C, H, W)
        The noisy image in [0, 1].
    sigma : float or None, keyword-only
        A noise level given by the caller: Gaussian noise (``auto`` takes the default).
    noise_type : {"auto", "gaussian", "real"}, keyword-only
        See :class:`DenoiseOptions`.
    load : callable, keyword-only
        ``load(name)`` gives the loaded model of a shipped name (the caller's cache).

    Returns
    -------
    name : str
        :func:`~filterscope.models.zoo.default_model_name` or
        :func:`~filterscope.models.zoo.real_noise_model_name` of the image's channels.
    choice : dict
        Empty when there was nothing to choose (no real-noise model for these channels,
        or ``noise_type="gaussian"``); else ``noise_type`` and, when measured,
        ``real_noise_evidence`` (:func:`real_noise_evidence`).
    """
    from .models import zoo

    check_noise_type(noise_type)
    channels = y.shape[1]
    default = _installed_default(channels)
    real = None if noise_type == "gaussian" else zoo.real_noise_model_name(channels)
    if real is None:
        if noise_type == "real":
            raise InputError(f"noise_type: no real-noise model ships for {channels}-channel images")
        return default, {}
    if noise_type == "real":
        return real, {"noise_type": "real"}
    if sigma is not None or min(y.shape[-2:]) < MIN_EVIDENCE_SIDE:
        return default, {"noise_type": "gaussian"}
    kind, evidence = choose_noise_type(load(real), y)
    choice = {"noise_type": kind, "real_noise_evidence": round(evidence, 3)}
    return (real if kind == "real" else default), choice


def check_noise_type(noise_type: str) -> str:
    """``noise_type`` if it is one of :data:`NOISE_TYPES`, else an InputError."""
    if noise_type not in NOISE_TYPES:
        raise InputError(f"noise_type must be one of {', '.join(NOISE_TYPES)}, got {noise_type!r}")
    return noise_type


class _Runner:
    """The model of a denoising run, loaded and prepared once per channel count.

    ``model`` None means the shipped default for each image's channel count, loaded
    when the first image of that count comes (and, by ``noise_type``, the shipped
    real-noise model, chosen per image); a name or path is loaded at once (so a bad
    checkpoint stops the run before any image is read).
    """

    def __init__(self, model, *, precision, device, ensemble, tile, overlap, sigma, noise_type):
        self.noise_type = check_noise_type(noise_type)
        self.given = model
        self.device = resolve_device(device)
        # resolved once: the path taken is what the result records
        self.precision = choose_precision(
            "denoise", self.device, requested=AUTO if precision is None else precision
        )
        self.ensemble = bool(ensemble)
        _validate_options(tile, 0 if overlap is None else overlap)
        self.tile, self.overlap = tile, overlap
        self.sigma = validate_sigma(sigma)
        self._prepared: dict[int | None, tuple[nn.Module, nn.Module, str]] = {}
        if model is not None:
            self._prepare(None, model)

    def _prepare(self, key: str | None, model) -> tuple[nn.Module, nn.Module, str]:
        if isinstance(model, nn.Module):
            net, name = model, _model_name(model)
        else:
            net, name = _load_model(model, 1), str(model)
        net = net.to(self.device).eval()
        runner = _with_ensemble(prepare_model(net, precision=self.precision), self.ensemble)
        self._prepared[key] = (net, runner, name)
        return self._prepared[key]

    def for_image(self, y: torch.Tensor) -> tuple[nn.Module, nn.Module, str, dict[str, Any]]:
        """(model, prepared model, name, choice) for the noisy image ``y`` (1, C, H, W):
        the given model, or the shipped one :func:`choose_shipped_model` picks."""
        if self.given is not None:
            return (*self._prepared[None], {})
        name, choice = choose_shipped_model(
            y, sigma=self.sigma, noise_type=self.noise_type, load=lambda n: self._named(n)[0]
        )
        return (*self._named(name), choice)

    def _named(self, name: str) -> tuple[nn.Module, nn.Module, str]:
        return self._prepared.get(name) or self._prepare(name, name)

    def denoise(
        self,
        input_path: Path,
        output_path: Path,
        *,
        overwrite: bool,
        progress: bool,
        estimate_noise: bool,
        noise_map_path: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        start = time.perf_counter()
        image, info = read_image(input_path)
        # Refuse before loading the model and computing anything.
        out_dtype = check_output_path(
            output_path, overwrite=overwrite, dtype=info.dtype, channels=info.channels
        )
        y = to_tensor(image)
        net, runner, name, choice = self.for_image(y)
        in_channels = getattr(net, "in_channels", None)
        check_model_channels(
            in_channels, info.channels, model_name=name, image_name=str(input_path)
        )
        if noise_map_path is not None and not isinstance(
            getattr(net, "estimator", None), nn.Module
        ):
            raise InputError(f"noise_map_path: {name} estimates no noise map")
        overlap = self.overlap
        if overlap is None:
            overlap = int(getattr(net, "receptive_radius", DEFAULT_OVERLAP))
        noise = _estimate_noise_255(image) if estimate_noise else None
        height, width, channels = image.shape
        del image  # keep one full-size copy of the input in memory, not two
        run = _run_tiled(
            runner,
            y,
            in_channels=in_channels,
            tile=self.tile,
            overlap=overlap,
            batch_pixels=DEFAULT_BATCH_PIXELS,
            progress=progress,
            sigma=self.sigma,
            model_name=name,
            keep_noise_map=estimate_noise or noise_map_path is not None,
        )
        del y
        level, tiles = run.noise_map, run.tiles
        result = run.estimate[0].permute(1, 2, 0).numpy()
        if out_dtype != "float32":
            # Integer output: the estimate must lie in the representable range.
            np.clip(result, 0.0, 1.0, out=result)
        write_image(
            output_path, result, dtype=out_dtype, overwrite=overwrite, metadata=info.metadata
        )
        record = {
            "input": str(input_path),
            "output": str(output_path),
            "model": name,
            "shape": (height, width, channels),
            "width": width,
            "height": height,
            "channels": channels,
            "bit_depth": info.dtype,
            "orientation": info.orientation,
            "input_bytes": input_path.stat().st_size,
            "output_bytes": output_path.stat().st_size,
            "tiles": tiles,
            "precision": self.precision,
            "sigma_255": None if self.sigma is None else self.sigma * 255.0,
            "ensemble": self.ensemble,
            "seconds": time.perf_counter() - start,
        } | choice
        if estimate_noise:
            record["estimated_noise_255"] = noise
            record["noise_map_255"] = None if level is None else noise_map_summary(level)
        if noise_map_path is not None:
            save_noise_map(noise_map_path, level, overwrite=overwrite)
            record["noise_map"] = str(noise_map_path)
        return record


class _MapAsImage(nn.Module):
    """A noise-map estimator as a model of :func:`_run_tiled`: its map repeated over
    the image's channels (tiles are cut and put back like images). Its tiles lie on the
    grid of the network it feeds (``tile_alignment``), extended past the border as that
    network's are, so the map is the one the network reads."""

    def __init__(self, estimator: nn.Module, tile_alignment: int = 1):
        super().__init__()
        self.estimator = estimator
        self.tile_alignment = tile_alignment

    def forward(self, x: torch.Tensor, sigma: None = None) -> torch.Tensor:
        level = self.estimator(x)
        return level.expand_as(x) if level.shape[1] == 1 else level


def estimated_noise_map(
    model: nn.Module, y: torch.Tensor, *, tile: int = 512, per_pixel: bool = False
) -> torch.Tensor | None:
    """The noise map, image scale, that ``model``'s blind path estimates for ``y``.

    Parameters
    ----------
    model : nn.Module
        A model with a noise-map estimator (``estimator`` attribute, e.g. a DRUNet with
        ``noise_estimator``); any other model gives None.
    y : Tensor, shape (B, C, H, W)
        Noisy images in [0, 1], on the CPU.
    tile : int, keyword-only
        The map is computed in tiles of this side (with the estimator's receptive
        radius as overlap), so memory stays bounded on large photos.
    per_pixel : bool, keyword-only
        For a model with ``pooled_noise_map``, the estimator's own per-pixel map instead
        of the one level per image that its blind path feeds (the default, so what is
        shown is what ran).

    Returns
    -------
    Tensor of shape (B, k, H, W), or None
        ``k`` is the estimator's map channels (a gray model on an RGB image: one map per
        channel). Non-negative, on the CPU, float32.
    """
    estimator = getattr(model, "estimator", None)
    if not isinstance(estimator, nn.Module):
        return None
    in_channels = getattr(model, "in_channels", None)
    pooled = getattr(model, "config", {}).get("pooled_noise_map", False)
    if pooled and not per_pixel:
        return _pooled_map(model, y)
    # A local map is read on the network's grid; a pooled one's level is the RMS of the
    # map of the image alone (NoiseMapEstimator.image_level).
    align = 1 if pooled else int(getattr(model, "tile_alignment", 1))
    level = _run_tiled(
        _MapAsImage(estimator, align).eval(),
        y,
        in_channels=in_channels,
        tile=tile,
        overlap=int(getattr(estimator, "radius", DEFAULT_OVERLAP)),
        batch_pixels=DEFAULT_BATCH_PIXELS,
        progress=False,
    ).estimate
    map_channels = getattr(model, "noise_map_channels", 1)
    return level[:, :map_channels] if in_channels == y.shape[1] else level


def _pooled_map(model: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """The constant map a ``pooled_noise_map`` model feeds ``y``: each image's (a gray
    model on an RGB image: each channel's) level, from the model's own
    ``image_noise_level``, spread over a (B, k, H, W) map as :func:`estimated_noise_map`
    returns it."""
    batch, channels, height, width = y.shape
    gray_on_color = getattr(model, "in_channels", None) == 1 and channels == 3
    images = y.reshape(batch * channels, 1, height, width) if gray_on_color else y
    with torch.inference_mode():
        level = model.image_noise_level(images.float()).float()
    map_channels = channels if gray_on_color else getattr(model, "noise_map_channels", 1)
    return level.reshape(batch, -1, 1, 1).expand(batch, map_channels, height, width)


def save_noise_map(
    path: str | os.PathLike, level: torch.Tensor, *, overwrite: bool = False
) -> Path:
    """Write the first image's noise map as an image whose intensity is σ on the image
    scale: in an 8-bit file a pixel value of 10 is σ = 10 on the 0-255 scale (16 bits
    for PNG and TIFF, as ``σ·65535``; σ above 1 is clipped). One channel, or three for
    per-channel maps."""
    path = Path(path)
    dtype = "uint8" if path.suffix.lower() in (".jpg", ".jpeg") else "uint16"
    image = level[0].permute(1, 2, 0).float().numpy()
    return write_image(path, image, dtype=dtype, overwrite=overwrite)


def _estimate_noise_255(image: np.ndarray) -> float | None:
    """Wavelet (median absolute deviation) noise estimate on the 0-255 scale; None for an
    image too small to estimate it from."""
    from .evaluation.baselines import estimate_noise_sigma
    from .noise import MIN_ESTIMATE_SIDE

    if min(image.shape[:2]) < MIN_ESTIMATE_SIDE:
        return None
    return 255.0 * estimate_noise_sigma(image)


@dataclass(frozen=True)
class DenoiseOptions:
    """How :func:`denoise_file` and :func:`denoise_files` denoise (every field optional).

    Attributes
    ----------
    model : str, path-like, nn.Module or None
        A shipped model name, a checkpoint path (see
        :func:`filterscope.models.zoo.load_model`) or a loaded model. None: the
        shipped default for the image's channel count.
    sigma : float or None
        Noise level on the image scale (25/255 ≈ 0.098) given to the model, see
        :func:`denoise_tensor`; blind models ignore it.
    ensemble : bool
        Self-ensemble over the 8 flips and rotations (8 times the work).
    overwrite : bool
        Replace an existing output; otherwise refuse before doing any work.
    tile, overlap : int
        Tile side and halo in pixels, see :func:`denoise_tensor`.
    precision : {"float32", "bfloat16"} or None
        Arithmetic of the forward pass; None: :func:`default_precision`.
    device : str or torch.device or None
        Where the model runs; None: CUDA when available, else CPU. The image and the
        result stay in CPU memory; only one batch of tiles at a time is on ``device``.
        A model passed as a module is moved there and put in eval mode.
    progress : bool
        A progress bar on stderr: over the tiles for one file, over the files for
        several.
    estimate_noise : bool
        Also estimate each input's noise level (``estimated_noise_255``) and, for a
        model with a noise-map estimator, summarise its map (``noise_map_255``: mean,
        min, max on the 0-255 scale; None for other models).
    noise_map_path : str or path-like or None
        Write the model's estimated noise map of the (one) input there as an image (see
        :func:`save_noise_map`); refused for a model without a noise-map estimator.
    noise_type : {"auto", "gaussian", "real"}
        With no ``model``: ``"auto"`` takes the shipped real-noise model for images whose
        noise looks like a camera's (:func:`choose_noise_type`; a given ``sigma`` means
        Gaussian noise), ``"gaussian"`` always the default, ``"real"`` always the
        real-noise model. Ignored when ``model`` is given. The result records the choice
        (``noise_type``, ``real_noise_evidence``).
    """

    model: str | os.PathLike | nn.Module | None = None
    sigma: float | None = None
    ensemble: bool = False
    overwrite: bool = False
    tile: int = 512
    overlap: int | None = None
    precision: str | None = None
    device: str | torch.device | None = None
    progress: bool = False
    estimate_noise: bool = False
    noise_map_path: str | os.PathLike | None = None
    noise_type: str = "auto"


def _runner(options: DenoiseOptions) -> _Runner:
    """The :class:`_Runner` of ``options`` (model loaded, device and precision resolved)."""
    return _Runner(
        options.model,
        precision=options.precision,
        device=options.device,
        ensemble=options.ensemble,
        tile=options.tile,
        overlap=options.overlap,
        sigma=options.sigma,
        noise_type=options.noise_type,
    )


def denoise_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: DenoiseOptions | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Denoise an image file and write the result in the input's mode and bit depth.

    Parameters
    ----------
    input_path : str or path-like
        Gray or RGB PNG, TIFF or JPEG; 8- or 16-bit integer, or float32 TIFF.
        Read with :func:`filterscope.io.read_image` (EXIF orientation applied).
    output_path : str or path-like
        Destination; the format follows the suffix. Written atomically, with the
        input's colour profile, resolution and EXIF (see :func:`~filterscope.io.write_image`).
    options : DenoiseOptions, optional
        Model, σ, tiles, precision, device... (:class:`DenoiseOptions`).
    **settings
        Fields of :class:`DenoiseOptions` by keyword (``model=``, ``sigma=``...);
        they replace those of ``options``.

    Returns
    -------
    dict
        ``input``, ``output`` (str), ``model``, ``shape`` ((H, W, C) of the image),
        ``width``, ``height``, ``channels``, ``bit_depth``, ``orientation`` (EXIF,
        applied), ``input_bytes``, ``output_bytes``, ``tiles`` (number of tiles),
        ``precision``, ``sigma_255``, ``ensemble``, ``seconds`` (wall time), and
        ``estimated_noise_255`` when asked.

    Raises
    ------
    InputError
        Unreadable or unsupported input, output exists and ``overwrite`` is False,
        unwritable output, bad options.
    ChannelError
        A colour model on a gray image.
    CheckpointError
        Model that cannot be found or loaded safely.
    """
    options = merge_options(DenoiseOptions, options, settings)
    input_path, output_path = Path(input_path), Path(output_path)
    # Refuse an existing output before loading the model.
    check_output_path(output_path, overwrite=options.overwrite)
    runner = _runner(options)
    return runner.denoise(
        input_path,
        output_path,
        overwrite=options.overwrite,
        progress=options.progress,
        estimate_noise=options.estimate_noise,
        noise_map_path=options.noise_map_path,
    )


def plan_outputs(
    inputs: Sequence[str | os.PathLike], output: str | os.PathLike
) -> tuple[list[tuple[Path, Path]], bool]:
    """Pair each input image with its output file.

    Parameters
    ----------
    inputs : sequence of str or path-like
        Image files and folders (a folder stands for the image files directly in it).
    output : str or path-like
        For one input file: the output file, or an existing folder to write it into.
        Otherwise a folder (made if missing; its parent must exist) that receives
        each result under its input's file name.

    Returns
    -------
    pairs : list of (Path, Path)
        (input, output) in the order given, folders in name order.
    to_folder : bool
        Whether ``output`` is a folder (that may still have to be made).

    Raises
    ------
    InputError
        No inputs, a folder without images, ``output`` an existing file while it must
        be a folder, a missing parent folder, two inputs of the same file name, or an
        output that is its own input.
    """
    output = Path(output)
    if not inputs:
        raise InputError("no input images given")
    files: list[Path] = []
    any_folder = False
    for item in map(Path, inputs):
        if item.is_dir():
            any_folder = True
            images = list_images(item)
            if not images:
                raise InputError(f"{item}: no image files in this folder")
            files.extend(images)
        else:
            files.append(item)
    to_folder = len(files) > 1 or any_folder or output.is_dir()
    if not to_folder:
        pairs = [(files[0], output)]
    else:
        if output.exists() and not output.is_dir():
            raise InputError(
                f"{output}: is a file; with several inputs or a folder, the output must be a folder"
            )
        if not output.parent.is_dir():
            raise InputError(f"{output.parent}: output folder's parent does not exist")
        pairs = [(file, output / file.name) for file in files]
    from ._files import resolved

    seen: dict[Path, Path] = {}
    for source, target in pairs:
        if source.is_symlink() and not source.exists():
            continue  # a link loop or a broken link: that file fails, with its name
        if resolved(target) == source.resolve():
            raise InputError(f"{source}: the output would replace this input; write elsewhere")
        if resolved(target) in seen:
            raise InputError(
                f"{seen[resolved(target)]} and {source} would both be written to {target}"
            )
        seen[resolved(target)] = source
    return pairs, to_folder


def denoise_files(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    options: DenoiseOptions | None = None,
    *,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    **settings: Any,
) -> list[dict[str, Any]]:
    """Denoise image files and folders; a failure of one file does not stop the others.

    Parameters
    ----------
    inputs : sequence of str or path-like
        Image files and folders of images (not searched recursively).
    output : str or path-like
        Output file (one input file) or folder, see :func:`plan_outputs`.
    options : DenoiseOptions, optional
        As for :func:`denoise_file` (``**settings`` too); the model is loaded once (the
        default one once per channel count).
    on_result : callable or None, keyword-only
        Called with each file's record as soon as the file is done or has failed.

    Returns
    -------
    list of dict
        One record per input image, in order: ``status`` (``"ok"`` or ``"failed"``),
        ``input``, ``output``, ``error`` (the one-line message, or None), and for the
        files done the fields :func:`denoise_file` returns.

    Raises
    ------
    InputError, CheckpointError
        Only for what stops every file: bad options, outputs that cannot be planned
        (see :func:`plan_outputs`), a given model that cannot be loaded.
    """
    options = merge_options(DenoiseOptions, options, settings)
    pairs, to_folder = plan_outputs(inputs, output)
    if options.noise_map_path is not None and len(pairs) != 1:
        raise InputError(f"noise_map_path: takes one input image, got {len(pairs)}")
    records: list[dict[str, Any] | None] = [None] * len(pairs)

    def fail(index: int, message: str) -> None:
        source, target = pairs[index]
        record = {"status": "failed", "input": str(source), "output": str(target)}
        records[index] = {**record, "error": message}
        if on_result is not None:
            on_result(records[index])

    # Existing outputs are refused before any model is loaded or image read.
    pending = []
    for index, (_, target) in enumerate(pairs):
        if target.exists() and not options.overwrite:
            fail(index, f"{target}: already exists ({OVERWRITE_ADVICE})")
        else:
            pending.append(index)
    runner = None
    if pending:
        runner = _runner(options)
        if to_folder:
            try:
                Path(output).mkdir(exist_ok=True)
            except OSError as exc:  # a read-only or full disk: the user's to fix
                raise InputError(
                    f"{output}: cannot make the output folder ({exc.strerror})"
                ) from None

    from tqdm import tqdm

    several = len(pairs) > 1
    bar = tqdm(
        total=len(pending),
        desc="denoising",
        unit="image",
        file=sys.stderr,
        disable=not (options.progress and several),
    )
    with bar:
        for index in pending:
            source, target = pairs[index]
            try:
                record = runner.denoise(
                    source,
                    target,
                    overwrite=options.overwrite,
                    progress=options.progress and not several,
                    estimate_noise=options.estimate_noise,
                    noise_map_path=options.noise_map_path,
                )
            except FilterscopeError as exc:
                fail(index, str(exc))
            except (MemoryError, torch.OutOfMemoryError) as exc:
                detail = (str(exc).strip().splitlines() or [""])[0]
                fail(index, f"{source}: out of memory ({detail}); try a smaller tile")
            else:
                records[index] = {"status": "ok", **record, "error": None}
                if on_result is not None:
                    on_result(records[index])
            bar.update(1)
    return records
