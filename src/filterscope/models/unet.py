"""UNet of Appendix A.3 of Mohan et al. 2020 (after Zhang et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import CNNDenoiser, conv3x3, orthogonal_init
from .registry import register_model


@register_model("unet")
class UNet(CNNDenoiser):
    """Two-scale UNet with dilated convolutions at the coarse scale.

    ``conv1`` 5×5 → 32, ``conv2`` 3×3 → 32, ``conv3`` 3×3 stride 2 → 64, ``conv4`` 3×3,
    ``conv5`` 3×3 dilation 2, ``conv6`` 3×3 dilation 4, ``conv7`` 4×4 transposed stride 2,
    ``conv8`` 3×3 on [conv7, conv2] (96 → 32), ``conv9`` 5×5 → ``in_channels`` (linear,
    never a bias). ReLU after conv1–conv8.

    Any ``H × W`` works: odd sides are zero-padded by one row/column at the bottom/right
    and the output is cropped back (zero padding keeps the network bias-free).

    Parameters
    ----------
    bias : bool, keyword-only
        Bias in conv1–conv8.
    in_channels : int, keyword-only
        1 or 3.
    """

    def __init__(self, *, bias: bool = False, in_channels: int = 1):
        super().__init__(bias=bias, in_channels=in_channels)
        self.conv1 = nn.Conv2d(in_channels, 32, 5, padding=2, bias=bias)
        self.conv2 = conv3x3(32, 32, bias=bias)
        self.conv3 = nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=bias)
        self.conv4 = conv3x3(64, 64, bias=bias)
        self.conv5 = conv3x3(64, 64, bias=bias, dilation=2)
        self.conv6 = conv3x3(64, 64, bias=bias, dilation=4)
        self.conv7 = nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1, bias=bias)
        self.conv8 = conv3x3(96, 32, bias=bias)
        self.conv9 = nn.Conv2d(32, in_channels, 5, padding=2, bias=False)
        orthogonal_init(self)

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        self._check_input(y)
        height, width = y.shape[-2:]
        padded = F.pad(y, (0, width % 2, 0, height % 2))
        fine = F.relu(self.conv2(F.relu(self.conv1(padded))))
        coarse = F.relu(self.conv3(fine))
        coarse = F.relu(self.conv4(coarse))
        coarse = F.relu(self.conv5(coarse))
        coarse = F.relu(self.conv6(coarse))
        up = F.relu(self.conv7(coarse))
        out = self.conv9(F.relu(self.conv8(torch.cat([up, fine], dim=1))))
        return out[..., :height, :width]
