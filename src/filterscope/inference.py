"""Running a trained denoiser on images of any size: tiling, channel matching, files.

Large images are cut into tiles; each tile is padded with a halo of ``overlap`` pixels
of real image context on every side, the model runs on the padded tile, and only the
tile's centre is kept. For a convolutional network whose receptive radius is at most
``overlap`` (DnCNN: ``num_layers`` pixels), the result equals the whole-image result up
to float round-off, while memory stays bounded by a few tile-sized activations.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError, InputError
from .io import check_output_path, read_image, to_tensor, write_image
from .models.base import module_device
from .models.fast import optimize_for_inference

#: Input pixels (summed over the tiles of one batch) per model call: with 64 hidden
#: channels in float32 one activation is then 256 MiB, so a few live ones fit in 1–2 GiB.
DEFAULT_BATCH_PIXELS = 1 << 20

#: Halo (pixels) for models that do not declare a ``receptive_radius``.
DEFAULT_OVERLAP = 32

PRECISIONS = ("float32", "bfloat16")


def bfloat16_supported() -> bool:
    """True when bfloat16 arithmetic is native here (a CUDA GPU, or a CPU whose oneDNN
    build reports bfloat16 support); elsewhere bfloat16 is emulated and slower."""
    if torch.cuda.is_available():
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_precision() -> str:
    """``"bfloat16"`` where it is native (see :func:`bfloat16_supported`), else ``"float32"``."""
    return "bfloat16" if bfloat16_supported() else "float32"


def prepare_model(model: nn.Module, *, precision: str | None = None) -> nn.Module:
    """Return a module for inference at ``precision`` with the same ``forward(y)`` contract.

    Parameters
    ----------
    model : nn.Module
        A denoiser, already on its target device.
    precision : {"float32", "bfloat16"} or None, keyword-only
        Arithmetic of the forward pass; None means :func:`default_precision`.
        Input and output stay float32 tensors in [0, 1].

    Returns
    -------
    nn.Module
        What :func:`filterscope.models.fast.optimize_for_inference` returns: a copy with
        norms folded into convolutions, channels-last, at ``precision``.

    Raises
    ------
    InputError
        Unknown precision.
    """
    if precision is None:
        precision = default_precision()
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return optimize_for_inference(model, precision=precision)


def _tile_starts(size: int, tile: int) -> list[int]:
    """Starts of cores of length ``tile`` covering ``[0, size)``; the last one is shifted
    back to end at ``size`` so that every core (and so every interior tile) has one shape,
    which lets tiles share a batch."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, tile))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def tile_grid(
    height: int, width: int, *, tile: int, overlap: int
) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Tiles covering an image: ``(core, padded)`` boxes, each ``(top, bottom, left, right)``.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    tile : int, keyword-only
        Side of a tile's core in pixels (cores near the end may overlap their neighbour).
    overlap : int, keyword-only
        Halo in pixels added on each side of a core, clipped at the image border.

    Returns
    -------
    list of (core, padded)
        Half-open pixel ranges; the cores cover every pixel.
    """
    tiles = []
    for top in _tile_starts(height, tile):
        bottom = min(top + tile, height)
        for left in _tile_starts(width, tile):
            right = min(left + tile, width)
            padded = (
                max(top - overlap, 0),
                min(bottom + overlap, height),
                max(left - overlap, 0),
                min(right + overlap, width),
            )
            tiles.append(((top, bottom, left, right), padded))
    return tiles


def _validate_options(tile: int, overlap: int) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise InputError(f"tile must be a positive number of pixels, got {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise InputError(f"overlap must be a number of pixels >= 0, got {overlap!r}")


def _run_tiled(
    model: nn.Module,
    y: torch.Tensor,
    *,
    in_channels: int | None,
    tile: int,
    overlap: int,
    batch_pixels: int,
    progress: bool,
) -> tuple[torch.Tensor, int]:
    """Tiled forward pass; returns the estimate (shape and device of ``y``) and the tile count."""
    _validate_options(tile, overlap)
    if y.dim() != 4 or y.shape[1] not in (1, 3):
        raise InputError(f"expected a (B, C, H, W) tensor with C in (1, 3), got {tuple(y.shape)}")
    if not y.is_floating_point():
        raise InputError(f"expected a float tensor in [0, 1], got {y.dtype}")
    batch, channels, height, width = y.shape
    average = False
    if in_channels is None or in_channels == channels:
        model_input = y
    elif in_channels == 1:
        # A gray model sees each colour channel as a separate gray image.
        model_input = y.reshape(batch * channels, 1, height, width)
    elif in_channels == 3 and channels == 1:
        # A colour model sees the gray image as gray RGB; its three outputs are averaged.
        model_input = y.expand(batch, 3, height, width)
        average = True
    else:
        raise InputError(f"a model for {in_channels} channels cannot denoise {channels}")

    out = torch.empty(
        (model_input.shape[0], 1 if average else model_input.shape[1], height, width),
        dtype=torch.float32,
        device=y.device,
    )
    device = module_device(model)
    tiles = tile_grid(height, width, tile=tile, overlap=overlap)
    # Tiles of one padded shape can share a batch (interior tiles all have the same shape).
    groups: dict[tuple[int, int], list] = {}
    for core, padded in tiles:
        groups.setdefault((padded[1] - padded[0], padded[3] - padded[2]), []).append((core, padded))

    from tqdm import tqdm

    bar = tqdm(
        total=len(tiles),
        desc="denoising",
        unit="tile",
        file=sys.stderr,
        disable=not progress or len(tiles) <= 1,
    )
    images = model_input.shape[0]
    with torch.inference_mode(), bar:
        for (tile_h, tile_w), members in groups.items():
            per_batch = max(1, batch_pixels // (images * tile_h * tile_w))
            for start in range(0, len(members), per_batch):
                chunk = members[start : start + per_batch]
                x = torch.cat(
                    [model_input[:, :, p[0] : p[1], p[2] : p[3]] for _, p in chunk], dim=0
                )
                x = x.to(device=device, dtype=torch.float32)
                x_hat = model(x)
                if x_hat.shape != x.shape:
                    raise ValueError(
                        f"model returned shape {tuple(x_hat.shape)} for input {tuple(x.shape)}"
                    )
                for index, (core, padded) in enumerate(chunk):
                    rows = slice(core[0] - padded[0], core[1] - padded[0])
                    cols = slice(core[2] - padded[2], core[3] - padded[2])
                    part = x_hat[index * images : (index + 1) * images, :, rows, cols]
                    if average:
                        part = part.float().mean(dim=1, keepdim=True)
                    out[:, :, core[0] : core[1], core[2] : core[3]] = part.to(
                        device=out.device, dtype=torch.float32
                    )
                bar.update(len(chunk))
                del x, x_hat
    return out.reshape(batch, channels, height, width), len(tiles)


def denoise_tensor(
    model: nn.Module,
    y: torch.Tensor,
    *,
    tile: int = 512,
    overlap: int | None = None,
    batch_pixels: int = DEFAULT_BATCH_PIXELS,
    progress: bool = False,
) -> torch.Tensor:
    """Denoise a batch of images of any size, tile by tile.

    Parameters
    ----------
    model : nn.Module
        Blind denoiser, ``model(y) -> x_hat`` on ``(B, C, H, W)`` tensors. Run in eval
        mode (its previous mode is restored afterwards), on the device of its weights.
    y : Tensor, shape (B, C, H, W), C in {1, 3}
        Noisy images in [0, 1] (values slightly outside are fine), on any device.
    tile : int, keyword-only
        Side in pixels of the part of the image each tile contributes.
    overlap : int or None, keyword-only
        Halo in pixels of real image context added around each tile and thrown away
        afterwards. None: the model's ``receptive_radius`` if it has one, else 32.
    batch_pixels : int, keyword-only
        Input pixels per model call; tiles of the same shape are batched up to it.
    progress : bool, keyword-only
        Show a progress bar on stderr when there are several tiles.

    Returns
    -------
    Tensor, shape (B, C, H, W), float32
        Estimate of the clean images, not clipped, on the device of ``y``.

    Notes
    -----
    A gray model (``in_channels == 1``) on RGB images denoises each channel as a gray
    image; a colour model on gray images gets the gray image on all three channels and
    its outputs are averaged. With ``overlap`` at least the receptive radius, the
    result of a convolutional network equals the whole-image result to round-off.
    """
    if overlap is None:
        overlap = int(getattr(model, "receptive_radius", DEFAULT_OVERLAP))
    # Restore each submodule's own mode afterwards (model.train() would set all alike).
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        x_hat, _ = _run_tiled(
            model,
            y,
            in_channels=getattr(model, "in_channels", None),
            tile=tile,
            overlap=overlap,
            batch_pixels=batch_pixels,
            progress=progress,
        )
    finally:
        for module, training in modes:
            module.training = training
    return x_hat


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device {device!r} is not a torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested but no CUDA GPU is available; use cpu")
    return device


def _load_model(name_or_path: str | os.PathLike | None, channels: int) -> nn.Module:
    """Resolve a model name or checkpoint path; every failure is a CheckpointError."""
    from .models import zoo

    if name_or_path is None:
        name_or_path = zoo.default_model_name(channels)
        if name_or_path not in zoo.list_shipped():
            raise CheckpointError(
                f"no model given and the default model {name_or_path!r} is not installed; "
                "pass a model name or checkpoint path (--model)"
            )
    return zoo.load_model(name_or_path)


def denoise_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    model: str | os.PathLike | nn.Module | None = None,
    overwrite: bool = False,
    tile: int = 512,
    overlap: int | None = None,
    precision: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Denoise an image file and write the result in the input's mode and bit depth.

    Parameters
    ----------
    input_path : str or path-like
        Gray or RGB PNG, TIFF or JPEG; 8- or 16-bit integer, or float32 TIFF.
    output_path : str or path-like
        Destination; the format follows the suffix. Written atomically.
    model : str, path-like, nn.Module or None, keyword-only
        A shipped model name, a checkpoint path (see
        :func:`filterscope.models.zoo.load_model`) or a loaded model. None: the
        shipped default for the image's channel count.
    overwrite : bool, keyword-only
        Replace an existing ``output_path``; otherwise refuse before doing any work.
    tile, overlap : int, keyword-only
        Tile side and halo in pixels, see :func:`denoise_tensor`.
    precision : {"float32", "bfloat16"} or None, keyword-only
        Arithmetic of the forward pass; None: :func:`default_precision`.
    device : str or torch.device or None, keyword-only
        Where the model runs; None: CUDA when available, else CPU. The image and the
        result stay in CPU memory; only one batch of tiles at a time is on ``device``.
        A model passed as a module is moved there and put in eval mode.
    progress : bool, keyword-only
        Progress bar on stderr when there are several tiles.

    Returns
    -------
    dict
        ``input``, ``output`` (str), ``shape`` ((H, W, C) of the image), ``tiles``
        (number of tiles), ``precision``, ``seconds`` (wall time).

    Raises
    ------
    InputError
        Unreadable or unsupported input, output exists and ``overwrite`` is False,
        unwritable output.
    CheckpointError
        Model that cannot be found or loaded safely.
    """
    start = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    image, info = read_image(input_path)
    # Refuse before loading the model and computing anything.
    out_dtype = check_output_path(
        output_path, overwrite=overwrite, dtype=info.dtype, channels=info.channels
    )

    net = model if isinstance(model, nn.Module) else _load_model(model, info.channels)

    if overlap is None:
        overlap = int(getattr(net, "receptive_radius", DEFAULT_OVERLAP))
    in_channels = getattr(net, "in_channels", None)
    if precision is None:
        precision = default_precision()
    net = net.to(_resolve_device(device)).eval()
    runner = prepare_model(net, precision=precision)

    y = to_tensor(image)
    height, width, channels = image.shape
    del image  # keep one full-size copy of the input in memory, not two
    x_hat, tiles = _run_tiled(
        runner,
        y,
        in_channels=in_channels,
        tile=tile,
        overlap=overlap,
        batch_pixels=DEFAULT_BATCH_PIXELS,
        progress=progress,
    )
    del y
    result = x_hat[0].permute(1, 2, 0).numpy()
    if out_dtype != "float32":
        # Integer output: the estimate must lie in the representable range.
        np.clip(result, 0.0, 1.0, out=result)
    write_image(output_path, result, dtype=out_dtype, overwrite=overwrite)
    return {
        "input": str(input_path),
        "output": str(output_path),
        "shape": (height, width, channels),
        "tiles": tiles,
        "precision": precision,
        "seconds": time.perf_counter() - start,
    }
