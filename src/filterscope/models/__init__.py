"""Architectures, the model registry and checkpoint loading."""

from . import dncnn, drunet, rcnn, sdensenet, unet  # noqa: F401  (registration side effects)
from .base import CNNDenoiser, Denoiser
from .dncnn import DnCNN
from .drunet import DRUNet
from .rcnn import RecurrentCNN
from .registry import create_model, list_models, register_model
from .sdensenet import SimplifiedDenseNet
from .unet import UNet

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
