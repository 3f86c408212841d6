"""Any ``nn.Module`` denoiser as a :class:`~filterscope.models.base.Denoiser`."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ..errors import ModelImportError
from .base import Denoiser


class ModuleDenoiser(Denoiser):
    """Any ``nn.Module`` denoiser as a :class:`~filterscope.models.base.Denoiser`.

    The module's ``forward`` is read once: if it has a ``sigma`` parameter (deepinv's
    denoisers do) σ is passed as ``sigma=``, and extra keywords are passed when it
    takes ``**kwargs``; otherwise it is called as ``module(y)`` (a blind denoiser).
    ``in_channels`` is that of its first ``Conv2d``, so images of another channel
    count are refused with a :class:`~filterscope.errors.ChannelError`. The output is
    cast to the input's dtype.

    Parameters
    ----------
    module : nn.Module
        ``module(y) -> x_hat`` or ``module(y, sigma) -> x_hat`` on ``(B, C, H, W)``.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        parameters = inspect.signature(module.forward).parameters.values()
        self.takes_sigma = any(p.name == "sigma" for p in parameters)
        self.takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        self.blind = not self.takes_sigma
        first_conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
        self.in_channels = None if first_conv is None else first_conv.in_channels

    def label(self) -> str:
        return type(self.module).__name__

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        self.check_channels(y)
        extra = kwargs if self.takes_kwargs else {}
        if self.takes_sigma:
            x_hat = self.module(y, sigma=sigma, **extra)
        else:
            x_hat = self.module(y, **extra)
        return x_hat.to(y.dtype)


def as_denoiser(module: nn.Module, name: str = "model") -> Denoiser:
    """``module`` itself when it is a :class:`Denoiser`, else wrapped in a
    :class:`ModuleDenoiser`.

    Raises
    ------
    ModelImportError
        ``module`` is not a ``torch.nn.Module`` (``name`` says where it came from).
    """
    if isinstance(module, Denoiser):
        return module
    if isinstance(module, nn.Module):
        return ModuleDenoiser(module)
    raise ModelImportError(f"{name} gave a {type(module).__name__}, not a torch.nn.Module")


__all__ = ["ModuleDenoiser", "as_denoiser"]
