"""Self-ensemble: a denoiser averaged over the 8 flips and rotations of its input.

For a bias-free network each transformed pass is positively homogeneous, and so is
their mean: ``f(a y) = a f(y)`` and the Jacobian analysis still apply to the ensemble
(its Jacobian is the mean of the 8 transformed Jacobians).
"""

from __future__ import annotations

import torch

from .models.base import Denoiser

#: (quarter turns, flip) of the 8 symmetries of the square.
SYMMETRIES = tuple((turns, flip) for flip in (False, True) for turns in range(4))


def _apply(image: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    if flip:
        image = image.flip(-1)
    return torch.rot90(image, turns, dims=(-2, -1))


def _undo(image: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    image = torch.rot90(image, -turns, dims=(-2, -1))
    return image.flip(-1) if flip else image


def self_ensemble(
    model, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
) -> torch.Tensor:
    """Mean of ``model`` over the 8 flips and rotations of ``y``, each transformed back.

    Parameters
    ----------
    model : callable
        ``model(y, sigma, **kwargs) -> x_hat`` on ``(B, C, H, W)`` tensors.
    y : Tensor, shape (B, C, H, W)
        Noisy images in [0, 1].
    sigma : float, Tensor of shape (B,), or None
        Passed unchanged to every pass (a rotation does not change the noise level).

    Returns
    -------
    Tensor, shape (B, C, H, W)
        The averaged estimate. Costs 8 passes of ``model``; rotated passes see
        ``(W, H)`` images, which every model here accepts.
    """
    total = None
    for turns, flip in SYMMETRIES:
        estimate = _undo(model(_apply(y, turns, flip), sigma, **kwargs), turns, flip)
        total = estimate if total is None else total + estimate
    return total / len(SYMMETRIES)


class SelfEnsemble(Denoiser):
    """A :class:`~filterscope.models.base.Denoiser` that runs :func:`self_ensemble`.

    Parameters
    ----------
    model : nn.Module
        Any denoiser with ``forward(y, sigma=None)`` (a plain module is adapted as
        :func:`filterscope.models.adapter.as_denoiser` does). Its ``blind``, ``in_channels``,
        ``bias`` and ``receptive_radius`` are passed through, so tiling, channel checks
        and the analyses treat the ensemble like the model.
    """

    def __init__(self, model: torch.nn.Module):
        from .models.adapter import as_denoiser

        super().__init__()
        self.model = as_denoiser(model)
        self.blind = self.model.blind
        self.in_channels = self.model.in_channels

    @property
    def receptive_radius(self) -> int:
        return self.model.receptive_radius

    @property
    def bias(self) -> bool:
        return self.model.bias

    @property
    def tile_alignment(self) -> int:
        return getattr(self.model, "tile_alignment", 1)

    @property
    def input_dtype(self) -> torch.dtype | None:
        return self.model.input_dtype

    def image_noise_level(self, y: torch.Tensor) -> torch.Tensor | None:
        return self.model.image_noise_level(y)

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        return self_ensemble(self.model, y, sigma, **kwargs)


__all__ = ["SYMMETRIES", "SelfEnsemble", "self_ensemble"]
