"""filterscope: blind image denoising you can look inside.

Bias-free CNN denoisers (Mohan et al., ICLR 2020), their Jacobian analysis, and
neural-tangent non-local filters (Tachella et al., CVPR 2021). Tensors are
``(B, C, H, W)`` float32 with images in [0, 1]; σ is on the image scale.

The public names below are imported on first use (PEP 562 ``__getattr__``), so that
``import filterscope`` and ``filterscope --help`` do not pay for importing PyTorch.
To export a new name, add it to :data:`_LAZY` (name → module that defines it), to
``__all__`` and to the ``TYPE_CHECKING`` imports (for type checkers and IDEs);
``tests/test_packaging.py`` checks that the three agree.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, FilterscopeError, InputError

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

#: Public name -> module defining it, imported when the name is first used.
_LAZY: dict[str, str] = {
    "Denoiser": "filterscope.models",
    "add_noise": "filterscope.noise",
    "create_model": "filterscope.models",
    "check_homogeneous": "filterscope.nn.bias_free",
    "denoise": "filterscope.api",
    "list_models": "filterscope.hub",
    "load_checkpoint": "filterscope.models.checkpoints",
    "load_model": "filterscope.hub",
    "make_bias_free": "filterscope.nn.bias_free",
    "model_info": "filterscope.hub",
    "psnr": "filterscope.metrics",
    "read_image": "filterscope.io",
    "register_architecture": "filterscope.models.user",
    "save_model": "filterscope.models.checkpoints",
    "ssim": "filterscope.metrics",
    "write_image": "filterscope.io",
}

__all__ = [
    "CheckpointError",
    "Denoiser",
    "FilterscopeError",
    "InputError",
    "add_noise",
    "check_homogeneous",
    "create_model",
    "denoise",
    "list_models",
    "load_checkpoint",
    "load_model",
    "make_bias_free",
    "model_info",
    "psnr",
    "read_image",
    "register_architecture",
    "save_model",
    "ssim",
    "write_image",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports
    from .api import denoise
    from .hub import list_models, load_model, model_info
    from .io import read_image, write_image
    from .metrics import psnr, ssim
    from .models import Denoiser, create_model
    from .models.checkpoints import load_checkpoint, save_model
    from .models.user import register_architecture
    from .nn.bias_free import check_homogeneous, make_bias_free
    from .noise import add_noise


def __getattr__(name: str) -> Any:
    """Import a public name of :data:`_LAZY`, or a submodule (``filterscope.io``), on use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later uses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
