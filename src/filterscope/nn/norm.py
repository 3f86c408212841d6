"""Bias-free batch normalisation (Mohan et al., ICLR 2020, Section 4)."""

from __future__ import annotations

import torch
from torch import nn


class BFBatchNorm2d(nn.Module):
    """Batch normalisation without any additive constant.

    Each channel is divided by a standard deviation and multiplied by a learned scale;
    no mean is subtracted and no shift is added, so in eval mode the layer is linear
    (a per-channel scaling) and keeps a ReLU network positively homogeneous.

    Parameters
    ----------
    num_features : int
        Number of channels ``C`` of the ``(B, C, H, W)`` input.
    eps : float, keyword-only
        Added to the standard deviation (after the square root, as in the reference
        implementation of the paper, whose checkpoints we load bit-for-bit).
    momentum : float, keyword-only
        Weight of the newest batch in the running variance.
    affine : bool, keyword-only
        Learn a per-channel scale ``weight`` (initialised to 1). No shift either way.

    Notes
    -----
    Training mode divides by the batch standard deviation (unbiased, per channel over
    batch and space) and updates ``running_var``; eval mode divides by
    ``sqrt(running_var) + eps``.
    """

    def __init__(
        self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True
    ):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
        else:
            self.register_parameter("weight", None)
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def scale(self) -> torch.Tensor:
        """The per-channel factor applied in eval mode, shape ``(C,)``."""
        factor = 1.0 / (self.running_var.sqrt() + self.eps)
        if self.weight is not None:
            factor = factor * self.weight
        return factor

    def _batch_variance(self, x: torch.Tensor) -> torch.Tensor:
        """Unbiased per-channel variance over batch and space (training mode)."""
        return x.var(dim=(0, 2, 3), unbiased=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"expected (B, {self.num_features}, H, W), got {tuple(x.shape)}")
        if self.training:
            var = self._batch_variance(x)
            with torch.no_grad():
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var.detach())
                self.num_batches_tracked.add_(1)
            factor = 1.0 / (var.sqrt() + self.eps)
            if self.weight is not None:
                factor = factor * self.weight
        else:
            factor = self.scale()
        return x * factor.view(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        )


def norm_layer(num_features: int, *, bias: bool) -> nn.Module:
    """Standard ``BatchNorm2d`` for networks with bias, :class:`BFBatchNorm2d` without."""
    if bias:
        return nn.BatchNorm2d(num_features)
    return BFBatchNorm2d(num_features)
