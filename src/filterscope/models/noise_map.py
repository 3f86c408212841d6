"""Noise-level maps: building one from a σ given in any form, and estimating one blind.

A network with a noise-level input (:class:`~.drunet.DRUNet` with ``noise_map``) reads
σ as extra input channels. :func:`noise_level_map` turns what a caller passes (a float,
one σ per image, or a per-pixel map) into those channels; :class:`NoiseMapEstimator`
is a small bias-free network that estimates the map from the noisy image itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


def _check_level(level: torch.Tensor) -> None:
    # Reading the answer from a GPU makes the host wait, so training skips this.
    if bool((level < 0).any()) or not bool(torch.isfinite(level).all()):
        raise InputError("sigma must be finite and non-negative everywhere")


def noise_level_map(
    y: torch.Tensor,
    sigma: float | torch.Tensor | None,
    *,
    channels: int = 1,
    check: bool = True,
) -> torch.Tensor:
    """The ``(B, channels, H, W)`` noise-level input for images ``y`` (image scale).

    Parameters
    ----------
    y : Tensor, shape (B, C, H, W)
        The noisy images (only their shape, dtype and device are used).
    sigma : None, float, Tensor of shape () or (B,), or a map of shape (B, 1, H, W) or
        (B, C, H, W) (a leading 1 is broadcast over the batch)
        Noise standard deviation on the image scale; None gives zeros (the trained blind
        mode of a network with a noise-level input, as does σ = 0).
    channels : int, keyword-only
        Channels of the map the network reads: 1 (one σ per pixel) or ``C`` (one per
        pixel and channel). A ``(B, C, H, W)`` map given to a one-channel input is
        reduced to the root mean square over channels, ``sqrt(mean_c σ_c²)``; a
        one-channel σ given to a C-channel input is repeated.
    check : bool, keyword-only
        Refuse negative or non-finite σ (an :class:`~filterscope.errors.InputError`).

    Returns
    -------
    Tensor, shape (B, channels, H, W)
        In the dtype and on the device of ``y``. Every step is positively homogeneous in
        σ (repetition, root mean square), so a bias-free network fed this map keeps
        ``f(a y, a σ) = a f(y, σ)`` for ``a > 0``.
    """
    batch, image_channels, height, width = y.shape
    if sigma is None:
        return y.new_zeros(batch, channels, height, width)
    not_a_number = f"sigma: expected a number, an array or a tensor, got {type(sigma).__name__}"
    if isinstance(sigma, (str, bytes)):  # torch would read a string's bytes as numbers
        raise InputError(not_a_number)
    try:
        level = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(not_a_number) from None
    if level.dim() == 4:
        if level.shape[0] not in (1, batch) or tuple(level.shape[-2:]) != (height, width):
            raise InputError(
                f"sigma: a noise map must have shape ({batch}, 1 or {image_channels}, "
                f"{height}, {width}), got {tuple(level.shape)}"
            )
        if level.shape[1] not in (1, image_channels, channels):
            raise InputError(
                f"sigma: a noise map needs 1 or {image_channels} channels, got {level.shape[1]}"
            )
        if check:
            _check_level(level)
        if level.shape[1] != channels:
            if channels == 1:
                level = level.square().mean(dim=1, keepdim=True).sqrt()
            else:
                level = level.expand(-1, channels, -1, -1)
        return level.expand(batch, channels, height, width)
    level = level.reshape(-1)
    if level.numel() not in (1, batch):
        raise InputError(
            f"sigma must be a float, hold one value per image ({batch}), or be a "
            f"(B, 1 or C, H, W) map; got {level.numel()} values"
        )
    if check:
        _check_level(level)
    return level.view(-1, 1, 1, 1).expand(batch, channels, height, width)


def noise_map_summary(level: torch.Tensor) -> dict[str, float]:
    """``mean``, ``min`` and ``max`` of a noise map, on the 0-255 scale (JSON-ready)."""
    return {
        "mean": 255.0 * float(level.mean()),
        "min": 255.0 * float(level.min()),
        "max": 255.0 * float(level.max()),
    }


def root_mean_square(level: torch.Tensor) -> torch.Tensor:
    """Each image's root mean square of a ``(B, k, H, W)`` noise map, shape ``(B,)``:
    the one level a pooled blind path feeds (gradient 0 at a level of 0)."""
    return _sqrt_at_zero_flat(level.square().mean(dim=(1, 2, 3)))


def pooled_map(level: torch.Tensor) -> torch.Tensor:
    """A ``(B, k, H, W)`` noise map with each image's map replaced by its
    :func:`root_mean_square` everywhere: what a pooled blind path feeds."""
    return root_mean_square(level).view(-1, 1, 1, 1).expand_as(level)


def _box_mean(x: torch.Tensor, side: int) -> torch.Tensor:
    """Mean over the ``side × side`` box around each pixel (``side`` odd), averaged over
    the pixels inside the image at the borders: one pass along the rows and one along the
    columns, equal to ``avg_pool2d(x, side, stride=1, padding=side // 2,
    count_include_pad=False)`` up to round-off at a fraction of its cost (the border
    counts of a box are the products of its row and column counts)."""
    half = side // 2
    rows = F.avg_pool2d(x, (side, 1), stride=1, padding=(half, 0), count_include_pad=False)
    return F.avg_pool2d(rows, (1, side), stride=1, padding=(0, half), count_include_pad=False)


def _box_mean_weights(size: int, side: int, like: torch.Tensor) -> torch.Tensor:
    """Along one axis of ``size`` pixels, how much each pixel weighs in the sum of the
    :func:`_box_mean` of that axis: the sum, over the boxes that hold it, of one over
    each box's pixel count (1 away from the borders). On the device of ``like``, in its
    dtype or float32, whichever is wider."""
    half = side // 2
    index = torch.arange(size, device=like.device)
    counts = (index + half).clamp(max=size - 1) - (index - half).clamp(min=0) + 1
    inverse = counts.to(torch.float64).reciprocal()[None, None]
    weights = F.avg_pool1d(inverse, side, stride=1, padding=half, count_include_pad=True)
    return (weights[0, 0] * side).to(torch.promote_types(like.dtype, torch.float32))


def _sqrt_at_zero_flat(energy: torch.Tensor) -> torch.Tensor:
    """``sqrt(energy)`` for ``energy >= 0``, with gradient 0 (not infinity) at 0; no
    additive constant, so it stays exactly homogeneous: ``sqrt(a² e) = a sqrt(e)``."""
    positive = energy > 0
    return torch.where(positive, energy, torch.ones_like(energy)).sqrt() * positive


class NoiseMapEstimator(nn.Module):
    """A small bias-free network that estimates a noise standard-deviation map.

    ``map(y) = sqrt(W⁺ · avgpool(g(y)²))``, where ``g`` is ``depth`` 3×3 convolutions
    (ReLU between them) from ``in_channels`` to ``width`` channels and a last one to
    ``energies`` channels, ``avgpool`` a ``pool × pool`` box mean (stride 1, borders
    averaged over the pixels inside), and ``W⁺`` a 1×1 mixing with non-negative weights
    (squares of parameters) to ``out_channels`` maps.

    No additive constant anywhere: with ``bias=False`` (the default) ``g`` is positively
    homogeneous of degree 1, the squared energies and their non-negative mix of degree 2,
    the square root of degree 1, so ``map(a y) = a map(y)`` for ``a > 0`` and the map is
    non-negative. ``bias=True`` exists only to show (in a test) that a bias breaks this.

    Parameters
    ----------
    in_channels : int, keyword-only
        Channels of the noisy image (1 or 3).
    out_channels : int, keyword-only
        Channels of the map (1: one σ per pixel).
    width : int, keyword-only
        Channels of the hidden convolutions.
    depth : int, keyword-only
        Convolutions before the energies (at least 2).
    energies : int, keyword-only
        Channels whose local mean squares are mixed into the map.
    pool : int, keyword-only
        Side of the box over which energies are averaged (odd).
    bias : bool, keyword-only
        Additive constants in the convolutions (breaks homogeneity; tests only).

    Notes
    -----
    Cost per pixel about ``9·width·(in_channels + (depth − 2)·width + energies)``
    multiply-adds (width 16, depth 3: about 4.3k for RGB, under a tenth of the
    default DRUNet); receptive radius ``depth + pool // 2`` pixels.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 16,
        depth: int = 3,
        energies: int = 8,
        pool: int = 9,
        bias: bool = False,
    ):
        super().__init__()
        if depth < 2 or width < 1 or energies < 1 or pool < 1 or pool % 2 == 0:
            raise ValueError(
                f"need depth >= 2, width, energies >= 1 and an odd pool, got depth={depth}, "
                f"width={width}, energies={energies}, pool={pool}"
            )
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=bias)]
        for _ in range(depth - 2):
            layers += [nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=bias)]
        layers += [nn.ReLU(), nn.Conv2d(width, energies, 3, padding=1, bias=bias)]
        self.features = nn.Sequential(*layers)
        # Square roots of the non-negative mixing weights.
        self.mix_root = nn.Parameter(torch.full((out_channels, energies), energies**-0.5))
        self.pool = pool
        self.radius = depth + pool // 2
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self._calibrate(in_channels)

    @torch.no_grad()
    def _calibrate(self, in_channels: int) -> None:
        """Start as a sensible estimator: first filters that sum to zero (blind to flat
        regions, as a noise estimate should be) and a scale that reads white Gaussian
        noise of σ = 1 as about 1, so fine-tuning a denoiser with a new estimator does
        not start from maps a hundred times off."""
        first = self.features[0].weight
        first -= first.mean(dim=(2, 3), keepdim=True)
        generator = torch.Generator().manual_seed(0)
        noise = torch.randn(1, in_channels, 32, 32, generator=generator)
        self.mix_root /= self(noise).mean().clamp_min(1e-6).sqrt()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """The ``(B, out_channels, H, W)`` map, on the scale of ``y``, non-negative."""
        return _sqrt_at_zero_flat(self._squared_map(y))

    def _energies(self, y: torch.Tensor) -> torch.Tensor:
        """``g(y)²``, (B, energies, H, W), squared and then averaged in at least float32
        (under bfloat16 autocast the convolutions' output is bfloat16). Channels-last:
        oneDNN's convolutions of these few channels run about twice as fast on it."""
        features = self.features(y.contiguous(memory_format=torch.channels_last))
        return features.to(torch.promote_types(features.dtype, torch.float32)).square()

    def _squared_map(self, y: torch.Tensor) -> torch.Tensor:
        energy = _box_mean(self._energies(y), self.pool)
        return torch.einsum("oe,behw->bohw", self.mix_root.square(), energy)

    def image_level(self, y: torch.Tensor, *, strip_rows: int = 256) -> torch.Tensor:
        """Each image's noise level: the root mean square of its map over channels and
        pixels, shape ``(B,)``, on the scale of ``y``.

        Equal to :func:`root_mean_square` of ``forward(y)`` up to round-off, but
        computed in strips of ``strip_rows`` rows (each read with :attr:`radius` rows of
        context, so every strip's rows are exact): memory grows with the width, not the
        area, so a 3000×2000 photo costs a few strips' activations. Positively
        homogeneous of degree 1 like the map, and differentiable (gradient 0 at a level
        of 0, as the map's).
        """
        if strip_rows < 1:
            raise ValueError(f"strip_rows must be at least 1, got {strip_rows}")
        height, width = y.shape[-2:]
        # The mean of a box-averaged map is a weighted sum of the unpooled energies
        # (weights differ from 1 only within pool // 2 of the border): no pooling pass.
        row_weights = _box_mean_weights(height, self.pool, y)
        column_weights = _box_mean_weights(width, self.pool, y)
        weights = row_weights[:, None] * column_weights
        reach = self.radius - self.pool // 2  # context rows the convolutions need
        total = y.new_zeros(y.shape[0], self.mix_root.shape[1], dtype=weights.dtype)
        for top in range(0, height, strip_rows):
            bottom = min(height, top + strip_rows)
            first, last = max(0, top - reach), min(height, bottom + reach)
            energy = self._energies(y[..., first:last, :])[..., top - first : bottom - first, :]
            # Products and sums, not an einsum: autocast would round a matrix product.
            total = total + (energy * weights[top:bottom]).sum(dim=(2, 3))
        total = (total * self.mix_root.square().sum(dim=0)).sum(dim=1)
        return _sqrt_at_zero_flat(total / (self.mix_root.shape[0] * height * width))
