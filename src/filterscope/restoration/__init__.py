"""Image restoration with a denoiser as the prior (plug-and-play)."""

from .pnp import circular_blur, data_step, dpir_schedule, gaussian_blur_kernel, hqs_deblur

__all__ = ["circular_blur", "data_step", "dpir_schedule", "gaussian_blur_kernel", "hqs_deblur"]
