"""Model registry: ``create_model(name, ...)`` and ``list_models()``.

The built-in architectures are listed by name in :data:`BUILTIN_ARCHITECTURES` and
their modules imported only when one is built, so that listing them needs no PyTorch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import CNNDenoiser

#: Built-in architecture name -> module that registers it (with ``@register_model``).
BUILTIN_ARCHITECTURES = {
    "dncnn": "filterscope.models.dncnn",
    "drunet": "filterscope.models.drunet",
    "rcnn": "filterscope.models.rcnn",
    "sdensenet": "filterscope.models.sdensenet",
    "unet": "filterscope.models.unet",
}

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
    """Names of the registered architectures (built-in ones included), sorted."""
    return sorted(set(BUILTIN_ARCHITECTURES) | set(_REGISTRY))


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
    return architecture_class(name)(bias=bias, in_channels=in_channels, **kwargs)


def architecture_class(name: str) -> type[CNNDenoiser]:
    """The class registered as ``name`` (a built-in one is imported on first use).

    Raises
    ------
    KeyError
        For a name that is not registered.
    """
    if name not in _REGISTRY and name in BUILTIN_ARCHITECTURES:
        importlib.import_module(BUILTIN_ARCHITECTURES[name])  # registers it
    if name not in _REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; choose from {', '.join(list_models())}")
    return _REGISTRY[name]
