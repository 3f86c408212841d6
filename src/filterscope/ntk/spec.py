"""The architecture whose infinite-width kernels are computed (:class:`CNNKernel`) and
the image conversion shared by the kernel code. The equations are described in
:mod:`filterscope.ntk.kernels`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError

SIGMA_W2 = 2.0  # He initialisation for ReLU
PADDINGS = ("circular", "zero")
KINDS = ("ntk", "nngp")
INPUTS = ("image", "noise")
MAX_MATRIX_PIXELS = 64 * 64


# --------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class CNNKernel:
    """The architecture whose infinite-width kernel is computed.

    Attributes
    ----------
    depth : int
        Number of convolution layers ``L`` (equations 1–3), at least 2; ``depth=2`` is
        one hidden layer.
    kernel_size : int
        Odd side ``r`` of the convolution kernels of the first and hidden layers.
    output_kernel : int or None
        Odd side of the output layer's kernel: 1 gives equation 16 (no averaging after
        the last ReLU), ``None`` means ``kernel_size``.
    padding : {"circular", "zero"}
        Boundary handling of every convolution.
    kind : {"ntk", "nngp"}
        The neural tangent kernel ``Θ_L`` (the filter of gradient descent) or the NNGP
        covariance ``K_L`` of the output at initialisation.
    input : {"image", "noise"}
        The noisy image at the input (``x = y``) or i.i.d. noise with many channels
        (equation 17, ``G = I``).
    train_first_layer : bool
        Include the first layer's weights in the NTK (``Θ_1 = K_1``); the paper's
        equation 12 leaves them out.
    sigma_w2 : float
        Weight variance factor ``σ_w²`` (2 for He initialisation of ReLU networks).
    """

    depth: int = 2
    kernel_size: int = 11
    output_kernel: int | None = 1
    padding: str = "circular"
    kind: str = "ntk"
    input: str = "image"
    train_first_layer: bool = False
    sigma_w2: float = SIGMA_W2

    def __post_init__(self) -> None:
        if int(self.depth) != self.depth or self.depth < 2:
            raise InputError(
                f"depth must be an integer >= 2 (convolution layers; 2 = one hidden layer), "
                f"got {self.depth}"
            )
        for name, size in (("kernel size", self.kernel_size), ("output kernel", self.out_r)):
            if int(size) != size or size < 1 or size % 2 == 0:
                raise InputError(f"{name} must be a positive odd integer, got {size}")
        if self.padding not in PADDINGS:
            raise InputError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.input not in INPUTS:
            raise InputError(f"input must be one of {INPUTS}, got {self.input!r}")
        if self.sigma_w2 <= 0:
            raise InputError(f"sigma_w2 must be positive, got {self.sigma_w2}")

    @property
    def out_r(self) -> int:
        return self.kernel_size if self.output_kernel is None else self.output_kernel

    def layer_kernel(self, layer: int) -> int:
        """Kernel side of layer ``layer`` (1-based)."""
        return self.out_r if layer == self.depth else self.kernel_size

    @property
    def receptive_field(self) -> int:
        """Side of the output's receptive field, ``(L-1)(r-1) + r_out``."""
        return (self.depth - 1) * (self.kernel_size - 1) + self.out_r

    @property
    def column_window(self) -> int:
        """Side ``s`` of the window of layer-1 columns that one output column needs."""
        return 1 + sum(self.layer_kernel(ell) - 1 for ell in range(2, self.depth + 1))

    @property
    def pairwise(self) -> bool:
        """True when an entry depends only on the two patches (one hidden layer, 1×1 out)."""
        return (
            self.depth == 2
            and self.out_r == 1
            and self.input == "image"
            and not (self.train_first_layer and self.kind == "ntk")
        )

    def check_image(self, height: int, width: int) -> None:
        """Raise :class:`InputError` when the image is smaller than a kernel."""
        r = max(self.kernel_size, self.out_r)
        if min(height, width) < r:
            raise InputError(
                f"image is {width}x{height} pixels, smaller than the {r}x{r} convolution kernel"
            )


def as_image(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Return ``image`` as a float64 ``(C, H, W)`` tensor.

    Accepts ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` tensors or arrays (``C`` = 1
    or 3; an ``(H, W, C)`` array with ``C`` in {1, 3} and ``H, W > 3`` is transposed).
    """
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[2] in (1, 3) and arr.shape[0] > 3:
            arr = arr.transpose(2, 0, 1)
        image = torch.from_numpy(np.ascontiguousarray(arr))
    t = image.detach().to("cpu", torch.float64)
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise InputError(f"expected a single image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise InputError(f"expected a gray or RGB image (C, H, W), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise InputError("image contains NaN or Inf values")
    return t.contiguous()
