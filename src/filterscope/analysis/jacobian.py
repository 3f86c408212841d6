"""The Jacobian ``A_y`` of a denoiser: dense on patches, row by row on full-size images.

Exactness of receptive-field crops
----------------------------------
Let ``f`` be a fully convolutional network whose layers are stride-1 convolutions with
zero padding and pointwise operations (ReLU, eval-mode batch norm, residual sums), and
let ``r`` be its receptive radius (DnCNN: one pixel per 3×3 convolution, so
``r = num_layers``). Take a block ``T`` of output pixels and the crop
``C = (T ⊕ r) ∩ image`` (``T`` grown by ``r`` pixels on each side, clipped to the
image). Then ``f(y)[T] = f(y[C])[T]`` for every ``y``, hence the rows of the Jacobian
for ``T`` are the rows of the Jacobian of ``f`` on the crop (and zero outside it):

* a feature at depth ``L - m`` that output ``i ∈ T`` depends on lies within ``m``
  pixels of ``i``, and in turn depends on depth ``L - m - 1`` features within ``m + 1``
  pixels; by induction every feature involved lies in ``i ⊕ r``;
* inside the image, ``i ⊕ r ⊂ C``, so on the crop all these features are computed
  from the same values; outside the image they are the zero padding in both cases,
  because ``C``'s sides are either the image's own sides or at least ``r`` pixels
  from ``T``.

So the crop gives the rows *exactly* (to round-off), at a fraction of the cost: for a
40×40 patch through DnCNN (``r = 20``) the average crop of a 4×4 block is about 60% of
the patch. The property is tested against the full-image Jacobian. Networks that are
not translation-equivariant at every offset (strided UNet, padding to even sizes) do
not declare a ``receptive_radius``; they are differentiated on the whole input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ._core import (
    DEFAULT_MAX_BYTES,
    Function,
    as_function,
    as_image_batch,
    check_dense_size,
    check_differentiable,
    check_pixels,
    crop_box,
    receptive_radius,
    vjp_rows,
)


def _tile_cost(height: int, width: int, channels: int, radius: int, tile: int) -> float:
    """Model of the work of :func:`dense_jacobian` with square blocks of side ``tile``:
    crop area × (rows + 2) summed over blocks (one forward and some overhead per block)."""
    cost = 0.0
    for top in range(0, height, tile):
        bottom = min(top + tile, height)
        for left in range(0, width, tile):
            right = min(left + tile, width)
            t, b, lft, rgt = crop_box(top, bottom, left, right, radius, height, width)
            rows = (bottom - top) * (right - left) * channels
            cost += (b - t) * (rgt - lft) * (rows + 2)
    return cost


def best_tile(height: int, width: int, channels: int, radius: int | None) -> int:
    """Block side minimising :func:`_tile_cost` (the whole image when no radius is known)."""
    if radius is None or 2 * radius + 1 >= max(height, width) * 2:
        return max(height, width)
    candidates = range(1, max(height, width) + 1)
    return min(candidates, key=lambda t: _tile_cost(height, width, channels, radius, t))


def dense_jacobian(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    *,
    radius: int | str | None = "auto",
    tile: int | None = None,
    chunk: int = 256,
    dtype: torch.dtype = torch.float32,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> torch.Tensor:
    """The full Jacobian ``A_y = ∂f/∂y`` of a denoiser applied to one (small) image.

    The image is the network's whole input (a 40×40 patch is denoised as a 40×40 image,
    as in Mohan et al. 2020, Section 6).

    Parameters
    ----------
    denoiser : nn.Module or callable
        ``f(y)`` on ``(B, C, H, W)`` tensors, differentiable by torch. A module is copied,
        converted to ``dtype`` and run in eval mode.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        Noisy image (values in [0, 1] plus noise).
    radius : int, "auto" or None, keyword-only
        Receptive radius in pixels. ``"auto"``: the model's ``receptive_radius``
        attribute if it has one. With a radius, rows are computed block by block on
        receptive-field crops — exact for zero-padded stride-1 convolutional networks
        (see the module docstring). None: every row on the whole image.
    tile : int or None, keyword-only
        Side of the blocks of output pixels sharing a crop; None picks the cheapest.
    chunk : int, keyword-only
        Rows per batched backward pass; bounds memory to about ``chunk`` copies of one
        activation of the crop.
    dtype : torch.dtype, keyword-only
        Arithmetic. float32 agrees with float64 to ~1e-6 relative for DnCNN and is
        2–3× faster on CPU.
    max_bytes : int, keyword-only
        Refuse (``InputError``) when the ``N × N`` result would exceed this.

    Returns
    -------
    Tensor, shape (N, N), N = C·H·W, ``dtype``
        ``J[i, j] = ∂f(y)_i / ∂y_j`` with pixels flattened in ``(C, H, W)`` order.

    Notes
    -----
    Cost: one forward per block plus ``N`` backward passes, each on a crop of at most
    ``(tile + 2r)²`` pixels. The published BF-DnCNN on a 40×40 patch: about 3.4 TFLOP
    without crops, ~60% of that with them.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be a positive integer, got {chunk!r}")
    y = as_image_batch(y, dtype=dtype)
    _, channels, height, width = y.shape
    n = y.numel()
    check_dense_size(
        n, y.element_size(), max_bytes, what=f"the Jacobian of a {height}x{width} image"
    )
    r = receptive_radius(denoiser, radius)
    function = as_function(denoiser, dtype=dtype)
    check_differentiable(function, y)
    if tile is None:
        tile = best_tile(height, width, channels, r)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise InputError(f"tile must be a positive integer, got {tile!r}")

    jac = torch.zeros(n, n, dtype=dtype, device=y.device)
    index = torch.arange(n, device=y.device).view(channels, height, width)
    for top in range(0, height, tile):
        bottom = min(top + tile, height)
        for left in range(0, width, tile):
            right = min(left + tile, width)
            t, b, lft, rgt = crop_box(top, bottom, left, right, r, height, width)
            crop = y[:, :, t:b, lft:rgt]
            local = torch.arange(crop.numel(), device=y.device).view(channels, b - t, rgt - lft)
            local_rows = local[:, top - t : bottom - t, left - lft : right - lft].reshape(-1)
            global_rows = index[:, top:bottom, left:right].reshape(-1)
            global_cols = index[:, t:b, lft:rgt].reshape(-1)
            rows = vjp_rows(function, crop.contiguous(), local_rows, chunk=chunk)
            jac[global_rows[:, None], global_cols[None, :]] = rows
    return jac


@dataclass
class JacobianRow:
    """One row of ``A_y`` for an output pixel, stored on the window where it can be nonzero.

    Attributes
    ----------
    pixel : (int, int)
        ``(x, y)``: column and row of the output pixel.
    channel : int
        Output channel.
    weights : Tensor, shape (C, h, w)
        ``∂f(y)[channel, y, x] / ∂y[:, top:top+h, left:left+w]``; zero elsewhere.
    box : (int, int, int, int)
        ``(top, bottom, left, right)`` of the window in the image, half-open.
    value : float
        ``f(y)[channel, y, x]``, the denoised pixel.
    """

    pixel: tuple[int, int]
    channel: int
    weights: torch.Tensor
    box: tuple[int, int, int, int]
    value: float

    def full(self, height: int, width: int) -> torch.Tensor:
        """The row as an image, shape ``(C, height, width)``, zero outside :attr:`box`."""
        out = self.weights.new_zeros(self.weights.shape[0], height, width)
        t, b, lft, rgt = self.box
        out[:, t:b, lft:rgt] = self.weights
        return out


def _rows_for_group(
    function: Function, crops: torch.Tensor, onehots: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pullbacks of one-hot cotangents, one per crop: ``(B, C, h, w)`` rows and outputs."""

    def one(crop: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, pullback = torch.func.vjp(function, crop)
        return pullback(onehot)[0], (out * onehot).sum()

    try:
        grads, values = torch.func.vmap(one)(crops, onehots)
    except Exception:  # an operation without a vmap rule: one pixel at a time
        pairs = [one(c, o) for c, o in zip(crops, onehots, strict=True)]
        grads = torch.stack([g for g, _ in pairs])
        values = torch.stack([v for _, v in pairs])
    return grads[:, 0], values


def jacobian_rows(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    pixels: Sequence[Sequence[int]],
    *,
    channel: int = 0,
    radius: int | str | None = "auto",
    chunk: int = 16,
    dtype: torch.dtype = torch.float64,
) -> list[JacobianRow]:
    """Rows of ``A_y`` for chosen output pixels of a full-size image, exactly.

    Each row is computed on the crop ``pixel ⊕ radius`` (clipped to the image), which
    gives exactly the full-image row for zero-padded stride-1 convolutional networks
    (argument in the module docstring; tested against the full-image Jacobian). Pixels
    whose crops have the same shape are processed together with ``torch.func.vmap``.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser on ``(B, C, H, W)`` tensors.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        The noisy image, any size.
    pixels : sequence of (x, y)
        Column and row of each output pixel; must lie inside the image.
    channel : int, keyword-only
        Output channel whose row is wanted (0 for gray images).
    radius : int, "auto" or None, keyword-only
        Receptive radius; ``"auto"`` reads ``denoiser.receptive_radius``; None (or a
        model without one) differentiates the whole image for every pixel.
    chunk : int, keyword-only
        Pixels per batched pass; memory is about ``chunk`` forward passes of a crop.
    dtype : torch.dtype, keyword-only
        Arithmetic (float64 by default: rows are read as filters and summed).

    Returns
    -------
    list of JacobianRow
        In the order of ``pixels``.

    Notes
    -----
    Cost per pixel: one forward and one backward pass on a ``(2r+1)²`` crop (DnCNN-20:
    41×41), independent of the image size.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be a positive integer, got {chunk!r}")
    y = as_image_batch(y, dtype=dtype)
    _, channels, height, width = y.shape
    if not 0 <= int(channel) < channels:
        raise InputError(f"channel must be in 0..{channels - 1}, got {channel}")
    checked = check_pixels(pixels, height, width)
    r = receptive_radius(denoiser, radius)
    function = as_function(denoiser, dtype=dtype)
    check_differentiable(
        function, y if r is None else y[..., : min(height, 2 * r + 1), : min(width, 2 * r + 1)]
    )

    boxes = [crop_box(py, py + 1, px, px + 1, r, height, width) for px, py in checked]
    groups: dict[tuple[int, int], list[int]] = {}
    for k, (t, b, lft, rgt) in enumerate(boxes):
        groups.setdefault((b - t, rgt - lft), []).append(k)
    results: list[JacobianRow | None] = [None] * len(checked)
    for members in groups.values():
        for start in range(0, len(members), chunk):
            part = members[start : start + chunk]
            crops, onehots = [], []
            for k in part:
                t, b, lft, rgt = boxes[k]
                px, py = checked[k]
                crops.append(y[:, :, t:b, lft:rgt])
                onehot = torch.zeros_like(crops[-1])
                onehot[0, channel, py - t, px - lft] = 1.0
                onehots.append(onehot)
            grads, values = _rows_for_group(function, torch.stack(crops), torch.stack(onehots))
            for j, k in enumerate(part):
                results[k] = JacobianRow(
                    pixel=checked[k],
                    channel=int(channel),
                    weights=grads[j].detach(),
                    box=boxes[k],
                    value=float(values[j]),
                )
    return results  # type: ignore[return-value]
