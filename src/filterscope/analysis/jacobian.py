"""The Jacobian ``A_y`` of a denoiser: dense on patches, row by row on full-size images.

Exactness of receptive-field crops
----------------------------------
Let ``f`` be a fully convolutional network whose layers are stride-1 convolutions with
zero padding and pointwise operations (ReLU, eval-mode batch norm, residual sums), and
let ``r`` be its receptive radius (DnCNN: one pixel per 3×3 convolution, so
``r = num_layers``). Take a block ``T`` of output pixels and the crop
``C = (T ⊕ r) ∩ image`` (``T`` grown by ``r`` pixels on each side, clipped to the
image). Then ``f(y)[T] = f(y[C])[T]`` for every ``y``, hence the rows of the Jacobian
for ``T`` are the rows of the Jacobian of ``f`` on the crop (and zero outside it):

* a feature at depth ``L - m`` that output ``i ∈ T`` depends on lies within ``m``
  pixels of ``i``, and in turn depends on depth ``L - m - 1`` features within ``m + 1``
  pixels; by induction every feature involved lies in ``i ⊕ r``;
* inside the image, ``i ⊕ r ⊂ C``, so on the crop all these features are computed
  from the same values; outside the image they are the zero padding in both cases,
  because ``C``'s sides are either the image's own sides or at least ``r`` pixels
  from ``T``.

So the crop gives the rows *exactly* (to round-off), at a fraction of the cost: for a
40×40 patch through DnCNN (``r = 20``) the average crop of a 4×4 block is about 60% of
the patch. The property is tested against the full-image Jacobian. Networks that are
not translation-equivariant at every offset (strided UNet, padding to even sizes) do
not declare a ``receptive_radius``; they are differentiated on the whole input.

Strided networks and a blind noise estimate (:class:`ExactRows`)
----------------------------------------------------------------
A network that down-samples by ``a`` (its ``tile_alignment``, DRUNet's 8) computes the
same features on a crop as on the image only when the crop starts on the image's stride
grid; its crops start at multiples of ``a`` (the argument above then holds on every
scale, since a coarse feature depends on the fine pixels it covers). A model that
estimates σ from the whole image when called blind (``image_noise_level``, the shipped
DRUNet's ``blind_estimate``) computes ``f(y) = g(y, s(y))``, so each row is
``∂g_i/∂y + (∂g_i/∂s) ∇s(y)``: the first term is local (the crop, σ fixed at ``s(y)``),
the second is the estimate's gradient — computed once per image — spread wherever the
estimate reads the image, however far from the pixel. The declared ``receptive_radius``
of every registered network is checked against its structural receptive field (all
weights positive, so no path cancels) in ``tests/test_exact_rows.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ._core import (
    DEFAULT_MAX_BYTES,
    Function,
    as_function,
    as_image_batch,
    check_dense_size,
    check_differentiable,
    check_has_jacobian,
    check_pixels,
    crop_box,
    receptive_radius,
    vjp_rows,
)


def _tile_cost(height: int, width: int, channels: int, radius: int, tile: int) -> float:
    """Model of the work of :func:`dense_jacobian` with square blocks of side ``tile``:
    crop area × (rows + 2) summed over blocks (one forward and some overhead per block)."""
    cost = 0.0
    for top in range(0, height, tile):
        bottom = min(top + tile, height)
        for left in range(0, width, tile):
            right = min(left + tile, width)
            t, b, lft, rgt = crop_box(top, bottom, left, right, radius, height, width)
            rows = (bottom - top) * (right - left) * channels
            cost += (b - t) * (rgt - lft) * (rows + 2)
    return cost


def best_tile(height: int, width: int, channels: int, radius: int | None) -> int:
    """Block side minimising :func:`_tile_cost` (the whole image when no radius is known)."""
    if radius is None or 2 * radius + 1 >= max(height, width) * 2:
        return max(height, width)
    candidates = range(1, max(height, width) + 1)
    return min(candidates, key=lambda t: _tile_cost(height, width, channels, radius, t))


def dense_jacobian(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    *,
    radius: int | str | None = "auto",
    tile: int | None = None,
    chunk: int = 256,
    dtype: torch.dtype = torch.float32,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> torch.Tensor:
    """The full Jacobian ``A_y = ∂f/∂y`` of a denoiser applied to one (small) image.

    The image is the network's whole input (a 40×40 patch is denoised as a 40×40 image,
    as in Mohan et al. 2020, Section 6).

    Parameters
    ----------
    denoiser : nn.Module or callable
        ``f(y)`` on ``(B, C, H, W)`` tensors, differentiable by torch. A module is copied,
        converted to ``dtype`` and run in eval mode.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        Noisy image (values in [0, 1] plus noise).
    radius : int, "auto" or None, keyword-only
        Receptive radius in pixels. ``"auto"``: the model's ``receptive_radius``
        attribute if it has one. With a radius, rows are computed block by block on
        receptive-field crops — exact for zero-padded stride-1 convolutional networks
        (see the module docstring). None: every row on the whole image.
    tile : int or None, keyword-only
        Side of the blocks of output pixels sharing a crop; None picks the cheapest.
    chunk : int, keyword-only
        Rows per batched backward pass; bounds memory to about ``chunk`` copies of one
        activation of the crop.
    dtype : torch.dtype, keyword-only
        Arithmetic. float32 agrees with float64 to ~1e-6 relative for DnCNN and is
        2–3× faster on CPU.
    max_bytes : int, keyword-only
        Refuse (``InputError``) when the ``N × N`` result would exceed this.

    Returns
    -------
    Tensor, shape (N, N), N = C·H·W, ``dtype``
        ``J[i, j] = ∂f(y)_i / ∂y_j`` with pixels flattened in ``(C, H, W)`` order.

    Notes
    -----
    Cost: one forward per block plus ``N`` backward passes, each on a crop of at most
    ``(tile + 2r)²`` pixels. The published BF-DnCNN on a 40×40 patch: about 3.4 TFLOP
    without crops, ~60% of that with them.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be a positive integer, got {chunk!r}")
    y = as_image_batch(y, dtype=dtype)
    _, channels, height, width = y.shape
    n = y.numel()
    check_dense_size(
        n, y.element_size(), max_bytes, what=f"the Jacobian of a {height}x{width} image"
    )
    r = receptive_radius(denoiser, radius)
    function = as_function(denoiser, dtype=dtype)
    check_differentiable(function, y)
    if tile is None:
        tile = best_tile(height, width, channels, r)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise InputError(f"tile must be a positive integer, got {tile!r}")

    jac = torch.zeros(n, n, dtype=dtype, device=y.device)
    index = torch.arange(n, device=y.device).view(channels, height, width)
    for top in range(0, height, tile):
        bottom = min(top + tile, height)
        for left in range(0, width, tile):
            right = min(left + tile, width)
            t, b, lft, rgt = crop_box(top, bottom, left, right, r, height, width)
            crop = y[:, :, t:b, lft:rgt]
            local = torch.arange(crop.numel(), device=y.device).view(channels, b - t, rgt - lft)
            local_rows = local[:, top - t : bottom - t, left - lft : right - lft].reshape(-1)
            global_rows = index[:, top:bottom, left:right].reshape(-1)
            global_cols = index[:, t:b, lft:rgt].reshape(-1)
            rows = vjp_rows(function, crop.contiguous(), local_rows, chunk=chunk)
            jac[global_rows[:, None], global_cols[None, :]] = rows
    return jac


@dataclass
class JacobianRow:
    """One row of ``A_y`` for an output pixel, stored on the window where it can be nonzero.

    Attributes
    ----------
    pixel : (int, int)
        ``(x, y)``: column and row of the output pixel.
    channel : int
        Output channel.
    weights : Tensor, shape (C, h, w)
        ``∂f(y)[channel, y, x] / ∂y[:, top:top+h, left:left+w]``; zero elsewhere.
    box : (int, int, int, int)
        ``(top, bottom, left, right)`` of the window in the image, half-open.
    value : float
        ``f(y)[channel, y, x]``, the denoised pixel.
    estimate_weight : float or None
        For a model that estimates σ from the whole image: ``∂f_i/∂ŝ``, the factor of
        the estimate's gradient ``∇ŝ(y)`` inside :attr:`weights` (None otherwise).
    """

    pixel: tuple[int, int]
    channel: int
    weights: torch.Tensor
    box: tuple[int, int, int, int]
    value: float
    estimate_weight: float | None = None

    def full(self, height: int, width: int) -> torch.Tensor:
        """The row as an image, shape ``(C, height, width)``, zero outside :attr:`box`."""
        out = self.weights.new_zeros(self.weights.shape[0], height, width)
        t, b, lft, rgt = self.box
        out[:, t:b, lft:rgt] = self.weights
        return out


def _rows_for_group(
    function: Function, crops: torch.Tensor, onehots: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pullbacks of one-hot cotangents, one per crop: ``(B, C, h, w)`` rows and outputs."""

    def one(crop: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, pullback = torch.func.vjp(function, crop)
        return pullback(onehot)[0], (out * onehot).sum()

    try:
        grads, values = torch.func.vmap(one)(crops, onehots)
    except Exception:  # an operation without a vmap rule: one pixel at a time
        pairs = [one(c, o) for c, o in zip(crops, onehots, strict=True)]
        grads = torch.stack([g for g, _ in pairs])
        values = torch.stack([v for _, v in pairs])
    return grads[:, 0], values


class Cancelled(Exception):
    """Raised inside :meth:`ExactRows.rows` when its ``should_stop`` says so."""


#: Input pixels per batched pass of :meth:`ExactRows.rows` (crops are stacked up to it):
#: bounds memory to about this many pixels of activations, whatever the crop size.
BATCH_PIXELS = 1 << 17


def _unwrap(denoiser: object) -> object:
    """The network a ``NAME:blind`` wrapper runs (its blind call is the network's)."""
    from ..models.base import BlindMode

    while isinstance(denoiser, BlindMode):
        denoiser = denoiser.model
    return denoiser


class ExactRows:
    """The function ``denoise`` runs on one image, ready to give exact Jacobian rows.

    What depends only on the image is computed once, here: the network copy in
    ``dtype``, and for a model that estimates σ from the whole image (see the module
    docstring) the estimate ``ŝ(y)`` and its gradient. :meth:`rows` then costs one
    forward and backward pass per pixel on the receptive-field crop — aligned to the
    stride grid — or on the whole image for models without a ``receptive_radius``.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser on ``(B, C, H, W)`` tensors, called as ``denoise`` calls
        it (blind: no σ). A module is copied, converted to ``dtype``, in eval mode.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        The noisy image, any size.
    radius : int, "auto" or None, keyword-only
        Receptive radius; ``"auto"`` reads the model's ``receptive_radius`` (checked
        against the structural receptive field by the tests); None: whole image.
    dtype : torch.dtype, keyword-only
        Arithmetic: float64 for analysis (the reference). float32 is 5-9× faster on
        CPU (oneDNN) but is another piecewise-linear function: a few ReLUs whose input
        is ~0 switch, so the shipped DRUNet's float32 row differs from the float64 one
        by up to ~2e-4 (its output by ~1e-7); DnCNN by ~1e-7.
    """

    def __init__(
        self,
        denoiser: nn.Module | Function,
        y: torch.Tensor,
        *,
        radius: int | str | None = "auto",
        dtype: torch.dtype = torch.float64,
    ):
        from ..models.base import Denoiser

        self.y = as_image_batch(y, dtype=dtype)
        _, self.channels, self.height, self.width = self.y.shape
        target = _unwrap(denoiser)
        self.radius = receptive_radius(target, radius)
        self.align = int(getattr(target, "tile_alignment", 1) or 1)
        self.module: nn.Module | None = None
        self.function: Function | None = None
        self.estimate: torch.Tensor | None = None
        self.estimate_gradient: torch.Tensor | None = None
        self._should_stop: Callable[[], bool] | None = None
        self._checked = False
        check_has_jacobian(target)
        if isinstance(target, nn.Module):
            module = copy.deepcopy(target).to(device=self.y.device, dtype=dtype).eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            self.module = module
            for sub in module.modules():
                sub.register_forward_hook(self._stop_hook)
            if isinstance(module, Denoiser):
                self._prepare_estimate(module)
        else:
            self.function = as_function(target, dtype=dtype)

    def _prepare_estimate(self, module: nn.Module) -> None:
        # Always in float64: the estimate is a median, whose gradient sits on the one
        # coefficient selected; float32 round-off can select a neighbour (same value to
        # ~1e-8, gradient elsewhere), so the float64 choice is the reference.
        probe = self.y.to(torch.float64).requires_grad_(True)
        with torch.enable_grad():
            level = module.image_noise_level(probe)
            if level is None:
                return
            if not level.requires_grad:
                raise InputError(
                    "the model's noise estimate is not differentiable by torch, so its "
                    "Jacobian (which includes the estimate) cannot be computed"
                )
            (gradient,) = torch.autograd.grad(level.sum(), probe)
        self.estimate = level.detach().reshape(1).to(self.y.dtype)
        self.estimate_gradient = gradient[0].detach().to(self.y.dtype)
        support = gradient[0].abs().sum(0).nonzero()
        if len(support):
            (t, lft), (b, rgt) = support.min(0).values.tolist(), support.max(0).values.tolist()
            self._estimate_box = (t, b + 1, lft, rgt + 1)
        else:
            self._estimate_box = None

    def _stop_hook(self, module: nn.Module, inputs: object, output: object) -> None:
        """Check ``should_stop`` after every layer, forward and (through a tensor hook)
        backward, so a superseded request stops within one layer's work."""
        if self._should_stop is None:
            return
        if self._should_stop():
            raise Cancelled()
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._stop_on_backward)

    def _stop_on_backward(self, grad: torch.Tensor) -> None:
        if self._should_stop is not None and self._should_stop():
            raise Cancelled()

    def box(self, x: int, y: int) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` of the crop for pixel ``(x, y)``: the pixel
        grown by the radius, its top-left corner moved back onto the stride grid."""
        if self.radius is None:
            return 0, self.height, 0, self.width
        r, a = self.radius, self.align
        return (
            max(y - r, 0) // a * a,
            min(y + r + 1, self.height),
            max(x - r, 0) // a * a,
            min(x + r + 1, self.width),
        )

    def block(
        self,
        top: int,
        left: int,
        height: int,
        width: int,
        *,
        chunk: int = 64,
        should_stop: Callable[[], bool] | None = None,
    ) -> torch.Tensor:
        """The Jacobian block of a patch *inside* the image: rows and columns of the
        patch's pixels in the full-image Jacobian, ``(N, N)`` with ``N = C·height·width``
        (pixels flattened in ``(C, H, W)`` order), in this object's dtype.

        One forward pass on the patch grown by the receptive radius (its corner on the
        stride grid) and one batched backward pass per ``chunk`` rows; the noise
        estimate's term is added where its gradient falls inside the patch.
        ``should_stop`` is polled between layers and between chunks (:class:`Cancelled`).
        """
        self._should_stop = should_stop
        try:
            return self._block(top, left, height, width, chunk)
        finally:
            self._should_stop = None

    def _block(self, top: int, left: int, height: int, width: int, chunk: int) -> torch.Tensor:
        for name, value in (("top", top), ("left", left), ("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{name} must be a number of pixels >= 0, got {value!r}")
        if height < 1 or width < 1 or top + height > self.height or left + width > self.width:
            raise InputError(
                f"the patch {width}x{height} at (x, y) = ({left}, {top}) is not inside the "
                f"{self.width}x{self.height} image"
            )
        t, _, lft, _ = self.box(left, top)
        _, b, _, rgt = self.box(left + width - 1, top + height - 1)
        crop = self.y[:, :, t:b, lft:rgt].contiguous()
        index = torch.arange(crop.numel(), device=crop.device).view(crop.shape[1:])
        rows_, cols = slice(top - t, top - t + height), slice(left - lft, left - lft + width)
        patch = (slice(None), rows_, cols)
        rows_index = index[patch].reshape(-1)
        if self.module is None:
            full = vjp_rows(self.function, crop, rows_index, chunk=chunk)
            return full[:, rows_index]
        module, level = self.module, self.estimate

        def function(c: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
            return module(c) if s is None else module(c, s)

        # One plain autograd call first: a model torch cannot differentiate (numpy
        # inside, no_grad...) gets check_differentiable's one-line error.
        check_differentiable(lambda c: function(c, level), crop)
        inputs = (crop,) if level is None else (crop, level)
        out, pullback = torch.func.vjp(function, *inputs)
        blocks = []
        for start in range(0, len(rows_index), chunk):
            if self._should_stop is not None and self._should_stop():
                raise Cancelled()
            selected = rows_index[start : start + chunk]
            cotangents = out.new_zeros(len(selected), out.numel())
            cotangents[torch.arange(len(selected)), selected] = 1.0
            cotangents = cotangents.view(len(selected), *out.shape)
            try:
                grads = torch.func.vmap(pullback)(cotangents)
            except Exception:  # an operation without a vmap rule: one row at a time
                singles = [pullback(c) for c in cotangents]
                grads = tuple(torch.stack(g) for g in zip(*singles, strict=True))
            local = grads[0].reshape(len(selected), -1)[:, rows_index]
            if level is not None:
                gradient = self.estimate_gradient[:, top : top + height, left : left + width]
                local = local + grads[1].reshape(-1, 1) * gradient.reshape(1, -1)
            blocks.append(local)
        return torch.cat(blocks).detach()

    def rows(
        self,
        pixels: Sequence[Sequence[int]],
        *,
        channel: int = 0,
        chunk: int = 16,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[JacobianRow]:
        """Exact rows of ``A_y`` for ``pixels`` (see :func:`jacobian_rows`).

        ``should_stop`` is polled after every layer (forward and backward); when it
        returns True the computation ends with :class:`Cancelled`.
        """
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise InputError(f"chunk must be a positive integer, got {chunk!r}")
        if isinstance(channel, bool) or not 0 <= int(channel) < self.channels:
            raise InputError(f"channel must be in 0..{self.channels - 1}, got {channel}")
        channel = int(channel)
        checked = check_pixels(pixels, self.height, self.width)
        boxes = [self.box(px, py) for px, py in checked]
        groups: dict[tuple[int, int], list[int]] = {}
        for k, (t, b, lft, rgt) in enumerate(boxes):
            groups.setdefault((b - t, rgt - lft), []).append(k)
        results: list[JacobianRow | None] = [None] * len(checked)
        self._should_stop = should_stop
        try:
            for (h, w), members in groups.items():
                per_pass = max(1, min(chunk, BATCH_PIXELS // (h * w * self.channels)))
                for start in range(0, len(members), per_pass):
                    if should_stop is not None and should_stop():
                        raise Cancelled()
                    part = members[start : start + per_pass]
                    for k, row in zip(
                        part, self._group(part, checked, boxes, channel), strict=True
                    ):
                        results[k] = row
        finally:
            self._should_stop = None
        return results  # type: ignore[return-value]

    def _group(
        self,
        part: list[int],
        checked: list[tuple[int, int]],
        boxes: list[tuple[int, int, int, int]],
        channel: int,
    ) -> list[JacobianRow]:
        crops, onehots = [], []
        for k in part:
            t, b, lft, rgt = boxes[k]
            px, py = checked[k]
            crops.append(self.y[0, :, t:b, lft:rgt])
            onehot = torch.zeros_like(crops[-1])
            onehot[channel, py - t, px - lft] = 1.0
            onehots.append(onehot)
        crops_t, onehots_t = torch.stack(crops), torch.stack(onehots)
        if self.module is None:
            if not self._checked:
                check_differentiable(self.function, crops_t[:1])
                self._checked = True
            grads, values = _rows_for_group(self.function, crops_t[:, None], onehots_t[:, None])
            slopes = None
        else:
            grads, values, slopes = self._module_rows(crops_t, onehots_t)
        rows = []
        for j, k in enumerate(part):
            weights, box = grads[j], boxes[k]
            slope = None if slopes is None else float(slopes[j])
            if slope is not None:
                weights, box = self._add_estimate(weights, box, slope)
            rows.append(
                JacobianRow(
                    pixel=checked[k],
                    channel=channel,
                    weights=weights.detach(),
                    box=box,
                    value=float(values[j]),
                    estimate_weight=slope,
                )
            )
        return rows

    def _module_rows(
        self, crops: torch.Tensor, onehots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One batched forward and backward pass: the images of a batch are independent
        in an eval-mode network, so the gradient of ``Σ_b out_b · onehot_b`` holds each
        crop's row."""
        crops = crops.clone().requires_grad_(True)
        inputs = [crops]
        with torch.enable_grad():
            try:
                if self.estimate is None:
                    out = self.module(crops)
                else:
                    level = self.estimate.expand(len(crops)).clone().requires_grad_(True)
                    inputs.append(level)
                    out = self.module(crops, level)
            except (InputError, Cancelled):
                raise
            except Exception as exc:
                detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InputError(
                    f"the denoiser failed on a {tuple(crops.shape)} {crops.dtype} input ({detail})"
                ) from None
            if not isinstance(out, torch.Tensor) or out.shape != crops.shape:
                raise InputError(f"the denoiser must return its input's shape {tuple(crops.shape)}")
            if not out.requires_grad:
                raise InputError(
                    "the denoiser is not differentiable by torch (its output is not "
                    "connected to its input by autograd); Jacobian analysis needs a torch "
                    "model or function"
                )
            picked = (out * onehots).sum(dim=(1, 2, 3))
            grads = torch.autograd.grad(picked.sum(), inputs)
        slopes = grads[1] if len(grads) > 1 else None
        return grads[0], picked.detach(), slopes

    def _add_estimate(
        self, weights: torch.Tensor, box: tuple[int, int, int, int], slope: float
    ) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """The local row plus ``slope · ∇ŝ``, on the smallest box holding both."""
        if self._estimate_box is None or slope == 0.0:
            return weights, box
        et, eb, el, er = self._estimate_box
        t, b, lft, rgt = box
        union = (min(t, et), max(b, eb), min(lft, el), max(rgt, er))
        out = weights.new_zeros(weights.shape[0], union[1] - union[0], union[3] - union[2])
        out[:, t - union[0] : b - union[0], lft - union[2] : rgt - union[2]] = weights
        out += slope * self.estimate_gradient[:, union[0] : union[1], union[2] : union[3]]
        return out, union


def jacobian_rows(
    denoiser: nn.Module | Function,
    y: torch.Tensor,
    pixels: Sequence[Sequence[int]],
    *,
    channel: int = 0,
    radius: int | str | None = "auto",
    chunk: int = 16,
    dtype: torch.dtype = torch.float64,
) -> list[JacobianRow]:
    """Rows of ``A_y`` for chosen output pixels of a full-size image, exactly.

    The rows of the function ``denoise`` runs: each row is computed on the crop
    ``pixel ⊕ radius`` (clipped to the image, its corner on the stride grid of a
    down-sampling network), which gives exactly the full-image row (argument in the
    module docstring; tested against autograd on the whole image for every registered
    network). A model that estimates σ from the whole image gets the estimate's
    gradient term too, wherever it lies (:class:`ExactRows`). Pixels whose crops have
    the same shape are processed together.

    Parameters
    ----------
    denoiser : nn.Module or callable
        Differentiable denoiser on ``(B, C, H, W)`` tensors.
    y : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        The noisy image, any size.
    pixels : sequence of (x, y)
        Column and row of each output pixel; must lie inside the image.
    channel : int, keyword-only
        Output channel whose row is wanted (0 for gray images).
    radius : int, "auto" or None, keyword-only
        Receptive radius; ``"auto"`` reads ``denoiser.receptive_radius``; None (or a
        model without one) differentiates the whole image for every pixel.
    chunk : int, keyword-only
        Most pixels per batched pass (fewer for large crops: see :data:`BATCH_PIXELS`).
    dtype : torch.dtype, keyword-only
        Arithmetic (float64 by default: rows are read as filters and summed).

    Returns
    -------
    list of JacobianRow
        In the order of ``pixels``.

    Notes
    -----
    Cost per pixel: one forward and one backward pass on a ``(2r+1)²`` crop (DnCNN-20:
    41×41; DRUNet: about 230×230), independent of the image size; for a model that
    estimates σ, one more backward pass through the estimator per call.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be a positive integer, got {chunk!r}")
    rows = ExactRows(denoiser, y, radius=radius, dtype=dtype)
    return rows.rows(pixels, channel=channel, chunk=chunk)
