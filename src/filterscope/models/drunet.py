"""Bias-free multi-scale residual U-Net in the style of DRUNet (Zhang et al., TPAMI 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..noise import MIN_ESTIMATE_SIDE, estimate_noise_level
from .base import CNNDenoiser
from .noise_map import NoiseMapEstimator, noise_level_map
from .registry import register_model

__all__ = ["DRUNet", "ResidualBlock", "noise_level_map"]


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` with 3×3 convolutions; no additive constant when
    ``bias=False``, so the block is positively homogeneous."""

    def __init__(self, channels: int, *, bias: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _blocks(channels: int, count: int, *, bias: bool) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(channels, bias=bias) for _ in range(count)))


@register_model("drunet")
class DRUNet(CNNDenoiser):
    """Residual U-Net over ``len(widths)`` scales, bias-free by default.

    A 3×3 head maps the image (and, with ``noise_map``, a constant σ channel) to
    ``widths[0]`` channels. Each scale but the last runs ``blocks`` residual blocks and a
    2×2 stride-2 convolution down; the coarsest scale runs ``blocks`` residual blocks;
    the way up is a 2×2 stride-2 transposed convolution, the skip added, ``blocks``
    residual blocks. A 3×3 tail gives the noise estimate and ``x_hat = y - tail``.

    Most of the work happens at low resolution, so per pixel it costs far less than a
    20-layer full-resolution DnCNN while seeing a neighbourhood of about 200 pixels.

    Parameters
    ----------
    bias : bool, keyword-only
        Additive constants in every convolution. ``False`` (the default) makes the
        network positively homogeneous: ``f(a y, a σ) = a f(y, σ)`` for ``a > 0``.
    in_channels : int, keyword-only
        1 (gray) or 3 (RGB).
    widths : list of int, keyword-only
        Channels at each scale, finest first.
    blocks : int, keyword-only
        Residual blocks per scale on each side.
    noise_map : bool, keyword-only
        Take σ as an extra input channel (non-blind when σ is given; ``sigma=None`` or
        0 is the blind mode the recipe trains alongside).
    blind_estimate : bool, keyword-only
        With ``noise_map``, what ``sigma=None`` does: False runs the trained blind mode;
        True estimates each image's σ with :func:`filterscope.noise.estimate_noise_level`
        and runs non-blind with it (images under 8 pixels a side run the trained blind
        mode). The estimator is positively homogeneous, so the
        network stays bias-free (``f(a y) = a f(y)``) either way. Does not affect
        training, which always passes σ.
    noise_map_channels : int, keyword-only
        Channels of the noise-level input: 1 (one σ per pixel, the default and what
        every earlier model card means) or ``in_channels`` (one per pixel and channel).
        σ may be passed as a float, one per image ``(B,)``, or a ``(B, 1, H, W)`` or
        ``(B, C, H, W)`` map either way (see :func:`.noise_map.noise_level_map`).
    noise_estimator : bool, keyword-only
        With ``noise_map``: a :class:`.noise_map.NoiseMapEstimator` (bias-free, degree-1
        homogeneous) estimates a noise map from ``y`` for ``sigma=None``, in place of
        ``blind_estimate``; trained with the denoiser (recipes with ``noise_map_loss``).
        The blind path ``f(y) = g(y, σ̂(y))`` stays positively homogeneous.
    estimator_width : int, keyword-only
        Hidden channels of that estimator.
    pooled_noise_map : bool, keyword-only
        With ``noise_estimator``: the blind path feeds each image one level everywhere,
        the root mean square of the estimator's map over the whole image
        (:meth:`.noise_map.NoiseMapEstimator.image_level`), in place of the map itself.
        Real camera noise varies less across a photo than a local estimate does, so one
        level per image denoises it better (``benchmarks/real_noise_finetune.py
        --pooled-scales``). Tiles of a tiled run get the whole image's level, as with
        ``blind_estimate``; training feeds the blind patches their own map's RMS.

    Notes
    -----
    Any ``H × W`` works: sides are padded by replication up to a multiple of
    ``2 ** (len(widths) - 1)`` and the output is cropped back (replication is linear,
    so it keeps the network bias-free). The strided convolutions make the network
    shift-variant on that grid, so a tile gives the whole-image result only up to small
    differences, not to round-off.
    """

    #: ``forward`` takes σ as a per-pixel map too (trainers pass noise models' std maps).
    accepts_noise_map = True

    def __init__(
        self,
        *,
        bias: bool = False,
        in_channels: int = 1,
        widths: list[int] | tuple[int, ...] = (32, 64, 128, 256),
        blocks: int = 2,
        noise_map: bool = True,
        blind_estimate: bool = False,
        noise_map_channels: int = 1,
        noise_estimator: bool = False,
        estimator_width: int = 16,
        pooled_noise_map: bool = False,
    ):
        widths = [int(w) for w in widths]
        super().__init__(
            bias=bias,
            in_channels=in_channels,
            widths=widths,
            blocks=blocks,
            noise_map=noise_map,
            blind_estimate=bool(blind_estimate),
        )
        # Options that earlier cards lack are recorded only when they differ from the
        # default, so those cards (and init_from of them) still match this config.
        extras = {"noise_map_channels": (noise_map_channels, 1)}
        extras["noise_estimator"] = (bool(noise_estimator), False)
        extras["estimator_width"] = (estimator_width, 16)
        extras["pooled_noise_map"] = (bool(pooled_noise_map), False)
        self.config.update({k: v for k, (v, default) in extras.items() if v != default})
        if noise_map_channels not in (1, in_channels):
            raise ValueError(
                f"noise_map_channels must be 1 or in_channels ({in_channels}), "
                f"got {noise_map_channels}"
            )
        if noise_estimator and not noise_map:
            raise ValueError("noise_estimator needs noise_map = True")
        if pooled_noise_map and not noise_estimator:
            raise ValueError("pooled_noise_map needs noise_estimator = True")
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths needs at least two positive entries, got {widths}")
        if blocks < 1:
            raise ValueError(f"blocks must be at least 1, got {blocks}")
        self.noise_map_channels = noise_map_channels if noise_map else 0
        self.head = nn.Conv2d(
            in_channels + self.noise_map_channels, widths[0], 3, padding=1, bias=bias
        )
        self.down_blocks = nn.ModuleList(_blocks(w, blocks, bias=bias) for w in widths[:-1])
        self.downs = nn.ModuleList(
            nn.Conv2d(w, w_next, 2, stride=2, bias=bias)
            for w, w_next in zip(widths[:-1], widths[1:], strict=True)
        )
        self.body = _blocks(widths[-1], blocks, bias=bias)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(w_next, w, 2, stride=2, bias=bias)
            for w, w_next in zip(widths[:-1], widths[1:], strict=True)
        )
        self.up_blocks = nn.ModuleList(_blocks(w, blocks, bias=bias) for w in widths[:-1])
        self.tail = nn.Conv2d(widths[0], in_channels, 3, padding=1, bias=False)
        self._initialise()
        # Built after _initialise, which would rescale its weights as the U-Net's.
        self.estimator = (
            NoiseMapEstimator(
                in_channels=in_channels,
                out_channels=noise_map_channels,
                width=estimator_width,
                bias=bias,
            )
            if noise_estimator
            else None
        )

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            # Residual branches start small so the deep stack begins near the identity;
            # the tail starts near zero so x_hat starts near y (see DnCNN's note).
            for module in self.modules():
                if isinstance(module, ResidualBlock):
                    module.conv2.weight.mul_(0.1)
            self.tail.weight.mul_(0.1)

    @property
    def sigma_source(self) -> str:
        """``"true"`` with a noise-level input (σ used when given, blind without it)."""
        return "true" if self.config["noise_map"] else "blind"

    @property
    def local_noise_map(self) -> bool:
        """Whether the blind path feeds the estimator's per-pixel map (not one level)."""
        return self.estimator is not None and not self.config.get("pooled_noise_map", False)

    def estimate_noise_map(self, y: torch.Tensor) -> torch.Tensor | None:
        """The noise map the blind path (``sigma=None``) feeds the network, on the image
        scale: the estimator's ``(B, noise_map_channels, H, W)`` map; or each image's
        level (the RMS of that map with ``pooled_noise_map``, the wavelet σ with
        ``blind_estimate``) as a constant ``(B, 1, H, W)`` map; None for the trained
        blind mode. A local map is estimated on the image extended to the stride grid,
        as the network reads it, and cropped back."""
        if self.local_noise_map:
            height, width = y.shape[-2:]
            return self.estimator(self._pad_to_grid(y))[..., :height, :width]
        level = self.image_noise_level(y)
        return None if level is None else noise_level_map(y, level)

    def image_noise_level(self, y: torch.Tensor) -> torch.Tensor | None:
        """Each image's estimated σ, shape ``(B,)``, when ``blind_estimate`` is on (None,
        the trained blind mode, for images too small to estimate σ from) or
        ``pooled_noise_map`` is (the RMS of the estimator's map); None for a model with
        a local noise map (each tile of a tiled run estimates its own, within the
        receptive radius)."""
        if self.estimator is not None:
            if self.local_noise_map:
                return None
            return self.estimator.image_level(y.to(self.input_dtype)).to(y.dtype)
        estimates = self.config["noise_map"] and self.config.get("blind_estimate", False)
        if estimates and min(y.shape[-2:]) >= MIN_ESTIMATE_SIDE:
            return estimate_noise_level(y)
        return None

    def _pad_to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` extended at the bottom and right, by replication, to sides that are
        multiples of :attr:`multiple`."""
        pad_h, pad_w = -x.shape[-2] % self.multiple, -x.shape[-1] % self.multiple
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x

    @property
    def multiple(self) -> int:
        """Image sides are padded to a multiple of this."""
        return 2 ** (len(self.config["widths"]) - 1)

    @property
    def tile_alignment(self) -> int:
        """Tiles start at multiples of the total stride, so tiled = whole-image output."""
        return self.multiple

    @property
    def receptive_radius(self) -> int:
        """Pixels of context on each side that can influence one output pixel."""
        radius = 2  # head and tail
        scale = 1
        for _ in self.config["widths"][:-1]:
            radius += 2 * 2 * self.config["blocks"] * scale + 2 * scale
            scale *= 2
        radius += 2 * self.config["blocks"] * scale + self.multiple - 1
        # A local map at a pixel reads its own neighbourhood; a pooled one (one level per
        # image, like blind_estimate's) reads the whole image and is not counted here.
        return radius + (self.estimator.radius if self.local_noise_map else 0)

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        self._check_input(y)
        height, width = y.shape[-2:]
        padded = self._pad_to_grid(y)
        inputs = padded
        if self.config["noise_map"]:
            if sigma is None and self.local_noise_map:
                # The local map of the padded image, as each tile of a tiled run (cut
                # from the image extended the same way) estimates its own.
                level = self.estimator(padded)
            else:
                if sigma is None:
                    sigma = self.estimate_noise_map(y)
                level = noise_level_map(
                    y, sigma, channels=self.noise_map_channels, check=not self.training
                )
                level = self._pad_to_grid(level)
            inputs = torch.cat([padded, level], dim=1)
        h = self.head(inputs)
        skips = []
        for blocks, down in zip(self.down_blocks, self.downs, strict=True):
            h = blocks(h)
            skips.append(h)
            h = down(h)
        h = self.body(h)
        for up, blocks, skip in zip(
            reversed(self.ups), reversed(self.up_blocks), reversed(skips), strict=True
        ):
            h = blocks(up(h) + skip)
        return (padded - self.tail(h))[..., :height, :width]
