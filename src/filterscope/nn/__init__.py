"""Building blocks shared by the architectures."""

from .norm import BFBatchNorm2d, norm_layer

__all__ = ["BFBatchNorm2d", "norm_layer"]
