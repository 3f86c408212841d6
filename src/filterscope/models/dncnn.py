"""DnCNN (Zhang et al., IEEE TIP 2017) with and without bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import norm_layer
from .base import CNNDenoiser, conv3x3, orthogonal_init
from .registry import register_model


@register_model("dncnn")
class DnCNN(CNNDenoiser):
    """Feed-forward denoiser predicting the noise: ``x_hat = y - net(y)``.

    Layout (Appendix A.1 of Mohan et al. 2020): conv + ReLU, then ``num_layers - 2``
    times conv + batch norm + ReLU, then a final conv; all 3×3, ``hidden`` channels.

    Parameters
    ----------
    bias : bool, keyword-only
        ``False``: convolutions without bias and :class:`~filterscope.nn.BFBatchNorm2d`,
        so ``f(αy) = α f(y)`` for α ≥ 0 in eval mode.
    in_channels : int, keyword-only
        1 or 3.
    num_layers : int, keyword-only
        Total number of convolutions (20 in the paper). Receptive field
        ``2 * num_layers + 1`` pixels.
    hidden : int, keyword-only
        Channels of the intermediate layers (64).

    Notes
    -----
    Module names follow the published checkpoints so that they load with
    ``strict=True`` (see :mod:`filterscope.models.published`).
    """

    def __init__(
        self, *, bias: bool = False, in_channels: int = 1, num_layers: int = 20, hidden: int = 64
    ):
        super().__init__(bias=bias, in_channels=in_channels, num_layers=num_layers, hidden=hidden)
        if num_layers < 3:
            raise ValueError(f"num_layers must be at least 3, got {num_layers}")
        self.first_layer = conv3x3(in_channels, hidden, bias=bias)
        self.hidden_layer_list = nn.ModuleList(
            conv3x3(hidden, hidden, bias=bias) for _ in range(num_layers - 2)
        )
        self.bn_layer_list = nn.ModuleList(
            norm_layer(hidden, bias=bias) for _ in range(num_layers - 2)
        )
        self.last_layer = conv3x3(hidden, in_channels, bias=bias)
        orthogonal_init(self)
        with torch.no_grad():
            # Start near the identity map x_hat = y. A bias-free network has no constant to
            # absorb Adam's first, sign-like updates of the last layer, and at full scale
            # they throw the output far off and stall short training runs.
            self.last_layer.weight.mul_(0.1)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context on each side that influence one output pixel."""
        return self.config["num_layers"]

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        self._check_input(y)
        h = F.relu(self.first_layer(y))
        for conv, norm in zip(self.hidden_layer_list, self.bn_layer_list, strict=True):
            h = F.relu(norm(conv(h)))
        return y - self.last_layer(h)
