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
from ..models.base import with_sigma
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
                f"{image.shape[-2]}); use a smaller patch"
            )
    out = []
    for k in range(count):
        image = images[k % len(images)]
        height, width = image.shape[-2:]
        top = int(torch.randint(0, height - patch + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - patch + 1, (1,), generator=generator))
        out.append(image[:, top : top + patch, left : left + patch])
    return torch.stack(out)


def _noisy_images(x: Sequence[torch.Tensor], sigma: float, seed: int) -> list[torch.Tensor]:
    """``x_k + σ·n_k`` with standard normals ``n_k`` drawn in order from one generator
    seeded with ``seed`` (the same ``n_k`` for every σ), on the CPU whatever the images'
    device, so that every device sees the same noise."""
    generator = torch.Generator().manual_seed(int(seed))
    return [
        image
        + sigma * torch.randn(image.shape, generator=generator, dtype=image.dtype).to(image.device)
        for image in x
    ]


def _noisy_pairs(x, sigma: float, seed: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(noisy, clean) network inputs: batches of ``batch`` patches of a ``(B, C, H, W)``
    tensor, or one ``(1, C, H, W)`` pair per image of a sequence."""
    if isinstance(x, torch.Tensor):
        y = add_noise(x, sigma, generator=seed)
        return [(y[s : s + batch], x[s : s + batch]) for s in range(0, len(y), batch)]
    noisy = _noisy_images(x, sigma, seed)
    return [(yk[None], xk[None]) for yk, xk in zip(noisy, x, strict=True)]


def decomposition_vs_sigma(
    denoiser: nn.Module | Function,
    x: torch.Tensor | Sequence[torch.Tensor],
    sigmas: Sequence[float],
    *,
    seed: int = 0,
    batch: int = 64,
    dtype: torch.dtype = torch.float64,
    return_examples: bool = False,
    per_image: bool = False,
) -> list[dict[str, float]] | tuple[list[dict[str, float]], list[Decomposition]]:
    """Mean norms of noise, residual, linear part and net bias as a function of σ
    (Figures 1 and 8 of Mohan et al. 2020).

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser (images of a batch processed independently).
    x : Tensor of shape (B, C, H, W), or sequence of Tensor each (C, H, W)
        Clean images in [0, 1], each denoised as a whole network input. A tensor holds
        equal-sized patches (Figure 1: 100 patches of 20×20), processed ``batch`` at a
        time; a sequence holds full-size images, possibly of different sizes (Figure 8:
        the 68 images of BSD68), processed one at a time.
    sigmas : sequence of float
        Noise levels on the image scale (50/255...).
    seed : int, keyword-only
        Noise for σ is ``σ · n`` with the same standard normal ``n`` for every σ
        (tensor input: ``add_noise(x, σ, generator=seed)``; sequence input: one
        generator seeded with ``seed`` draws ``n`` for the images in order).
    batch : int, keyword-only
        Patches per pass (tensor input).
    dtype : torch.dtype, keyword-only
        Arithmetic. float64 makes ``b_y`` of a bias-free network ~1e-15; float32 is
        about twice as fast on CPU and enough for networks with bias.
    return_examples : bool, keyword-only
        Also return the :class:`Decomposition` of the first image (or patch) at each
        σ, for figures like Figures 9 and 10 (no extra computation).
    per_image : bool, keyword-only
        Also list each image's norms (``per_image`` entry of each result: a dict of
        lists ``noise_norm``, ``residual_norm``, ``linear_norm``, ``bias_norm``,
        ``bias_mean``), e.g. for bootstrap intervals.

    Returns
    -------
    results : list of dict, one per σ
        ``sigma`` (0–255 scale), ``noise_norm``, ``residual_norm``, ``linear_norm``,
        ``bias_norm`` (each the mean over images of the per-image RMS on the 0–255
        scale, ``255·‖v‖₂/√(C·H·W)``, so ``noise_norm ≈ sigma``; for equal-sized
        images this is the mean ``‖v‖₂`` of the paper up to the constant factor
        ``255/√(C·H·W)``), ``bias_norm_median``, ``bias_mean`` (mean over images of the
        signed spatial mean of ``b_y``, 0–255: the part of the bias that is a constant
        offset), ``residual_linear_norm`` (``‖(I - A_y)y‖``) and ``images``.
    examples : list of Decomposition, one per σ
        Only with ``return_examples``: the first image's parts, shape ``(1, C, H, W)``.
    """
    if isinstance(x, torch.Tensor):
        if x.dim() != 4:
            raise InputError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
        images = None
        x = x.detach().to(dtype=dtype)
    else:
        images = list(x)
        if not images:
            raise InputError("no images given")
        for image in images:
            if not isinstance(image, torch.Tensor) or image.dim() != 3:
                shape = tuple(image.shape) if isinstance(image, torch.Tensor) else image
                raise InputError(f"images must be (C, H, W) tensors, got {shape}")
        images = [image.detach().to(dtype=dtype) for image in images]
    if not sigmas:
        raise InputError("no noise level given")
    results = []
    examples = []
    for sigma in sigmas:
        sigma = float(sigma)
        if sigma < 0:
            raise InputError(f"sigma must be >= 0, got {sigma * 255:g}")
        pairs = _noisy_pairs(x if images is None else images, sigma, seed, batch)
        norms: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("noise", "residual", "linear", "bias", "residual_linear", "offset")
        }
        for part, clean in pairs:
            dec = first_order_decomposition(with_sigma(denoiser, sigma), part, dtype=dtype)
            if return_examples and len(examples) < len(results) + 1:
                examples.append(
                    Decomposition(
                        y=dec.y[:1], output=dec.output[:1], linear=dec.linear[:1], bias=dec.bias[:1]
                    )
                )
            norms["noise"].append(_norm_255(part - clean))
            norms["residual"].append(_norm_255(dec.residual))
            norms["linear"].append(_norm_255(dec.linear))
            norms["bias"].append(_norm_255(dec.bias))
            norms["residual_linear"].append(_norm_255(part - dec.linear))
            norms["offset"].append(255.0 * dec.bias.flatten(1).mean(1))
        values = {k: torch.cat(v) for k, v in norms.items()}
        result = {
            "sigma": sigma * 255.0,
            "noise_norm": float(values["noise"].mean()),
            "residual_norm": float(values["residual"].mean()),
            "linear_norm": float(values["linear"].mean()),
            "bias_norm": float(values["bias"].mean()),
            "bias_norm_median": float(values["bias"].median()),
            "bias_mean": float(values["offset"].mean()),
            "residual_linear_norm": float(values["residual_linear"].mean()),
            "images": len(values["bias"]),
        }
        if per_image:
            result["per_image"] = {
                f"{k}_norm" if k != "offset" else "bias_mean": values[k].tolist()
                for k in ("noise", "residual", "linear", "bias", "offset")
            }
        results.append(result)
    if return_examples:
        return results, examples
    return results
