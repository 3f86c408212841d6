"""Simplified DenseNet (Appendix A.4 of Mohan et al. 2020)."""

from __future__ import annotations

import torch
from torch import nn

from .base import CNNDenoiser, orthogonal_init
from .registry import register_model
from .stacks import ConvStack


@register_model("sdensenet")
class SimplifiedDenseNet(CNNDenoiser):
    """Four 5-layer convolution blocks; each block's output is concatenated with ``y``.

    Block 1 sees ``y``; blocks 2–4 see ``[previous block output, y]`` (``hidden +
    in_channels`` channels). Blocks 1–3 output ``hidden`` channels, block 4 outputs
    the estimate. Every block is first conv + ``layers_per_block - 2`` hidden convs +
    last conv, ReLU after all but each block's last.

    Parameters
    ----------
    bias : bool, keyword-only
        Bias in every convolution except the last of the final block.
    in_channels : int, keyword-only
        1 or 3.
    num_blocks : int, keyword-only
        4 in the paper.
    layers_per_block : int, keyword-only
        Convolutions per block (5).
    hidden : int, keyword-only
        Channels of the intermediate layers and of the blocks' outputs (64).
    """

    def __init__(
        self,
        *,
        bias: bool = False,
        in_channels: int = 1,
        num_blocks: int = 4,
        layers_per_block: int = 5,
        hidden: int = 64,
    ):
        super().__init__(
            bias=bias,
            in_channels=in_channels,
            num_blocks=num_blocks,
            layers_per_block=layers_per_block,
            hidden=hidden,
        )
        if num_blocks < 1 or layers_per_block < 2:
            raise ValueError("need num_blocks >= 1 and layers_per_block >= 2")
        blocks = []
        for index in range(num_blocks):
            last = index == num_blocks - 1
            blocks.append(
                ConvStack(
                    in_channels if index == 0 else hidden + in_channels,
                    in_channels if last else hidden,
                    hidden=hidden,
                    num_hidden=layers_per_block - 2,
                    bias=bias,
                    last_bias=bias and not last,
                )
            )
        self.blocks = nn.ModuleList(blocks)
        orthogonal_init(self)

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        self._check_input(y)
        h = self.blocks[0](y)
        for block in self.blocks[1:]:
            h = block(torch.cat([h, y], dim=1))
        return h
