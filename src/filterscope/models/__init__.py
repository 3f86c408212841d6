"""Architectures, the model registry and checkpoint loading.

The registry (``create_model``, ``list_models``, ``register_model``) is importable
without PyTorch; the architecture classes below are imported on first use (PEP 562
``__getattr__``), so that listing the models (``filterscope models``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .registry import create_model, list_models, register_model

#: Public name -> submodule defining it, imported when the name is first used.
_LAZY: dict[str, str] = {
    "CNNDenoiser": ".base",
    "Denoiser": ".base",
    "DRUNet": ".drunet",
    "DnCNN": ".dncnn",
    "RecurrentCNN": ".rcnn",
    "SimplifiedDenseNet": ".sdensenet",
    "UNet": ".unet",
}

__all__ = [
    "CNNDenoiser",
    "Denoiser",
    "DRUNet",
    "DnCNN",
    "RecurrentCNN",
    "SimplifiedDenseNet",
    "UNet",
    "create_model",
    "list_models",
    "register_model",
]

if TYPE_CHECKING:
    from .base import CNNDenoiser, Denoiser
    from .dncnn import DnCNN
    from .drunet import DRUNet
    from .rcnn import RecurrentCNN
    from .sdensenet import SimplifiedDenseNet
    from .unet import UNet


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
