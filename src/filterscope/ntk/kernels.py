"""Closed-form NNGP and neural tangent kernels of a vanilla ReLU CNN (Tachella et al. 2021).

The network (equations 1–3 of the paper) has ``depth`` = L convolution layers: a first
layer from the ``C`` input channels (1 gray, 3 RGB) to ``c`` channels, ``L - 2`` hidden
``c → c`` layers with ``r × r`` kernels, and an output layer ``c → 1`` whose kernel is
``r × r`` or ``1 × 1`` (``output_kernel``). ReLU activations, no biases, He
initialisation (weight variance ``σ_w² / fan_in`` with ``σ_w² = 2``).

In the infinite-channel limit ``c → ∞`` the output is a Gaussian process whose covariance
(the NNGP kernel) and whose neural tangent kernel (NTK) follow the recursion of equations
11–15, computed here exactly, in float64:

.. math::

    K_1 = σ_w² \\mathcal{A}(G),\\qquad Θ_1 = 0,

    K_ℓ = \\mathcal{A}_ℓ(V(K_{ℓ-1})),\\qquad
    Θ_ℓ = K_ℓ + \\mathcal{A}_ℓ(V'(K_{ℓ-1}) ∘ Θ_{ℓ-1}),\\qquad ℓ = 2, …, L,

where ``G = Σ_ch x_ch x_chᵀ / C`` is the pixel Gram matrix of the input (the image
``x = y``, or ``G = I`` for i.i.d. noise with many channels, equation 17),
:math:`\\mathcal{A}` is the patch-average operator of equation 13 (``r × r`` for the
first and hidden layers; ``output_kernel × output_kernel`` for layer ``L``) and ``V``,
``V'`` are the arc-cosine maps of ReLU (equations 14–15). ``Θ_1 = 0`` is the paper's base
case (equation 12): in the standard parameterisation with a learning rate ``η = O(1/c)``
the first layer's weights (fan-in ``r² C``, not ``r² c``) contribute ``O(1/c)`` to ``ηΘ``
and drop out; ``train_first_layer=True`` adds them back (``Θ_1 = K_1``, the
NTK-parameterisation convention of Arora et al. 2019).

Which variant is which equation:

- ``depth=2, output_kernel=1``: equation 16 exactly (up to the constant factor
  ``σ_w² / r²``), the one-hidden-layer kernel of Figure 2 and of the Nyström row of
  Table 1; equation 12 with no averaging after the ReLU. NNGP and NTK coincide.
- ``depth=2, output_kernel=r``: equations 11–12 read with an ``r × r`` output layer
  (``K_2 = A(V(K_1))``), a smoother kernel with a ``(2r - 1)²`` receptive field.
- ``depth ≥ 3``: the full recursion (Figure 6).
- ``input="noise"``: equation 17; the matrix has one value on the diagonal and another
  off it (circular padding) and does not depend on the image.

The filter of the paper is ``W = ηΘ``; the scale ``η`` is fixed later (by default so that
the largest eigenvalue of ``W`` is 1, see :mod:`filterscope.ntk.nystrom`).

Costs: the full ``d × d`` matrix (``d = H·W`` pixels) needs ``O(L · r · d²)`` time and a
few ``d × d`` float64 arrays (64×64 pixels: 134 MB each), so it is meant for small
images. A set of ``m`` columns costs ``O(m · s² · d · r² C)`` with ``s`` the side of the
window of layer-1 columns each output column depends on: ``s = 1`` for the
one-hidden-layer ``1 × 1``-output kernel (a single patch-by-patch product), ``s = r`` for
``depth=2, output_kernel=r``; memory is bounded by the ``chunk`` argument.

References
----------
J. Tachella, J. Tang, M. Davies, "The neural tangent link between CNN denoisers and
non-local filters", CVPR 2021, Sections 3–4, equations 11–17.
S. Arora et al., "On exact computation with an infinitely wide neural net", NeurIPS 2019.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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


# --------------------------------------------------------------------------- columns


def _layer1_diag(image: torch.Tensor, spec: CNNKernel) -> torch.Tensor:
    c, h, w = image.shape
    if spec.input == "noise":
        ones = torch.ones(h, w, dtype=torch.float64)
        return spec.sigma_w2 * _box_mean(ones, spec.kernel_size, spec.padding)
    return spec.sigma_w2 * _box_mean((image * image).sum(0) / c, spec.kernel_size, spec.padding)


def _int8_product(left: torch.Tensor, right: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """``left @ right`` of int8 matrices into the int32 ``out``, exactly.

    ``torch._int_mm`` is a private operator (fast on CPUs with VNNI) that a PyTorch
    version or a device may lack or refuse for some shapes; the float64 product gives
    the same integers (every partial sum is far below 2**53), only more slowly.
    """
    int_mm = getattr(torch, "_int_mm", None)
    if int_mm is not None:
        try:
            return int_mm(left, right, out=out)
        except (RuntimeError, NotImplementedError):
            pass
    return out.copy_(torch.mm(left.double(), right.double()))


class ColumnEngine:
    """Columns of the NTK/NNGP matrix of one image, computed without the full matrix.

    Parameters
    ----------
    image : Tensor, shape (C, H, W), float64
    spec : CNNKernel

    Notes
    -----
    For an output column ``j`` the recursion needs, at layer ``ℓ``, the columns at the
    pixels ``j + β`` for ``β`` in a window whose side shrinks from :attr:`CNNKernel.column_window`
    at layer 1 to 1 at the output (equation 13 averages ``K[i+α, j+α]``). The window of
    each column is kept as a ``(s, s, H, W)`` stack; the diagonal ``K_ℓ[i, i]`` needed by
    ``V`` follows its own local recursion. Cost per column: ``O(s² d (r² C + L r))``;
    memory per column ``O(s² d)``.
    """

    def __init__(self, image: torch.Tensor, spec: CNNKernel):
        self.image = image
        self.spec = spec
        c, h, w = image.shape
        self.shape = (h, w)
        self.d = h * w
        self.pairwise = spec.pairwise
        self._patch_scale = math.sqrt(spec.sigma_w2 / (c * spec.kernel_size**2))
        self._patches = None  # all patches, float64, built on first use (see `patches`)
        self.diag1 = _layer1_diag(image, spec)
        self._norms = None  # sqrt(diag K_1), float64
        self._unit: dict[str, tuple] = {}  # unit patches per precision (see cosines)
        self._column_patches: tuple | None = None  # (key, column side, column scales)
        self._right: tuple | None = None  # (weights, float32 weights times column norms)
        self._buffers: dict[str, torch.Tensor] = {}  # scratch of factor_rows()
        # diagonals of K_ℓ for ℓ = 1..L-1 (for V at layer ℓ+1)
        self.diags = [self.diag1]
        for ell in range(2, spec.depth):
            vd = 0.5 * spec.sigma_w2 * self.diags[-1]
            self.diags.append(_box_mean(vd, spec.layer_kernel(ell), spec.padding))

    @property
    def patches(self) -> torch.Tensor:
        """All scaled ``r × r`` input patches, ``(d, C r²)`` float64 (``8 d C r²`` bytes)."""
        if self._patches is None:
            r, padding = self.spec.kernel_size, self.spec.padding
            self._patches = image_patches(self.image, r, padding=padding) * self._patch_scale
        return self._patches

    def patches_at(self, pixels: torch.Tensor) -> torch.Tensor:
        """Scaled patches at chosen pixels, ``(n, C r²)`` float64 (rows of :attr:`patches`)."""
        if self._patches is not None:
            return self._patches[pixels]
        c, h, w = self.image.shape
        r = self.spec.kernel_size
        p = r // 2
        padded = self.image[None]
        if p:
            mode = "circular" if self.spec.padding == "circular" else "constant"
            padded = F.pad(padded, (p, p, p, p), mode=mode)
        pixels = torch.as_tensor(pixels, dtype=torch.long).reshape(-1)
        off = torch.arange(r)
        rows = (pixels // w)[:, None, None] + off[None, :, None]
        cols = (pixels % w)[:, None, None] + off[None, None, :]
        out = padded[0][:, rows, cols]  # (C, n, r, r), the order of F.unfold
        return out.permute(1, 0, 2, 3).reshape(-1, c * r * r) * self._patch_scale

    # -- fast path: entries that only depend on two patches --------------------------
    def block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Entries ``W[rows, cols]`` for the pairwise kernel (depth 2, 1×1 output).

        ``O(|rows| · |cols| · r² C)`` — a single matrix product of patches.
        """
        if not self.spec.pairwise:
            raise ValueError("block() needs the pairwise kernel (depth 2, output_kernel 1)")
        d1 = self.diag1.reshape(-1)
        return _relu_block(
            self.patches_at(rows) @ self.patches_at(cols).T, d1[rows], d1[cols], self.spec.sigma_w2
        )

    def _unit_patches(self, precision: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unit-norm patches for the fast paths, built once per precision.

        ``"single"``: float32 ``(d, C r²)`` and no scale. ``"int8"``: each patch rounded
        to int8 with its own scale (``max |entry| / 127``), so that ``ρ_ij`` is an exact
        int32 product times ``s_i s_j``.
        """
        if self._norms is None:
            self._norms = torch.sqrt(self.diag1.reshape(-1))
        if precision not in self._unit:
            norms = self._norms
            inverse = torch.where(norms > 0, self._patch_scale / norms, 0.0).to(torch.float32)
            unit = image_patches(
                self.image.to(torch.float32), self.spec.kernel_size, padding=self.spec.padding
            ).mul_(inverse[:, None])
            if precision == "single":
                self._unit[precision] = (unit, None)
            else:
                scale = unit.abs().amax(1).div_(127.0)
                scale = torch.where(scale > 0, scale, 1.0)
                quantized = unit.div_(scale[:, None]).round_().to(torch.int8)
                self._unit[precision] = (quantized, scale)
        return self._unit[precision]

    def _workspace(self, name: str, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """A ``(rows, cols)`` scratch array reused across row blocks.

        Fresh 10 MB blocks cost more than the arithmetic on them: the allocator returns
        them to the system and every reuse page-faults (measured: a third of the time).
        """
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < rows * cols:
            buf = torch.empty(rows * cols, dtype=dtype)
            self._buffers[name] = buf
        return buf[: rows * cols].view(rows, cols)

    def cosines(
        self,
        rows,
        cols: torch.Tensor,
        *,
        precision: str = "single",
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Correlations ``ρ_ij`` of the layer-1 pre-activations, float32, in [-1, 1].

        ``rows`` is a slice or a LongTensor of pixels, ``cols`` a LongTensor; pairwise
        kernel only. ``"single"``: a float32 product (about ``1e-7`` absolute).
        ``"int8"``: an exact int32 product of the int8 patches (``torch._int_mm``, about 3.5
        times faster than float32 on CPUs with VNNI), about ``1e-3`` absolute; the
        rounding is a fixed function of the image, so the two filters of Monte-Carlo SURE
        differ by the perturbation, not by rounding noise (measured: the same ``t``).
        ``out`` (float32, the result's shape) receives the result.
        """
        if precision not in ("single", "int8"):
            raise ValueError(f"precision must be 'single' or 'int8', got {precision!r}")
        unit, scale = self._unit_patches(precision)
        cols = torch.as_tensor(cols, dtype=torch.long)
        key = (precision, cols)
        cached = self._column_patches
        if cached is None or cached[0][0] != precision or not torch.equal(cached[0][1], cols):
            # gathered once per build: factor_rows() runs once per row block with the
            # same columns, and gathering each time cost a quarter of the products
            side = unit[cols].T.contiguous()
            self._column_patches = (key, side, None if scale is None else scale[cols])
        _, side, col_scale = self._column_patches
        left = unit[rows]
        if out is None:
            out = torch.empty(left.shape[0], side.shape[1], dtype=torch.float32)
        if scale is None:
            torch.mm(left, side, out=out)
        else:
            products = self._workspace("int32", left.shape[0], side.shape[1], torch.int32)
            _int8_product(left, side, out=products)
            out.copy_(products).mul_(col_scale).mul_(scale[rows, None])
        return out.clamp_(-1.0, 1.0)

    def quantized_block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Entries ``W[rows, cols]`` (float64) from the int8 correlations of :meth:`cosines`.

        The Nyström core ``W_JJ`` of ``precision="int8"``: the same rounding as the rows of
        ``C`` (:meth:`factor_rows`), so that ``C[J] = W_JJ`` as in the exact method.
        """
        rows = torch.as_tensor(rows, dtype=torch.long)
        cols = torch.as_tensor(cols, dtype=torch.long)
        rho = self.cosines(rows, cols, precision="int8")
        scale = 0.5 * self.spec.sigma_w2 / math.pi  # V = (σ_w²/2) n_i n_j κ(ρ)
        out = _arccos1(rho).to(torch.float64).mul_(scale * self._norms[rows, None])
        return out.mul_(self._norms[None, cols])

    def factor_rows(
        self,
        start: int,
        stop: int,
        cols: torch.Tensor,
        weights: torch.Tensor,
        *,
        precision: str = "single",
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``W[start:stop, cols] @ weights`` in float32 (pairwise kernel only).

        The fast path of the Nyström product: the cosines ``ρ`` of unit-norm patches
        (:meth:`cosines`, float32 or int8 products), the arc-cosine map, and the patch
        norms folded into the rows and into ``weights``; scratch arrays are reused from
        one call to the next. Relative error about ``1e-6`` against :meth:`block`
        (float64) for ``"single"``, about ``1e-3`` for ``"int8"``.

        Parameters
        ----------
        start, stop : int
            Row range (pixels).
        cols : LongTensor, shape (m,)
        weights : Tensor, shape (m, k)
        precision : {"single", "int8"}, keyword-only
        out : Tensor, shape (stop - start, k), float32, contiguous, keyword-only
            Receives the result.

        Returns
        -------
        Tensor, shape (stop - start, k), float32
        """
        if not self.spec.pairwise:
            raise ValueError("factor_rows() needs the pairwise kernel (depth 2, output_kernel 1)")
        cols = torch.as_tensor(cols, dtype=torch.long)
        n, m = stop - start, cols.numel()
        rho = self.cosines(
            slice(start, stop),
            cols,
            precision=precision,
            out=self._workspace("rho", n, m, torch.float32),
        )
        kappa = _arccos1(
            rho,
            out=self._workspace("kappa", n, m, torch.float32),
            scratch=self._workspace("phi", n, m, torch.float32),
        )
        if self._right is None or self._right[0] is not weights:
            scale = 0.5 * self.spec.sigma_w2 / math.pi  # V = (σ_w²/2) n_i n_j κ(ρ)
            right = scale * self._norms[cols, None] * weights.to(torch.float64)
            self._right = (weights, right.to(torch.float32))
        if out is None:
            out = torch.empty(n, self._right[1].shape[1], dtype=torch.float32)
        torch.mm(kappa, self._right[1], out=out)
        return out.mul_(self._norms[start:stop, None].to(torch.float32))

    def row_block(self, start: int, stop: int, cols: torch.Tensor) -> torch.Tensor:
        """Rows ``start:stop`` of the columns ``cols`` (pairwise kernel only)."""
        return self.block(torch.arange(start, stop), cols)

    # -- general path ------------------------------------------------------------------
    def columns(self, cols: torch.Tensor) -> torch.Tensor:
        """Columns ``W[:, cols]``, shape ``(d, len(cols))``."""
        cols = torch.as_tensor(cols, dtype=torch.long).reshape(-1)
        if self.spec.pairwise:
            return self.block(torch.arange(self.d), cols)
        spec = self.spec
        h, w = self.shape
        s = spec.column_window
        rad = s // 2
        jy, jx = cols // w, cols % w
        off = torch.arange(-rad, rad + 1)
        qy = jy[:, None, None] + off[None, :, None]  # (m, s, 1)
        qx = jx[:, None, None] + off[None, None, :]  # (m, 1, s)
        qy, qx = torch.broadcast_tensors(qy, qx)  # (m, s, s)
        if spec.padding == "circular":
            valid = torch.ones_like(qy, dtype=torch.bool)
            qy, qx = qy % h, qx % w
        else:
            valid = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
            qy, qx = qy.clamp(0, h - 1), qx.clamp(0, w - 1)
        q_grid = qy * w + qx  # (m, s, s)
        q = q_grid.reshape(-1)
        m = cols.numel()
        # layer 1: K_1[:, q]
        if spec.input == "image":
            k = (self.patches @ self.patches[q].T).T.reshape(m, s, s, h, w)
        else:
            k = torch.zeros(m * s * s, self.d, dtype=torch.float64)
            k[torch.arange(m * s * s), q] = 1.0
            k = k.reshape(m, s, s, h, w) * spec.sigma_w2
            k = _box_mean_pair(k, spec.kernel_size, spec.padding)
        mask = valid[:, :, :, None, None].to(torch.float64)
        k = k * mask
        theta = k.clone() if spec.train_first_layer else None
        for ell in range(2, spec.depth + 1):
            r = spec.layer_kernel(ell)
            diag = self.diags[ell - 2]
            dq = diag.reshape(-1)[q_grid][..., None, None] * mask
            v, v_prime = relu_maps(k, diag, dq, sigma_w2=spec.sigma_w2)
            k_new = _local_average(v, r, spec.padding)
            s = k_new.shape[1]
            crop = (mask.shape[1] - s) // 2
            mask = mask[:, crop : crop + s, crop : crop + s]
            q_grid = q_grid[:, crop : crop + s, crop : crop + s]
            k_new = k_new * mask
            if spec.kind == "ntk":
                if theta is None:
                    theta = k_new.clone()
                else:
                    theta = k_new + _local_average(v_prime * theta, r, spec.padding) * mask
            k = k_new
        out = theta if spec.kind == "ntk" else k
        return out.reshape(m, self.d).T.contiguous()

    def iter_columns(
        self, cols: torch.Tensor, *, chunk: int
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """Yield ``(positions, W[:, cols[positions]])`` in chunks of ``chunk`` columns."""
        n = len(cols)
        for start in range(0, n, chunk):
            sl = slice(start, min(n, start + chunk))
            yield sl, self.columns(cols[sl])

    def column_chunk(self, budget_bytes: int) -> int:
        """Number of columns per chunk so that one chunk's work arrays fit the budget."""
        s = self.spec.column_window
        per_column = 8 * self.d * (s * s * 6 + 1)
        return max(1, int(budget_bytes // per_column))


def _relu_block(cov: torch.Tensor, var_r: torch.Tensor, var_c: torch.Tensor, sigma_w2: float):
    """``V`` of :func:`relu_maps` for a block, in place on ``cov`` (fewer temporaries)."""
    tiny = torch.finfo(cov.dtype).tiny
    norm = torch.sqrt(var_r.clamp_min(tiny))[:, None] * torch.sqrt(var_c.clamp_min(tiny))[None]
    cos = cov.div_(norm).clamp_(-1.0, 1.0)
    phi = torch.arccos(cos)
    sin = cos.square().neg_().add_(1.0).clamp_min_(0.0).sqrt_()
    out = phi.neg_().add_(math.pi).mul_(cos).add_(sin).mul_(norm)
    return out.mul_(sigma_w2 / (2 * math.pi))


def _arccos1(
    rho: torch.Tensor, *, out: torch.Tensor | None = None, scratch: torch.Tensor | None = None
) -> torch.Tensor:
    """``π κ(ρ) = √(1 - ρ²) + (π - arccos ρ) ρ`` for ``rho`` in [-1, 1].

    ``κ`` is the normalised arc-cosine kernel of degree 1: ``V = (σ_w²/2) √(v_i v_j) κ(ρ)``
    with ``ρ`` the correlation (equation 14 with ``cos φ = ρ``). Five element-wise passes;
    ``out`` receives the result and ``scratch`` (both ``rho``'s shape) holds ``arccos ρ``.
    """
    phi = torch.arccos(rho, out=scratch).sub_(math.pi)
    out = torch.addcmul(torch.ones((), dtype=rho.dtype), rho, rho, value=-1.0, out=out)
    return out.sqrt_().addcmul_(rho, phi, value=-1.0)


def _box_mean_pair(k: torch.Tensor, r: int, padding: str) -> torch.Tensor:
    """Layer-1 ``A`` for noise input on an ``(m, s, s, H, W)`` stack of one-hot columns.

    ``A(I)[i, q] = δ_iq · (1/r²) #{α : q + α inside}`` — the one-hot stays one-hot.
    """
    if padding == "circular":
        return k
    _, _, _, h, w = k.shape
    count = _box_mean(torch.ones(h, w, dtype=torch.float64), r, "zero")
    return k * count


def _local_average(stack: torch.Tensor, r: int, padding: str) -> torch.Tensor:
    """``A`` on a stack of columns: ``(m, s, s, H, W) → (m, s-r+1, s-r+1, H, W)``.

    ``out[b] = (1/r²) Σ_α shift_α(stack[b + α])`` with ``shift_α(col)[i] = col[i + α]``.
    """
    if r == 1:
        return stack
    p = r // 2
    out = stack
    for win_dim, img_dim in ((1, 3), (2, 4)):
        n = out.shape[win_dim] - 2 * p
        acc = None
        for delta in range(-p, p + 1):
            part = _shift(out.narrow(win_dim, p + delta, n), img_dim, delta, padding)
            acc = part if acc is None else acc + part
        out = acc / r
    return out


def kernel_columns(
    image: torch.Tensor | np.ndarray,
    columns,
    *,
    depth: int = 2,
    kernel_size: int = 11,
    output_kernel: int | None = 1,
    padding: str = "circular",
    kind: str = "ntk",
    input: str = "image",
    train_first_layer: bool = False,
    memory_budget: int = 512 * 2**20,
) -> torch.Tensor:
    """Selected columns of the NTK/NNGP matrix, without forming the full matrix.

    Parameters
    ----------
    image : Tensor or ndarray, shape (H, W), (C, H, W) or (1, C, H, W)
    columns : sequence of int or Tensor, shape (m,)
        Pixel indices (row-major, ``0 ≤ j < H·W``).
    depth, kernel_size, output_kernel, padding, kind, input, train_first_layer
        Keyword-only; see :class:`CNNKernel`.
    memory_budget : int, keyword-only
        Bytes of work arrays per chunk of columns.

    Returns
    -------
    Tensor, shape (d, m), float64
        Equal to ``kernel_matrix(...)[:, columns]`` to round-off.
    """
    spec = CNNKernel(depth, kernel_size, output_kernel, padding, kind, input, train_first_layer)
    x = as_image(image)
    _, h, w = x.shape
    spec.check_image(h, w)
    cols = torch.as_tensor(columns, dtype=torch.long).reshape(-1)
    if cols.numel() and (cols.min() < 0 or cols.max() >= h * w):
        raise InputError(f"column indices must lie in [0, {h * w})")
    engine = ColumnEngine(x, spec)
    chunk = engine.column_chunk(memory_budget)
    out = torch.empty(h * w, cols.numel(), dtype=torch.float64)
    for sl, block in engine.iter_columns(cols, chunk=chunk):
        out[:, sl] = block
    return out


def affinity(
    image: torch.Tensor | np.ndarray,
    i: int | tuple[int, int],
    j: int | tuple[int, int],
    **options,
) -> float:
    """Affinity ``W[i, j]`` of two pixels (flat indices or ``(row, col)`` pairs).

    ``options`` are those of :func:`kernel_columns`. For the one-hidden-layer kernel
    with a 1×1 output this is equation 16 times ``σ_w² / (C r²)``.
    """
    x = as_image(image)
    w = x.shape[2]
    i = i[0] * w + i[1] if isinstance(i, tuple) else int(i)
    j = j[0] * w + j[1] if isinstance(j, tuple) else int(j)
    return float(kernel_columns(x, [j], **options)[i, 0])
