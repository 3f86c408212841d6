"""The three single-image networks of Tachella et al. (CVPR 2021, Section 6).

- ``vanilla``: one hidden layer, ``r × r`` kernels (11 by default), ReLU, ``c`` channels
  and a 1 × 1 output layer — the network whose infinite-width filter is equation 16 and
  the Nyström row of Table 1. It is :class:`filterscope.ntk.empirical.VanillaCNN`
  extended to ``C`` output channels and to the standard parameterisation.
- ``unet``: 3 × 3 kernels, 3 stride-2 downsampling and 3 bilinear upsampling stages with
  skip connections (concatenation), ``c`` channels at every scale.
- ``autoencoder``: the same network without the skip connections.

All are bias-free ReLU networks with a linear output, as in the paper (the original DIP
adds batch normalisation, biases, leaky ReLUs and a sigmoid; the paper reports that
they do not change the picture). Weights are He-initialised (variance ``σ_w² / fan_in``,
``σ_w² = 2``) in one of two parameterisations:

- ``"standard"``: the weights ``w`` are the parameters (what PyTorch usually does);
- ``"ntk"``: the parameters are ``ω ~ N(0, 1)`` and ``w = √(σ_w² / fan_in) · ω``
  (Jacot et al. 2018), so the neural tangent kernel is ``O(1)`` at any width.

Every network exposes :meth:`effective_weights` (the ``w`` that multiply activations,
whatever the parameterisation; used to measure the weight change of Figure 4) and
:meth:`last_preactivation` (the last hidden layer's pre-activations ``a^{L-1}``, Figure 5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..noise import _generator
from ..ntk.empirical import VanillaCNN

ARCHITECTURES = ("vanilla", "unet", "autoencoder")
PARAMETERIZATIONS = ("standard", "ntk")
SIGMA_W2 = 2.0  # He initialisation for ReLU networks
STAGES = 3  # downsampling / upsampling stages of the U-Net and the autoencoder
MULTIPLE = 2**STAGES
MIN_PADDED_SIDE = 2 * MULTIPLE  # reflect padding of the coarsest 3×3 conv needs ≥ 2 pixels


def _check_parameterization(parameterization: str) -> None:
    if parameterization not in PARAMETERIZATIONS:
        raise InputError(
            f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
        )


def _check_width(width: int) -> None:
    if int(width) != width or width < 1:
        raise InputError(f"width (hidden channels) must be a positive integer, got {width}")


class VanillaDIP(VanillaCNN):
    """One-hidden-layer ReLU CNN: ``z = V ⋆ relu(W ⋆ x)`` with ``C`` output channels.

    Extends :class:`filterscope.ntk.empirical.VanillaCNN` (``depth=2``,
    ``output_kernel=1``). With ``out_channels=1``, ``parameterization="ntk"`` and
    ``dtype=torch.float64`` it is that network, weight for weight, for the same seed, so
    its empirical NTK is the one the closed forms of :mod:`filterscope.ntk` describe.
    With ``C`` output channels each channel has its own output weights; its NTK is
    ``Θ ⊗ I_C`` in the infinite-width limit (one filter for every colour channel).

    Parameters
    ----------
    in_channels : int
        Channels of the network input (the image's ``C``, or the noise channels).
    out_channels : int
        Channels of the image to fit.
    width : int
        Hidden channels ``c``.
    kernel_size : int, keyword-only
        Odd side ``r`` of the first layer's kernel (11 in the paper).
    parameterization : {"standard", "ntk"}, keyword-only
    padding : {"circular", "zero"}, keyword-only
        Circular by default, like the closed-form kernels.
    generator : int or torch.Generator, keyword-only
        Seed of the initial weights.
    dtype : torch.dtype, keyword-only

    Notes
    -----
    The image must be at least ``r`` pixels on each side. Cost per forward pass
    ``O(H W c (r² C_in + C_out))``.
    """

    arch = "vanilla"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        *,
        kernel_size: int = 11,
        parameterization: str = "standard",
        padding: str = "circular",
        generator: int | torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        _check_parameterization(parameterization)
        _check_width(width)
        gen = _generator(generator)
        super().__init__(
            in_channels,
            width,
            depth=2,
            kernel_size=kernel_size,
            output_kernel=1,
            padding=padding,
            sigma_w2=SIGMA_W2,
            generator=gen,
        )
        if out_channels != 1:
            # drawn after the parent's weights, so the hidden layer matches the parent's
            shape = (out_channels, width, 1, 1)
            self.weights[-1] = nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64))
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.width = width
        self.kernel_size = kernel_size
        self.parameterization = parameterization
        if parameterization == "standard":
            with torch.no_grad():
                for omega in self.weights:
                    omega.mul_(self._multiplier(omega))
        self.to(dtype)

    def _multiplier(self, weight: torch.Tensor) -> float:
        _, c_in, r, _ = weight.shape
        return math.sqrt(self.sigma_w2 / (c_in * r * r))

    def _conv(self, x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        if self.parameterization == "ntk":
            return super()._conv(x, omega)
        p = omega.shape[-1] // 2
        if p:
            mode = "circular" if self.spec.padding == "circular" else "constant"
            x = F.pad(x, (p, p, p, p), mode=mode)
        return F.conv2d(x, omega)

    def check_size(self, height: int, width: int) -> None:
        """Raise :class:`InputError` when the image is smaller than the kernel."""
        if min(height, width) < self.kernel_size:
            raise InputError(
                f"image is {width}x{height} pixels, smaller than the vanilla CNN's "
                f"{self.kernel_size}x{self.kernel_size} kernel"
            )

    def last_preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """``a^{L-1} = W ⋆ x``: pre-activations of the hidden layer, ``(B, c, H, W)``."""
        return self._conv(x, self.weights[0])

    def effective_weights(self) -> list[tuple[str, torch.Tensor]]:
        """``(name, w)`` per layer, input to output; ``w`` as applied (detached)."""
        out = []
        for i, omega in enumerate(self.weights):
            scale = self._multiplier(omega) if self.parameterization == "ntk" else 1.0
            out.append((f"layer{i + 1}", omega.detach() * scale))
        return out


class _Conv(nn.Module):
    """Bias-free convolution with He initialisation in either parameterisation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        parameterization: str,
        generator: torch.Generator | None,
    ):
        super().__init__()
        fan_in = in_channels * kernel_size * kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        he = math.sqrt(SIGMA_W2 / fan_in)
        # NTK parameterisation: the scale lives in the forward pass, not in the parameter
        self.multiplier = he if parameterization == "ntk" else 1.0
        # drawn in float64 (like VanillaCNN) so both parameterisations agree to round-off
        omega = torch.randn(
            (out_channels, in_channels, kernel_size, kernel_size),
            generator=generator,
            dtype=torch.float64,
        )
        self.weight = nn.Parameter(omega if parameterization == "ntk" else omega * he)

    def effective_weight(self) -> torch.Tensor:
        return self.weight.detach() * self.multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding:
            p = self.padding
            # reflection (the DIP's choice) avoids a dark frame; it is linear, so the
            # network stays positively homogeneous
            x = F.pad(x, (p, p, p, p), mode="reflect")
        weight = self.weight if self.multiplier == 1.0 else self.weight * self.multiplier
        return F.conv2d(x, weight, stride=self.stride)


def pad_to_multiple(
    x: torch.Tensor, multiple: int = MULTIPLE, *, minimum: int = MIN_PADDED_SIDE
) -> torch.Tensor:
    """Pad the bottom and right of ``(B, C, H, W)`` to sides that are multiples of ``multiple``.

    Reflection padding, or edge replication where the image is too small to reflect;
    sides are also raised to at least ``minimum``. Crop the result with ``[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    target_h = max(minimum, -(-h // multiple) * multiple)
    target_w = max(minimum, -(-w // multiple) * multiple)
    pad_h, pad_w = target_h - h, target_w - w
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class EncoderDecoder(nn.Module):
    """The paper's U-Net (``skip=True``) or autoencoder (``skip=False``).

    Layers (3 × 3 kernels, reflection padding, ReLU after every hidden layer, no biases,
    ``c`` channels everywhere):

    1. ``inc``: ``C_in → c`` at full resolution;
    2. ``down1..3``: stride-2 convolutions ``c → c`` (1/2, 1/4, 1/8 resolution);
    3. ``up1..3``: bilinear ×2 upsampling, then a convolution ``c → c`` — ``2c → c`` for
       the U-Net, whose input is the upsampled map concatenated with the encoder map of
       the same resolution (the skip connection);
    4. ``last``: ``c → c`` at full resolution (its pre-activations are ``a^{L-1}``);
    5. ``out``: 1 × 1 ``c → C_out``, linear.

    That is ``L = 9`` layers, 8 of them hidden (the paper's "8 hidden layers").

    Images whose sides are not multiples of 8 are padded at the bottom and right
    (reflection; at least 16 pixels per side, edge replication for images too small to
    reflect) and the output is cropped back, so any size of at least 2 × 2 works; the
    padded border only adds context.

    Parameters
    ----------
    in_channels, out_channels, width : int
    skip : bool, keyword-only
        Skip connections (U-Net) or not (autoencoder).
    parameterization : {"standard", "ntk"}, keyword-only
    generator : int or torch.Generator, keyword-only
    dtype : torch.dtype, keyword-only

    Notes
    -----
    Cost per forward pass about ``2.6 · 9 H W c²`` multiply-adds for the autoencoder and
    ``4.0 · 9 H W c²`` for the U-Net (whose upsampling convolutions see ``2c`` channels):
    25 and 39 GMAC on a 256 × 256 image with ``c = 128``; a backward pass costs about twice
    a forward one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        *,
        skip: bool,
        parameterization: str = "standard",
        generator: int | torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        _check_parameterization(parameterization)
        _check_width(width)
        gen = _generator(generator)
        c = width
        opts = dict(parameterization=parameterization, generator=gen)
        self.inc = _Conv(in_channels, c, 3, **opts)
        self.down = nn.ModuleList(_Conv(c, c, 3, stride=2, **opts) for _ in range(STAGES))
        up_in = 2 * c if skip else c
        self.up = nn.ModuleList(_Conv(up_in, c, 3, **opts) for _ in range(STAGES))
        self.last = _Conv(c, c, 3, **opts)
        self.out = _Conv(c, out_channels, 1, **opts)
        self.skip = skip
        self.arch = "unet" if skip else "autoencoder"
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.width = width
        self.parameterization = parameterization
        self.to(dtype)

    def check_size(self, height: int, width: int) -> None:
        """Any image of at least 2 × 2 pixels works (it is padded); nothing to check."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Bottleneck code (1/8 resolution) and the encoder maps at 1, 1/2 and 1/4.

        ``x`` must already have sides that are multiples of 8 (see :func:`pad_to_multiple`).
        """
        feature = F.relu(self.inc(x))
        maps = [feature]
        for conv in self.down:
            feature = F.relu(conv(feature))
            maps.append(feature)
        return maps[-1], maps[:-1]

    def decode_preactivation(self, code: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
        """Pre-activations of ``last`` from the code and the encoder maps.

        The autoencoder uses ``maps`` only for their sizes (no skip connections).
        """
        u = code
        for conv, skip_map in zip(self.up, reversed(maps), strict=True):
            u = F.interpolate(u, size=skip_map.shape[-2:], mode="bilinear", align_corners=False)
            if self.skip:
                u = torch.cat([u, skip_map], 1)
            u = F.relu(conv(u))
        return self.last(u)

    def decode(self, code: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
        """Network output from the code and the encoder maps (padded size)."""
        return self.out(F.relu(self.decode_preactivation(code, maps)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        z = self.decode(*self.encode(pad_to_multiple(x)))
        return z[..., :h, :w]

    def last_preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """``a^{L-1}``: pre-activations of the last hidden layer, ``(B, c, H, W)``."""
        h, w = x.shape[-2:]
        return self.decode_preactivation(*self.encode(pad_to_multiple(x)))[..., :h, :w]

    def effective_weights(self) -> list[tuple[str, torch.Tensor]]:
        """``(name, w)`` per layer, input to output; ``w`` as applied (detached)."""
        layers = [("inc", self.inc)]
        layers += [(f"down{i + 1}", m) for i, m in enumerate(self.down)]
        layers += [(f"up{i + 1}", m) for i, m in enumerate(self.up)]
        layers += [("last", self.last), ("out", self.out)]
        return [(name, m.effective_weight()) for name, m in layers]


def build_network(
    arch: str,
    in_channels: int,
    out_channels: int,
    width: int,
    *,
    parameterization: str = "standard",
    kernel_size: int = 11,
    generator: int | torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """One of :data:`ARCHITECTURES` (``kernel_size`` only matters for the vanilla CNN)."""
    if arch == "vanilla":
        return VanillaDIP(
            in_channels,
            out_channels,
            width,
            kernel_size=kernel_size,
            parameterization=parameterization,
            generator=generator,
            dtype=dtype,
        )
    if arch in ("unet", "autoencoder"):
        return EncoderDecoder(
            in_channels,
            out_channels,
            width,
            skip=arch == "unet",
            parameterization=parameterization,
            generator=generator,
            dtype=dtype,
        )
    raise InputError(f"architecture must be one of {ARCHITECTURES}, got {arch!r}")
