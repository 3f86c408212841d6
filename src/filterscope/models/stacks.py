"""A plain stack of 3×3 convolutions with ReLUs, the unit of RCNN and SDenseNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import conv3x3


class ConvStack(nn.Module):
    """``first_layer`` → ReLU → (``hidden_layer_list[i]`` → ReLU)… → ``last_layer``.

    The last convolution is linear (no ReLU after it).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    hidden : int
        Channels of the intermediate layers.
    num_hidden : int
        Number of hidden convolutions between the first and the last.
    bias : bool
        Bias of every convolution but the last.
    last_bias : bool
        Bias of the last convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden: int,
        num_hidden: int,
        bias: bool,
        last_bias: bool,
    ):
        super().__init__()
        self.first_layer = conv3x3(in_channels, hidden, bias=bias)
        self.hidden_layer_list = nn.ModuleList(
            conv3x3(hidden, hidden, bias=bias) for _ in range(num_hidden)
        )
        self.last_layer = conv3x3(hidden, out_channels, bias=last_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.first_layer(x))
        for conv in self.hidden_layer_list:
            h = F.relu(conv(h))
        return self.last_layer(h)
