"""The full ``d × d`` NNGP/NTK matrix by the layer recursion (equations 11–15), and
the ReLU arc-cosine maps and patch averages it is built from; small images only. See
:mod:`filterscope.ntk.kernels`."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .spec import MAX_MATRIX_PIXELS, SIGMA_W2, CNNKernel, as_image

# --------------------------------------------------------------------------- ReLU maps


def relu_maps(
    cov: torch.Tensor,
    var_i: torch.Tensor,
    var_j: torch.Tensor,
    *,
    sigma_w2: float = SIGMA_W2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The arc-cosine maps ``V`` and ``V'`` of ReLU, equations 14–15, entry-wise.

    For ``(h_i, h_j) ~ N(0, [[var_i, cov], [cov, var_j]])``:

    ``V = σ_w² E[relu(h_i) relu(h_j)] = σ_w² √(var_i var_j) (sin φ + (π - φ) cos φ) / (2π)``

    ``V' = σ_w² E[1(h_i > 0) 1(h_j > 0)] = σ_w² (π - φ) / (2π)``

    with ``φ = arccos(cov / √(var_i var_j))`` (Cho & Saul's arc-cosine kernels).

    Parameters
    ----------
    cov : Tensor
        Covariances, any shape.
    var_i, var_j : Tensor
        Variances broadcastable to ``cov``; zero variances give ``V = 0`` (and ``φ = π/2``).
    sigma_w2 : float, keyword-only
        Weight variance factor (2: He initialisation).

    Returns
    -------
    (V, V_prime) : tuple of Tensor
        Same shape as ``cov``.
    """
    norm = torch.sqrt(var_i * var_j)
    positive = norm > 0
    cos = torch.where(positive, cov / torch.where(positive, norm, 1.0), 0.0).clamp(-1.0, 1.0)
    phi = torch.arccos(cos)
    v = (sigma_w2 / (2 * math.pi)) * norm * (torch.sin(phi) + (math.pi - phi) * cos)
    v_prime = (sigma_w2 / (2 * math.pi)) * (math.pi - phi)
    return v, v_prime


def _shift(t: torch.Tensor, dim: int, delta: int, padding: str) -> torch.Tensor:
    """``out[..., h, ...] = t[..., h + delta, ...]`` along ``dim`` (wrap or zero fill)."""
    if delta == 0:
        return t
    if padding == "circular":
        return torch.roll(t, -delta, dims=dim)
    n = t.shape[dim]
    out = torch.zeros_like(t)
    if abs(delta) >= n:
        return out
    if delta > 0:
        out.narrow(dim, 0, n - delta).copy_(t.narrow(dim, delta, n - delta))
    else:
        out.narrow(dim, -delta, n + delta).copy_(t.narrow(dim, 0, n + delta))
    return out


def patch_average(matrix: torch.Tensor, r: int, *, padding: str = "circular") -> torch.Tensor:
    """The operator ``A`` of equation 13 on a full pixel-by-pixel matrix.

    ``A(Σ)[i, j] = (1/r²) Σ_α Σ[i + α, j + α]`` over the ``r × r`` offsets ``α``: the
    covariance of ``w * h`` for a convolution with i.i.d. weights of variance ``1/r²``
    applied to a field ``h`` of covariance ``Σ``. Terms that fall outside the image are
    wrapped (``circular``) or zero (``zero`` padding).

    Parameters
    ----------
    matrix : Tensor, shape (H, W, H, W)
        Σ with the two pixel indices unflattened.
    r : int
        Odd kernel side; ``r = 1`` is the identity.
    padding : {"circular", "zero"}, keyword-only

    Returns
    -------
    Tensor, shape (H, W, H, W)

    Notes
    -----
    Separable: ``2r`` shifted copies, ``O(r · d²)`` time.
    """
    if r == 1:
        return matrix
    p = r // 2
    out = matrix
    for dims in ((0, 2), (1, 3)):
        acc = torch.zeros_like(out)
        for delta in range(-p, p + 1):
            acc += _shift(_shift(out, dims[0], delta, padding), dims[1], delta, padding)
        out = acc / r
    return out


def _box_mean(image: torch.Tensor, r: int, padding: str) -> torch.Tensor:
    """``(1/r²) Σ_α image[i + α]`` for an ``(..., H, W)`` tensor (diagonal of ``A``)."""
    if r == 1:
        return image
    p = r // 2
    out = image
    for dim in (-2, -1):
        acc = torch.zeros_like(out)
        for delta in range(-p, p + 1):
            acc += _shift(out, out.dim() + dim, delta, padding)
        out = acc / r
    return out


def image_patches(image: torch.Tensor, r: int, *, padding: str = "circular") -> torch.Tensor:
    """All ``r × r`` patches of a ``(C, H, W)`` image, one row per pixel.

    Returns
    -------
    Tensor, shape (H·W, C·r²)
        Row ``i`` is the patch centred at pixel ``i`` (row-major pixel order), padded
        circularly or with zeros at the border.
    """
    c, h, w = image.shape
    p = r // 2
    x = image[None]
    if p:
        x = F.pad(x, (p, p, p, p), mode="circular" if padding == "circular" else "constant")
    return F.unfold(x, r).reshape(c * r * r, h * w).T.contiguous()


# --------------------------------------------------------------------------- full matrix


def _input_gram(image: torch.Tensor, spec: CNNKernel) -> torch.Tensor:
    c, h, w = image.shape
    d = h * w
    if spec.input == "noise":
        return torch.eye(d, dtype=torch.float64).reshape(h, w, h, w)
    flat = image.reshape(c, d)
    return (flat.T @ flat / c).reshape(h, w, h, w)


def kernel_matrix(
    image: torch.Tensor | np.ndarray,
    *,
    depth: int = 2,
    kernel_size: int = 11,
    output_kernel: int | None = 1,
    padding: str = "circular",
    kind: str = "ntk",
    input: str = "image",
    train_first_layer: bool = False,
    max_pixels: int = MAX_MATRIX_PIXELS,
) -> torch.Tensor:
    """The full ``d × d`` NTK (or NNGP) matrix of a vanilla ReLU CNN, equations 11–15.

    Parameters
    ----------
    image : Tensor or ndarray, shape (H, W), (C, H, W) or (1, C, H, W)
        The network input ``x = y`` (values on the [0, 1] scale; the kernel is
        1-homogeneous in ``G``, so scaling the image scales the matrix by the square).
        Ignored except for its size when ``input="noise"``.
    depth, kernel_size, output_kernel, padding, kind, input, train_first_layer
        Keyword-only; see :class:`CNNKernel`.
    max_pixels : int, keyword-only
        Refuse larger images (the matrix needs ``8 d²`` bytes; 64×64 pixels = 134 MB).

    Returns
    -------
    Tensor, shape (d, d), float64
        Symmetric positive semi-definite, ``d = H·W``, pixels in row-major order.

    Raises
    ------
    InputError
        Bad architecture, an image smaller than the kernel or larger than ``max_pixels``.
    """
    spec = CNNKernel(depth, kernel_size, output_kernel, padding, kind, input, train_first_layer)
    x = as_image(image)
    _, h, w = x.shape
    spec.check_image(h, w)
    if h * w > max_pixels:
        raise InputError(
            f"image has {h * w} pixels; the full matrix is limited to {max_pixels} "
            "(use Nyström columns for larger images)"
        )
    return kernel_matrix_spec(x, spec)


def kernel_matrix_spec(image: torch.Tensor, spec: CNNKernel) -> torch.Tensor:
    """:func:`kernel_matrix` for a ``(C, H, W)`` float64 image and a :class:`CNNKernel`."""
    _, h, w = image.shape
    d = h * w
    s2 = spec.sigma_w2
    k = s2 * patch_average(_input_gram(image, spec), spec.kernel_size, padding=spec.padding)
    theta = k.clone() if spec.train_first_layer else None
    for ell in range(2, spec.depth + 1):
        r = spec.layer_kernel(ell)
        diag = torch.diagonal(k.reshape(d, d)).reshape(h, w)
        v, v_prime = relu_maps(k, diag[:, :, None, None], diag[None, None], sigma_w2=s2)
        del k
        k_new = patch_average(v, r, padding=spec.padding)
        if spec.kind == "ntk":
            if theta is None:
                theta = k_new.clone()
            else:
                theta = k_new + patch_average(v_prime * theta, r, padding=spec.padding)
        k = k_new
    out = theta if spec.kind == "ntk" else k
    out = out.reshape(d, d)
    return 0.5 * (out + out.T)
