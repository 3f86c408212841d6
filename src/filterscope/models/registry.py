"""Model registry: ``create_model(name, ...)`` and ``list_models()``."""

from __future__ import annotations

from collections.abc import Callable

from .base import CNNDenoiser

_REGISTRY: dict[str, type[CNNDenoiser]] = {}


def register_model(name: str) -> Callable[[type[CNNDenoiser]], type[CNNDenoiser]]:
    """Class decorator that makes an architecture available to :func:`create_model`."""

    def decorate(cls: type[CNNDenoiser]) -> type[CNNDenoiser]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        cls.arch = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_models() -> list[str]:
    """Names of the registered architectures, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, *, bias: bool = False, in_channels: int = 1, **kwargs) -> CNNDenoiser:
    """Build an architecture with freshly initialised weights.

    Parameters
    ----------
    name : str
        One of :func:`list_models` (``"dncnn"``, ``"rcnn"``, ``"unet"``, ``"sdensenet"``).
    bias : bool, keyword-only
        ``False`` builds the bias-free variant: no additive constant anywhere.
    in_channels : int, keyword-only
        1 for gray, 3 for RGB.
    **kwargs
        Architecture options (e.g. ``num_layers`` for DnCNN).
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; choose from {', '.join(list_models())}")
    return _REGISTRY[name](bias=bias, in_channels=in_channels, **kwargs)
