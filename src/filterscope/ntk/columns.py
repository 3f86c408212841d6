"""Columns of the NNGP/NTK matrix without the full matrix: :class:`ColumnEngine`, the
source of the Nyström filter, and :func:`kernel_columns` / :func:`affinity`. See
:mod:`filterscope.ntk.kernels`."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .basis import pixel_indices
from .dense import _box_mean, _shift, image_patches, relu_maps
from .spec import CNNKernel, as_image

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
    """Affinity ``W[i, j]`` of two pixels (flat indices or ``(x, y)`` = (column, row)
    pairs).

    ``options`` are those of :func:`kernel_columns`. For the one-hidden-layer kernel
    with a 1×1 output this is equation 16 times ``σ_w² / (C r²)``.
    """
    x = as_image(image)
    i, j = pixel_indices([i, j], x.shape[1], x.shape[2])
    return float(kernel_columns(x, [j], **options)[i, 0])
