"""filterscope: blind image denoising you can look inside.

Bias-free CNN denoisers (Mohan et al., ICLR 2020), their Jacobian analysis, and
neural-tangent non-local filters (Tachella et al., CVPR 2021). Tensors are
``(B, C, H, W)`` float32 with images in [0, 1]; σ is on the image scale.
"""

from .errors import CheckpointError, FilterscopeError, InputError
from .io import read_image, write_image
from .metrics import psnr, ssim
from .models import Denoiser, create_model, list_models
from .models.checkpoints import load_checkpoint, save_model
from .noise import add_noise

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Denoiser",
    "FilterscopeError",
    "InputError",
    "add_noise",
    "create_model",
    "list_models",
    "load_checkpoint",
    "psnr",
    "read_image",
    "save_model",
    "ssim",
    "write_image",
]
