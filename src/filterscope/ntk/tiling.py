"""Bounded memory for large images: the non-local filter of overlapping tiles.

The Nyström filter of a whole image holds the ``m × m`` core ``W_JJ`` of its ``m = f·d``
columns (float64, symmetrised: two copies) and ``d × k`` factors, so its memory grows
like ``d²``: a 1024×680 photo needs about 6 GiB and a 12-megapixel one hundreds. When
the estimate for the whole image exceeds the budget, the image is cut into overlapping
square tiles, each denoised with its own filter and stopping time (the filter stays
non-local within its tile), and the tiles are blended with linear ramps across their
overlaps. Memory is then that of one tile plus a few image-sized arrays, and time grows
linearly with the number of pixels. Images that fit are processed whole, as before.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import torch

from ..errors import InputError

#: Default memory budget of :func:`filterscope.ntk.denoiser.denoise`, bytes.
DEFAULT_MAX_BYTES = 4 << 30
#: Largest tile side: larger tiles fit a 4 GiB budget but cost more time per pixel
#: (a tile's cost grows like its pixel count squared).
MAX_TILE = 512
MIN_TILE = 64
#: Overlap of neighbouring tiles, pixels (blended with linear ramps).
OVERLAP = 32
#: Bytes per pixel of one filter computation besides the ``m × m`` core (factors, patch
#: correlations, the Monte-Carlo SURE's second filter), per channel beyond the first
#: (patches hold every channel), and per pixel of the image-sized arrays of a tiled run
#: (input, output and weights in float64, the caller's copy). Fitted to peak resident
#: memory of ``denoise(stop="sure")`` at 256×512 and 512×512 (gray and colour), rounded up.
BYTES_PER_PIXEL = 2400
BYTES_PER_EXTRA_CHANNEL = 600
IMAGE_BYTES_PER_PIXEL_CHANNEL = 32


def estimate_bytes(height: int, width: int, channels: int, *, columns: float | None) -> int:
    """Peak memory (bytes, approximate) of one non-local filter and its twicing on a
    ``height × width`` image with ``channels`` channels and column fraction ``columns``
    (None: the full ``d × d`` matrix)."""
    d = height * width
    m = d if columns is None else max(1, round(columns * d))
    core = 16 * m * m
    return core + d * (BYTES_PER_PIXEL + BYTES_PER_EXTRA_CHANNEL * (channels - 1))


def choose_tile(
    height: int, width: int, channels: int, *, columns: float | None, max_bytes: int
) -> int | None:
    """None when the whole image fits ``max_bytes``, else the largest tile side (a
    multiple of 32, at most :data:`MAX_TILE`) whose filter fits beside the image-sized
    arrays. Raises :class:`InputError`, with the memory needed, when no tile fits."""
    if estimate_bytes(height, width, channels, columns=columns) <= max_bytes:
        return None
    if columns is None:
        needed = estimate_bytes(height, width, channels, columns=None)
        raise InputError(
            f"the full {height * width}x{height * width} filter matrix needs about "
            f"{needed / 2**30:.1f} GiB, more than max_bytes ({max_bytes / 2**30:.1f} GiB); "
            "use a column fraction (Nyström) instead"
        )
    arrays = IMAGE_BYTES_PER_PIXEL_CHANNEL * height * width * channels
    for side in range(MAX_TILE, MIN_TILE - 1, -32):
        if arrays + estimate_bytes(side, side, channels, columns=columns) <= max_bytes:
            return side
    needed = arrays + estimate_bytes(MIN_TILE, MIN_TILE, channels, columns=columns)
    raise InputError(
        f"a {width}x{height} image needs about {needed / 2**30:.2f} GiB even in "
        f"{MIN_TILE}x{MIN_TILE} tiles, more than max_bytes ({max_bytes / 2**30:.2f} GiB)"
    )


def tile_starts(length: int, tile: int, overlap: int = OVERLAP) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``range(length)``, neighbours
    overlapping by at least ``overlap`` pixels (the last tile ends at ``length``)."""
    if length <= tile:
        return [0]
    step = tile - overlap
    count = math.ceil((length - tile) / step) + 1
    return [min(k * step, length - tile) for k in range(count)]


def _ramp(size: int, overlap: int, *, rise: bool, fall: bool) -> torch.Tensor:
    """Weights along one side of a tile: 1 inside, a linear ramp over ``overlap`` pixels
    at each end that borders another tile."""
    w = torch.ones(size, dtype=torch.float64)
    ramp = torch.arange(1, overlap + 1, dtype=torch.float64) / (overlap + 1)
    if rise:
        w[:overlap] = ramp
    if fall:
        w[size - overlap :] = ramp.flip(0)
    return w


def denoise_in_tiles(
    y: torch.Tensor,
    tile: int,
    denoise_tile: Callable[[torch.Tensor, tuple[slice, slice]], tuple[torch.Tensor, dict]],
    *,
    overlap: int = OVERLAP,
) -> tuple[torch.Tensor, dict]:
    """Denoise ``y`` (C, H, W) tile by tile and blend the tiles.

    Parameters
    ----------
    y : Tensor, shape (C, H, W), float64
    tile : int
        Tile side, pixels.
    denoise_tile : callable
        ``denoise_tile(y_tile, (rows, cols)) -> (x_hat_tile, info)``, the whole-image
        method applied to one tile (``rows``, ``cols`` locate it, e.g. in a clean image).
    overlap : int, keyword-only
        Overlap of neighbouring tiles, pixels.

    Returns
    -------
    x_hat : Tensor, shape (C, H, W), float64
    info : dict
        The first tile's info with ``t`` the median over tiles, ``tiles`` (count),
        ``tile`` (side), ``tile_t`` (each tile's ``t``), ``rank`` the largest, and
        ``nystrom_error`` the tile with the largest relative error.
    """
    _, height, width = y.shape
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out = torch.zeros_like(y)
    weight = torch.zeros(height, width, dtype=torch.float64)
    infos = []
    for i, top in enumerate(rows):
        for j, left in enumerate(cols):
            where = (slice(top, top + tile), slice(left, left + tile))
            x_hat, info = denoise_tile(y[:, where[0], where[1]].contiguous(), where)
            h, w = x_hat.shape[-2:]
            wy = _ramp(h, min(overlap, h), rise=i > 0, fall=i < len(rows) - 1)
            wx = _ramp(w, min(overlap, w), rise=j > 0, fall=j < len(cols) - 1)
            w2 = wy[:, None] * wx[None, :]
            out[:, where[0], where[1]] += x_hat * w2
            weight[where] += w2
            infos.append(info)
    out /= weight
    merged = dict(infos[0])
    merged.update(
        t=statistics.median(info["t"] for info in infos),
        tile_t=[info["t"] for info in infos],
        rank=max(info["rank"] for info in infos),
        tiles=len(infos),
        tile=tile,
    )
    errors = [info["nystrom_error"] for info in infos if "nystrom_error" in info]
    if errors:
        merged["nystrom_error"] = max(errors, key=lambda e: e["relative_frobenius"])
    return out, merged
