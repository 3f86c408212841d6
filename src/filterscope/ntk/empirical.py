"""Finite-width vanilla ReLU CNNs and their empirical NTK / NNGP (torch.func).

The network is the one of :mod:`filterscope.ntk.kernels` (equations 1–3) with ``width``
channels per hidden layer, written in the NTK parameterisation: every weight is
``w = √(σ_w² / fan_in) · ω`` with ``ω ~ N(0, 1)`` and derivatives are taken with respect
to ``ω``. This is gradient descent on the standard (He-initialised) network with a
per-layer learning rate ``η_ℓ = σ_w² / fan_in_ℓ``; when every trained layer has the same
fan-in ``r² c`` (``output_kernel = r``, or ``depth = 2``) it is one global rate
``η = σ_w² / (r² c)``, the ``O(1/c)`` rate of Section 4. As ``width → ∞`` the empirical
kernels converge to the closed forms, with fluctuations of order ``width^(-1/2)``.

The first layer is frozen by default, matching the paper's base case (equation 12).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp, vjp, vmap

from ..noise import _generator
from .kernels import CNNKernel, as_image


class VanillaCNN(torch.nn.Module):
    """Vanilla ReLU CNN of equations 1–3 in the NTK parameterisation (float64).

    Parameters
    ----------
    in_channels : int
        1 (gray) or 3 (RGB).
    width : int
        Channels ``c`` of every hidden layer.
    depth : int, keyword-only
        Convolution layers ``L ≥ 2``.
    kernel_size : int, keyword-only
        Odd ``r`` of the first and hidden layers.
    output_kernel : int or None, keyword-only
        Odd side of the output layer (1: equation 16; None: ``kernel_size``).
    padding : {"circular", "zero"}, keyword-only
    generator : int or torch.Generator, keyword-only
        Seed of the ``N(0, 1)`` weights ``ω``.
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        *,
        depth: int = 2,
        kernel_size: int = 3,
        output_kernel: int | None = 1,
        padding: str = "circular",
        sigma_w2: float = 2.0,
        generator: int | torch.Generator | None = None,
    ):
        super().__init__()
        spec = CNNKernel(depth, kernel_size, output_kernel, padding)
        self.spec = spec
        self.sigma_w2 = sigma_w2
        gen = _generator(generator)
        shapes = []
        for ell in range(1, depth + 1):
            c_in = in_channels if ell == 1 else width
            c_out = 1 if ell == depth else width
            r = spec.layer_kernel(ell)
            shapes.append((c_out, c_in, r, r))
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64)) for s in shapes
        )

    def _conv(self, x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        _, c_in, r, _ = omega.shape
        p = r // 2
        if p:
            mode = "circular" if self.spec.padding == "circular" else "constant"
            x = F.pad(x, (p, p, p, p), mode=mode)
        return F.conv2d(x, omega * math.sqrt(self.sigma_w2 / (c_in * r * r)))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """``φ(a^{L-1})``: the last hidden activations, shape ``(B, c, H, W)``."""
        a = self._conv(x, self.weights[0])
        for ell in range(1, len(self.weights) - 1):  # index: slicing would copy parameters
            a = self._conv(F.relu(a), self.weights[ell])
        return F.relu(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``z(x)``, shape ``(B, 1, H, W)``."""
        return self._conv(self.hidden(x), self.weights[-1])


def _prepare(image, spec_kwargs) -> tuple[torch.Tensor, int, int]:
    x = as_image(image)
    c, h, w = x.shape
    CNNKernel(**spec_kwargs).check_image(h, w)
    return x[None], h, w


def empirical_ntk(
    image: torch.Tensor | np.ndarray,
    *,
    width: int,
    depth: int = 2,
    kernel_size: int = 3,
    output_kernel: int | None = 1,
    padding: str = "circular",
    train_first_layer: bool = False,
    generator: int | torch.Generator | None = 0,
    chunk: int = 64,
) -> torch.Tensor:
    """Empirical NTK ``Θ = (∂z/∂ω)(∂z/∂ω)ᵀ`` of one random finite network (equation 10).

    Parameters
    ----------
    image : Tensor or ndarray, shape (H, W), (C, H, W) or (1, C, H, W)
        Network input (``x = y``).
    width : int, keyword-only
        Hidden channels ``c``.
    depth, kernel_size, output_kernel, padding, train_first_layer : keyword-only
        As in :func:`filterscope.ntk.kernels.kernel_matrix`.
    generator : int or torch.Generator, keyword-only
        Seed of the initial weights.
    chunk : int, keyword-only
        Output pixels per vectorised vjp/jvp pass.

    Returns
    -------
    Tensor, shape (d, d), float64
        Converges to ``kernel_matrix(image, kind="ntk", ...)`` as ``width → ∞``.

    Notes
    -----
    Column ``j`` is ``J (Jᵀ e_j)``: one vjp and one jvp, vectorised over ``chunk``
    columns, so the ``d × P`` Jacobian is never stored. Cost ``O(d)`` forward/backward
    passes; memory ``O(chunk · P)``.
    """
    opts = dict(depth=depth, kernel_size=kernel_size, output_kernel=output_kernel, padding=padding)
    x, h, w = _prepare(image, opts)
    net = VanillaCNN(x.shape[1], width, generator=generator, **opts)
    names = [f"weights.{i}" for i in range(depth)]
    params = {n: p.detach() for n, p in zip(names, net.weights, strict=True)}
    trained = names if train_first_layer else names[1:]
    frozen = {n: params[n] for n in names if n not in trained}
    primals = tuple(params[n] for n in trained)

    def f(*ws):
        out = functional_call(net, {**frozen, **dict(zip(trained, ws, strict=True))}, (x,))
        return out.reshape(-1)

    _, pullback = vjp(f, *primals)

    def column(e):
        grads = pullback(e)
        return jvp(f, primals, grads)[1]

    d = h * w
    eye = torch.eye(d, dtype=torch.float64)
    cols = [vmap(column)(eye[s : s + chunk]) for s in range(0, d, chunk)]
    theta = torch.cat(cols, 0).T
    return 0.5 * (theta + theta.T)


def empirical_nngp(
    image: torch.Tensor | np.ndarray,
    *,
    width: int,
    depth: int = 2,
    kernel_size: int = 3,
    output_kernel: int | None = 1,
    padding: str = "circular",
    generator: int | torch.Generator | None = 0,
) -> torch.Tensor:
    """Monte-Carlo NNGP covariance of the output from one random network.

    ``K̂_L = A_out((σ_w² / c) Σ_ch φ(a^{L-1}_ch) φ(a^{L-1}_ch)ᵀ)`` — the covariance of the
    output over the output layer's weights given the hidden layers' draw, an unbiased
    estimate of ``V(K_{L-1})`` pushed through the output layer; it converges to
    ``kernel_matrix(image, kind="nngp", ...)`` at rate ``width^(-1/2)``.

    Returns
    -------
    Tensor, shape (d, d), float64
    """
    opts = dict(depth=depth, kernel_size=kernel_size, output_kernel=output_kernel, padding=padding)
    x, h, w = _prepare(image, opts)
    net = VanillaCNN(x.shape[1], width, generator=generator, **opts)
    from .kernels import patch_average

    with torch.no_grad():
        act = net.hidden(x)[0].reshape(width, h * w)
    cov = (net.sigma_w2 / width) * act.T @ act
    out = patch_average(cov.reshape(h, w, h, w), net.spec.out_r, padding=padding)
    return out.reshape(h * w, h * w)


def relative_frobenius_error(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """``‖estimate - reference‖_F / ‖reference‖_F``."""
    return float(torch.linalg.norm(estimate - reference) / torch.linalg.norm(reference))
