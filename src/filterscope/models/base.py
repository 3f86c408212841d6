"""The one denoiser interface shared by every method in filterscope."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def module_device(denoiser: object) -> torch.device:
    """Device of a module's first parameter or buffer; CPU for plain callables."""
    if isinstance(denoiser, nn.Module):
        for tensor in itertools.chain(denoiser.parameters(), denoiser.buffers()):
            return tensor.device
    return torch.device("cpu")


class Denoiser(nn.Module):
    """Anything that maps a noisy image batch to an estimate of the clean one.

    Subclasses implement :meth:`forward`:

    ``forward(y, sigma=None) -> x_hat``

    - ``y``: ``(B, C, H, W)`` tensor, images nominally in [0, 1] (noisy images are not
      clipped, so values slightly outside occur).
    - ``sigma``: noise standard deviation on the image scale (25/255 ≈ 0.098), a float
      or a ``(B,)`` tensor. Blind methods (``blind = True``) ignore it; non-blind
      methods (BM3D, NTK filters with SURE stopping...) raise if it is missing.
    - returns ``x_hat`` with the shape of ``y``, not clipped.

    Attributes
    ----------
    blind : bool
        True when ``sigma`` is not needed.
    in_channels : int or None
        Channels the method works on (1 or 3), or None when any count works.
    """

    blind: bool = True
    in_channels: int | None = None

    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def require_sigma(self, sigma: float | torch.Tensor | None) -> float | torch.Tensor:
        """Return ``sigma``, or raise a clear error when a non-blind method lacks it."""
        if sigma is None:
            raise ValueError(f"{type(self).__name__} is not blind: it needs the noise level sigma")
        return sigma


class CNNDenoiser(Denoiser):
    """Base class of the trainable architectures (DnCNN, RCNN, UNet, SDenseNet).

    Remembers its constructor arguments in :attr:`config` so a checkpoint can rebuild
    it, and its registry name in :attr:`arch`.
    """

    arch: str = ""

    def __init__(self, *, bias: bool, in_channels: int, **config):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (gray) or 3 (RGB), got {in_channels}")
        self.bias = bool(bias)
        self.in_channels = in_channels
        self.config = {"bias": self.bias, "in_channels": in_channels, **config}

    def _check_input(self, y: torch.Tensor) -> None:
        if y.dim() != 4 or y.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.arch} expects a (B, {self.in_channels}, H, W) tensor, got {tuple(y.shape)}"
            )


def conv3x3(in_channels: int, out_channels: int, *, bias: bool, dilation: int = 1) -> nn.Conv2d:
    """3×3 convolution that keeps the spatial size (zero padding)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=bias)


def orthogonal_init(module: nn.Module) -> None:
    """Orthogonal convolution weights, zero biases, unit norm scales (DnCNN's choice)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
