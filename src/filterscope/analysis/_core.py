"""Shared machinery of the Jacobian analysis: preparing a denoiser, checking inputs,
rows of the Jacobian by batched vector-Jacobian products, receptive-field crops."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import InputError

#: Largest dense Jacobian (bytes) the dense routines agree to build by default.
DEFAULT_MAX_BYTES = 2 << 30

Function = Callable[[torch.Tensor], torch.Tensor]


def as_function(denoiser: nn.Module | Function, *, dtype: torch.dtype) -> Function:
    """A function ``(B, C, H, W) -> (B, C, H, W)`` in ``dtype`` that torch can differentiate.

    An ``nn.Module`` is deep-copied, converted to ``dtype`` and put in eval mode (the
    caller's model is left untouched; batch norm then uses its running statistics, so
    the map is a fixed function of its input). Any other callable is used as it is and
    receives ``dtype`` tensors.
    """
    check_has_jacobian(denoiser)
    if isinstance(denoiser, nn.Module):
        module = copy.deepcopy(denoiser).to(dtype=dtype).eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)

        def function(y: torch.Tensor) -> torch.Tensor:
            return module(y)

        function.module = module  # type: ignore[attr-defined]
        return function
    if callable(denoiser):
        return denoiser
    raise InputError(
        f"expected a denoiser (an nn.Module or a callable on (B, C, H, W) tensors), "
        f"got {type(denoiser).__name__}"
    )


def check_has_jacobian(denoiser: object) -> None:
    """Refuse, in one line and before any copy, a denoiser that declares it is not
    differentiable by torch (``differentiable = False``: BM3D and scikit-image's NLM,
    NumPy code; the NTK and NLM twicing filters, built from the image without autograd)."""
    if getattr(denoiser, "differentiable", True) is False:
        label = getattr(denoiser, "label", None)
        name = label() if callable(label) else type(denoiser).__name__
        raise InputError(
            f"{name} has no Jacobian: it is not differentiable by torch, so it cannot be "
            "analysed; use a network (the rows of a non-local filter at an image: "
            "filterscope.ntk.reports.filter_rows)"
        )


def receptive_radius(denoiser: object, radius: int | str | None) -> int | None:
    """Resolve the ``radius`` option: ``"auto"`` reads the model's ``receptive_radius``."""
    if radius == "auto":
        value = getattr(denoiser, "receptive_radius", None)
        return None if value is None else int(value)
    if radius is None:
        return None
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise InputError(f"radius must be a number of pixels >= 0, 'auto' or None, got {radius!r}")
    return radius


def as_image_batch(y: torch.Tensor, *, dtype: torch.dtype, name: str = "y") -> torch.Tensor:
    """``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` -> ``(1, C, H, W)`` in ``dtype``."""
    if not isinstance(y, torch.Tensor):
        raise InputError(f"{name} must be a torch tensor, got {type(y).__name__}")
    if y.dim() == 2:
        y = y[None, None]
    elif y.dim() == 3:
        y = y[None]
    if y.dim() != 4 or y.shape[0] != 1:
        raise InputError(
            f"{name} must be one image, (H, W), (C, H, W) or (1, C, H, W); got {tuple(y.shape)}"
        )
    if not y.is_floating_point():
        raise InputError(f"{name} must be a float tensor, got {y.dtype}")
    if not torch.isfinite(y).all():
        raise InputError(f"{name} contains NaN or Inf values")
    return y.detach().to(dtype=dtype)


def check_differentiable(function: Function, y: torch.Tensor) -> torch.Tensor:
    """Run ``function`` once on ``y`` with autograd on; return the output.

    Raises
    ------
    InputError
        The call fails, returns something of another shape, or its output is not
        connected to the input by autograd (a numpy method such as BM3D, a model run
        under ``torch.no_grad``...).
    """
    probe = y.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = function(probe)
    except InputError:
        raise
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(
            f"the denoiser failed on a {tuple(y.shape)} {y.dtype} input ({detail})"
        ) from None
    if not isinstance(out, torch.Tensor) or out.shape != y.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(
            f"the denoiser must return its input's shape {tuple(y.shape)}, got {shape}"
        )
    if not out.requires_grad:
        raise InputError(
            "the denoiser is not differentiable by torch (its output is not connected to "
            "its input by autograd); Jacobian analysis needs a torch model or function"
        )
    return out.detach()


def check_dense_size(n: int, itemsize: int, max_bytes: int, *, what: str) -> None:
    """Refuse an ``n × n`` dense matrix larger than ``max_bytes``."""
    size = n * n * itemsize
    if size > max_bytes:
        raise InputError(
            f"{what} would be a dense {n}x{n} matrix ({size / 2**30:.1f} GiB > "
            f"{max_bytes / 2**30:.1f} GiB); use a smaller patch, or the matrix-free "
            "estimate estimate_effective_dim (on the command line: analyze dimension)"
        )


def vjp_rows(
    function: Function, y: torch.Tensor, out_indices: torch.Tensor, *, chunk: int
) -> torch.Tensor:
    """Rows ``J[i, :]`` of the Jacobian of ``function`` at ``y`` for flat output indices.

    One forward pass (``torch.func.vjp``) and ``ceil(len / chunk)`` batched backward
    passes (``torch.func.vmap`` over the pullback); falls back to one backward pass per
    row when the function has an operation ``vmap`` does not support.

    Returns
    -------
    Tensor, shape (len(out_indices), y.numel()), dtype of ``y``.
    """
    out, pullback = torch.func.vjp(function, y)
    n_out = out.numel()
    batched = torch.func.vmap(pullback)
    rows = []
    for start in range(0, len(out_indices), chunk):
        selected = out_indices[start : start + chunk]
        cotangents = torch.zeros(len(selected), n_out, dtype=out.dtype, device=out.device)
        cotangents[torch.arange(len(selected)), selected] = 1.0
        cotangents = cotangents.view(len(selected), *out.shape)
        try:
            (grads,) = batched(cotangents)
        except Exception:  # an operation without a vmap rule: one backward pass per row
            grads = torch.stack([pullback(c)[0] for c in cotangents])
        rows.append(grads.reshape(len(selected), -1))
    return torch.cat(rows) if rows else out.new_zeros(0, y.numel())


def crop_box(
    top: int, bottom: int, left: int, right: int, radius: int | None, height: int, width: int
) -> tuple[int, int, int, int]:
    """The block ``[top, bottom) × [left, right)`` grown by ``radius``, clipped to the image."""
    if radius is None:
        return 0, height, 0, width
    return (
        max(top - radius, 0),
        min(bottom + radius, height),
        max(left - radius, 0),
        min(right + radius, width),
    )


def check_pixels(pixels: Sequence[Sequence[int]], height: int, width: int) -> list[tuple[int, int]]:
    """Validate ``(x, y)`` pixel coordinates (column, row) against an image size."""
    checked = []
    for pixel in pixels:
        try:
            x, y = (int(v) for v in pixel)
        except (TypeError, ValueError):
            raise InputError(f"a pixel is a pair (x, y) of integers, got {pixel!r}") from None
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(
                f"pixel ({x}, {y}) is outside the {width}x{height} image "
                f"(x in 0..{width - 1}, y in 0..{height - 1})"
            )
        checked.append((x, y))
    if not checked:
        raise InputError("no pixel given")
    return checked
