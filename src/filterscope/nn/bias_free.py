"""Turning a network into its bias-free version, and measuring homogeneity.

Mohan et al. (ICLR 2020) remove every additive constant from a ReLU network; it then
satisfies ``f(a y) = a f(y)`` for every ``a > 0`` (positive homogeneity), generalizes
across noise levels, and is locally linear, ``f(y) = A_y y``.

:func:`make_bias_free` does this to any ``nn.Module``: convolution and linear biases
are dropped, ``BatchNorm2d`` becomes :class:`~filterscope.nn.BFBatchNorm2d` (no mean
subtracted, no shift added), and a layer it cannot convert (a norm that subtracts a
mean, an activation that is not positively homogeneous, an unknown layer with its own
parameters) is refused by name. Constants added inside a module's ``forward`` (``x + 1``)
cannot be seen from the layers: :func:`check_homogeneous` measures the property itself.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UnsupportedLayerError
from .norm import BFBatchNorm2d

#: Layers whose bias is dropped.
_WITH_BIAS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)

#: Layers kept as they are: positively homogeneous and without additive constants.
_HOMOGENEOUS = (
    BFBatchNorm2d,
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Upsample,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.Flatten,
    nn.Unflatten,
)

#: Layers refused, with the reason.
_REFUSED = {
    nn.LayerNorm: "subtracts a mean and adds a shift (scale invariant, not homogeneous)",
    nn.GroupNorm: "subtracts a mean and adds a shift (scale invariant, not homogeneous)",
    nn.InstanceNorm1d: "subtracts a mean (scale invariant, not homogeneous)",
    nn.InstanceNorm2d: "subtracts a mean (scale invariant, not homogeneous)",
    nn.BatchNorm1d: "is a 1-d batch norm (only BatchNorm2d has a bias-free version here)",
    nn.BatchNorm3d: "is a 3-d batch norm (only BatchNorm2d has a bias-free version here)",
    nn.Sigmoid: "is not positively homogeneous (sigmoid(0) = 1/2 is a constant)",
    nn.Tanh: "is not positively homogeneous",
    nn.ELU: "is not positively homogeneous",
    nn.GELU: "is not positively homogeneous",
    nn.SiLU: "is not positively homogeneous",
    nn.Softplus: "is not positively homogeneous (softplus(0) = log 2 is a constant)",
    nn.Embedding: "adds learned constants",
}


def _bias_free_norm(norm: nn.BatchNorm2d) -> BFBatchNorm2d:
    """BFBatchNorm2d with the scale and running variance of ``norm`` (its mean and shift
    are dropped: they are the additive constants)."""
    converted = BFBatchNorm2d(
        norm.num_features, eps=norm.eps, momentum=norm.momentum or 0.1, affine=norm.affine
    )
    with torch.no_grad():
        if norm.affine:
            converted.weight.copy_(norm.weight)
        if norm.running_var is not None:
            converted.running_var.copy_(norm.running_var)
    converted.train(norm.training)
    return converted.to(device=norm.weight.device if norm.affine else None)


def _convert(module: nn.Module, prefix: str) -> None:
    for name, child in list(module.named_children()):
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _bias_free_norm(child))
            continue
        for refused, reason in _REFUSED.items():
            if isinstance(child, refused):
                raise UnsupportedLayerError(
                    f"layer {path} ({type(child).__name__}) {reason}; make_bias_free cannot "
                    "convert it"
                )
        if isinstance(child, _WITH_BIAS):
            child.bias = None
        elif not isinstance(child, _HOMOGENEOUS):
            own = [n for n, _ in child.named_parameters(recurse=False)]
            if own:
                raise UnsupportedLayerError(
                    f"layer {path} ({type(child).__name__}) has parameters "
                    f"({', '.join(own)}) make_bias_free does not know how to make bias-free"
                )
        _convert(child, path)


def make_bias_free(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every additive constant of its layers removed.

    Parameters
    ----------
    module : nn.Module
        Any network; it is not modified.

    Returns
    -------
    nn.Module
        A deep copy where convolution and linear layers have no bias and every
        ``BatchNorm2d`` is a :class:`~filterscope.nn.BFBatchNorm2d` keeping its scale
        and running variance; the weights that remain are the original ones (retrain
        or fine-tune for good results). A registered architecture
        (:class:`~filterscope.models.base.CNNDenoiser`) gets ``bias = False`` in its
        attributes and ``config``, so that it saves and reloads as the bias-free
        variant.

    Raises
    ------
    UnsupportedLayerError
        A layer that adds constants or is not positively homogeneous (LayerNorm,
        GroupNorm, sigmoid, GELU...), or an unknown layer with its own parameters; the
        message names the layer.

    Notes
    -----
    Constants written in a ``forward`` method are invisible here; confirm the result
    with :func:`check_homogeneous`.
    """
    if not isinstance(module, nn.Module):
        raise UnsupportedLayerError(f"make_bias_free needs a torch.nn.Module, got {module!r}")
    converted = copy.deepcopy(module)
    if isinstance(converted, nn.BatchNorm2d):
        return _bias_free_norm(converted)
    if isinstance(converted, _WITH_BIAS):
        converted.bias = None
        return converted
    _convert(converted, "")
    from ..models.base import CNNDenoiser

    if isinstance(converted, CNNDenoiser):
        # A registered architecture is now its own bias-free variant: say so, so that
        # save_model / load_checkpoint rebuild it as one.
        converted.bias = False
        converted.config = {**converted.config, "bias": False}
    return converted


@dataclass(frozen=True)
class Homogeneity:
    """What :func:`check_homogeneous` measured.

    Attributes
    ----------
    alphas : tuple of float
        Scale factors ``a``.
    errors : tuple of float
        ``‖f(a y) − a f(y)‖ / ‖a f(y)‖`` for each ``a``.
    tolerance : float
        The bound :attr:`passed` compares against.
    """

    alphas: tuple[float, ...]
    errors: tuple[float, ...]
    tolerance: float

    @property
    def max_error(self) -> float:
        return max(self.errors)

    @property
    def passed(self) -> bool:
        """True when every relative error is at most :attr:`tolerance`."""
        return self.max_error <= self.tolerance

    def to_json(self) -> dict:
        return {
            "alphas": list(self.alphas),
            "errors": list(self.errors),
            "max_error": self.max_error,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


def check_homogeneous(
    model: nn.Module,
    y: torch.Tensor | None = None,
    *,
    alphas: Sequence[float] = (0.5, 3.0),
    sigma: float | None = None,
    tolerance: float = 1e-5,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> Homogeneity:
    """Measure how far ``model`` is from positive homogeneity, ``f(a y) = a f(y)``.

    Parameters
    ----------
    model : nn.Module
        A denoiser, ``model(y, sigma) -> x_hat``, or any module ``model(y) -> x_hat``;
        run in eval mode on a float64 copy (it is not modified).
    y : Tensor, shape (B, C, H, W), optional
        Input; default a seeded uniform ``(1, C, 37, 31)`` image, ``C`` the model's
        ``in_channels`` (1 when it takes any).
    alphas : sequence of float, keyword-only
        Positive scale factors (default 0.5 and 3).
    sigma : float or None, keyword-only
        Passed to the model with each input, multiplied by ``a`` with the input (a
        non-blind model is homogeneous in ``(y, σ)`` jointly).
    tolerance : float, keyword-only
        Bound on the relative error for :attr:`Homogeneity.passed` (1e-5 suits float64).
    dtype : torch.dtype, keyword-only
        Arithmetic of the check (float64: round-off far below the tolerance).
    seed : int, keyword-only
        Seed of the default input.

    Returns
    -------
    Homogeneity
        The relative error at each ``a``.
    """
    if not alphas or min(alphas) <= 0:
        raise UnsupportedLayerError(f"alphas must be positive, got {list(alphas)}")
    from ..models.adapter import as_denoiser

    # A plain module (forward(y) only) is called through the registry's adapter.
    net = as_denoiser(copy.deepcopy(model).to(dtype).eval())
    if y is None:
        channels = net.in_channels or 1
        generator = torch.Generator().manual_seed(seed)
        y = torch.rand(1, channels, 37, 31, generator=generator, dtype=dtype)
    y = y.to(dtype)
    errors = []
    with torch.no_grad():
        base = net(y, sigma)
        for alpha in alphas:
            scaled = net(alpha * y, None if sigma is None else alpha * sigma)
            reference = alpha * base
            errors.append(float((scaled - reference).norm() / reference.norm().clamp_min(1e-300)))
    return Homogeneity(tuple(float(a) for a in alphas), tuple(errors), float(tolerance))


__all__ = ["Homogeneity", "check_homogeneous", "make_bias_free"]
