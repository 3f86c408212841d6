"""Recurrent CNN (Appendix A.2 of Mohan et al. 2020)."""

from __future__ import annotations

import torch

from .base import CNNDenoiser, orthogonal_init
from .registry import register_model
from .stacks import ConvStack


@register_model("rcnn")
class RecurrentCNN(CNNDenoiser):
    """One shared convolution stack applied ``T`` times: ``x_t = cnn([y, x_{t-1}])``, ``x_0 = y``.

    Parameters
    ----------
    bias : bool, keyword-only
        Bias in every convolution but the stack's last (which never has one).
    in_channels : int, keyword-only
        1 or 3; the stack sees ``2 * in_channels`` channels.
    max_stages : int, keyword-only
        ``T`` at evaluation (4). In training mode ``T`` is drawn uniformly from
        ``{1, ..., max_stages}`` for each forward call (i.e. per batch) from
        :attr:`stage_generator`, a :class:`torch.Generator` seeded by ``seed``.
    hidden : int, keyword-only
        Channels of the intermediate layers (64).
    num_hidden : int, keyword-only
        Hidden convolutions between the stack's first and last (5, as in the
        published checkpoints: 7 convolutions in all).
    seed : int, keyword-only
        Seed of :attr:`stage_generator`.
    """

    def __init__(
        self,
        *,
        bias: bool = False,
        in_channels: int = 1,
        max_stages: int = 4,
        hidden: int = 64,
        num_hidden: int = 5,
        seed: int = 0,
    ):
        super().__init__(
            bias=bias,
            in_channels=in_channels,
            max_stages=max_stages,
            hidden=hidden,
            num_hidden=num_hidden,
            seed=seed,
        )
        if max_stages < 1:
            raise ValueError(f"max_stages must be at least 1, got {max_stages}")
        self.cnn = ConvStack(
            2 * in_channels,
            in_channels,
            hidden=hidden,
            num_hidden=num_hidden,
            bias=bias,
            last_bias=False,
        )
        self.stage_generator = torch.Generator().manual_seed(seed)
        orthogonal_init(self)

    def forward(
        self,
        y: torch.Tensor,
        sigma: float | torch.Tensor | None = None,
        *,
        stages: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        self._check_input(y)
        if stages is None:
            stages = self.config["max_stages"]
            if self.training:
                stages = int(torch.randint(1, stages + 1, (1,), generator=self.stage_generator))
        estimate = y
        for _ in range(stages):
            estimate = self.cnn(torch.cat([y, estimate], dim=1))
        return estimate
