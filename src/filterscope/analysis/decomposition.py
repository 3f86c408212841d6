"""First-order decomposition of a denoiser: ``f(y) = A_y y + b_y`` (Mohan et al. 2020, §3).

For a ReLU network, ``A_y`` is the Jacobian at ``y`` and ``b_y`` the net bias; a
bias-free network has ``b_y = 0`` (Euler's identity for a 1-homogeneous map). The
residual splits as ``y - f(y) = (I - A_y) y - b_y``. One forward-mode product (JVP) with
tangent ``y`` gives both ``f(y)`` and ``A_y y``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ..noise import add_noise
from ._core import Function, as_function, check_differentiable


@dataclass
class Decomposition:
    """The parts of ``f(y) = A_y y + b_y``, each shaped like ``y`` ``(B, C, H, W)``.

    Attributes
    ----------
    y : Tensor
        Noisy input.
    output : Tensor
        ``f(y)``.
    linear : Tensor
        ``A_y y``.
    bias : Tensor
        ``b_y = f(y) - A_y y`` (zero, to round-off, for bias-free ReLU networks).
    """

    y: torch.Tensor
    output: torch.Tensor
    linear: torch.Tensor
    bias: torch.Tensor

    @property
    def residual(self) -> torch.Tensor:
        """``y - f(y)``."""
        return self.y - self.output


def _as_batch(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise InputError("y must be a float tensor")
    if y.dim() == 2:
        y = y[None, None]
    elif y.dim() == 3:
        y = y[None]
    if y.dim() != 4:
        raise InputError(f"y must be (B, C, H, W), (C, H, W) or (H, W); got {tuple(y.shape)}")
    return y.detach().to(dtype=dtype)


def first_order_decomposition(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float64,
) -> Decomposition:
    """Split a denoiser's output into its linear part and its net bias at ``y``.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser on ``(B, C, H, W)`` tensors that treats the images of a
        batch independently (true of every filterscope model in eval mode).
    y : Tensor, shape (B, C, H, W), (C, H, W) or (H, W)
        Noisy images.
    dtype : torch.dtype, keyword-only
        Arithmetic; float64 so that ``b_y`` of a bias-free network is ~1e-15, not ~1e-7.

    Returns
    -------
    Decomposition

    Notes
    -----
    Cost: one forward-mode pass (``torch.func.jvp``), about two forward passes.
    """
    y = _as_batch(y, dtype)
    function = as_function(denoiser, dtype=dtype)
    check_differentiable(function, y[:1])
    output, linear = torch.func.jvp(function, (y,), (y,))
    output, linear = output.detach(), linear.detach()
    return Decomposition(y=y, output=output, linear=linear, bias=output - linear)


def _norm_255(t: torch.Tensor) -> torch.Tensor:
    """Per-image RMS on the 0–255 scale: ``255 · ‖t‖₂ / √(C·H·W)``, shape ``(B,)``."""
    flat = t.flatten(1)
    return 255.0 * flat.norm(dim=1) / flat.shape[1] ** 0.5


def random_patches(
    images: Sequence[torch.Tensor],
    *,
    patch: int,
    count: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """``count`` random ``patch × patch`` crops spread evenly over ``images``.

    Parameters
    ----------
    images : sequence of Tensor, each (C, H, W)
        Clean images, all with the same channel count.
    patch : int
        Side of the square crops; must not exceed any image's sides.
    count : int
        Number of crops (image ``k mod len(images)`` gives the ``k``-th).
    generator : torch.Generator
        Source of the crop positions.

    Returns
    -------
    Tensor, shape (count, C, patch, patch)
    """
    if not images:
        raise InputError("no images given")
    for index, image in enumerate(images):
        if image.dim() != 3:
            raise InputError(f"images must be (C, H, W) tensors, got {tuple(image.shape)}")
        if patch > min(image.shape[-2:]):
            raise InputError(
                f"patch {patch} is larger than image {index} ({image.shape[-1]}x"
                f"{image.shape[-2]}); use a smaller --patch"
            )
    out = []
    for k in range(count):
        image = images[k % len(images)]
        height, width = image.shape[-2:]
        top = int(torch.randint(0, height - patch + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - patch + 1, (1,), generator=generator))
        out.append(image[:, top : top + patch, left : left + patch])
    return torch.stack(out)


def decomposition_vs_sigma(
    denoiser: nn.Module | Function,
    x: torch.Tensor,
    sigmas: Sequence[float],
    *,
    seed: int = 0,
    batch: int = 64,
    dtype: torch.dtype = torch.float64,
) -> list[dict[str, float]]:
    """Mean norms of noise, residual, linear part and net bias as a function of σ
    (Figures 1 and 8 of Mohan et al. 2020).

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser (images of a batch processed independently).
    x : Tensor, shape (B, C, H, W)
        Clean images or patches in [0, 1] (the paper: 100 patches of 20×20); each is
        denoised as a whole image.
    sigmas : sequence of float
        Noise levels on the image scale (50/255...).
    seed : int, keyword-only
        Noise for σ is ``σ · n`` with the same standard normal ``n`` for every σ.
    batch : int, keyword-only
        Images per pass.
    dtype : torch.dtype, keyword-only
        Arithmetic.

    Returns
    -------
    list of dict, one per σ
        ``sigma`` (0–255 scale), ``noise_norm``, ``residual_norm``, ``linear_norm``,
        ``bias_norm`` (each the mean over images of ``255·‖·‖₂/√(C·H·W)``, so
        ``noise_norm ≈ sigma``), ``residual_linear_norm`` (``‖(I - A_y)y‖``) and
        ``images``.
    """
    if x.dim() != 4:
        raise InputError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
    if not sigmas:
        raise InputError("no noise level given")
    x = x.detach().to(dtype=dtype)
    results = []
    for sigma in sigmas:
        sigma = float(sigma)
        if sigma < 0:
            raise InputError(f"sigma must be >= 0, got {sigma * 255:g}")
        y = add_noise(x, sigma, generator=seed)
        sums = dict.fromkeys(("noise", "residual", "linear", "bias", "residual_linear"), 0.0)
        for start in range(0, len(y), batch):
            part = y[start : start + batch]
            dec = first_order_decomposition(denoiser, part, dtype=dtype)
            sums["noise"] += float(_norm_255(part - x[start : start + batch]).sum())
            sums["residual"] += float(_norm_255(dec.residual).sum())
            sums["linear"] += float(_norm_255(dec.linear).sum())
            sums["bias"] += float(_norm_255(dec.bias).sum())
            sums["residual_linear"] += float(_norm_255(part - dec.linear).sum())
        count = len(y)
        results.append(
            {
                "sigma": sigma * 255.0,
                "noise_norm": sums["noise"] / count,
                "residual_norm": sums["residual"] / count,
                "linear_norm": sums["linear"] / count,
                "bias_norm": sums["bias"] / count,
                "residual_linear_norm": sums["residual_linear"] / count,
                "images": count,
            }
        )
    return results
