"""A faster copy of a trained denoiser for CPU inference.

:func:`optimize_for_inference` returns a new module with the same ``forward(y)``
contract as the model it was made from, that computes the same function faster:

- **norm folding**: in eval mode a batch norm is a per-channel affine map (bias-free
  :class:`~filterscope.nn.BFBatchNorm2d`: a per-channel scale), so it is merged into
  the convolution before it. This removes one full pass over every activation, and a
  bias-free model stays bias-free: no bias tensor is created.
- **channels-last layout**: oneDNN's convolutions work natively on NHWC; in the default
  NCHW layout PyTorch reorders every activation before and after each convolution.
- **fused ReLU**: on the CPU, convolution + ReLU is one oneDNN call (see
  :func:`conv_relu`) in DnCNN, RCNN and SDenseNet.
- **bfloat16** (default): weights are converted once, activations travel in bfloat16
  between layers (oneDNN accumulates in float32 inside each convolution). On CPUs with
  AVX-512 BF16 or AMX this is about twice as fast as float32; on CPUs without native
  bfloat16 it can be slower, use ``precision="float32"`` there. Input and output stay
  float32. For DnCNN the first convolution (which sees the image) and the residual
  ``y - net(y)`` stay float32, so the rounding only touches the predicted noise.

``precision="float32"`` keeps everything but the last point, for results equal to the
original up to float32 rounding.

Not used, because they did not pay off here (torch 2.13, 2-core AVX-512 EPYC):
``torch.jit.freeze`` + ``torch.jit.optimize_for_inference`` (deprecated, no faster than
the eager path above) and ``torch.compile`` (about a minute to compile, again for each
new image size, for a gain lost in the noise).
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from ..nn.norm import BFBatchNorm2d
from .base import BlindMode, Denoiser
from .dncnn import DnCNN
from .drunet import DRUNet
from .stacks import ConvStack

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def fold_norm_into_conv(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """Return a new convolution computing ``norm(conv(x))`` (``norm`` in eval mode).

    Parameters
    ----------
    conv : nn.Conv2d
        The convolution; it is not modified.
    norm : BFBatchNorm2d or nn.BatchNorm2d
        The norm applied right after it, with its running statistics.

    Returns
    -------
    nn.Conv2d
        Same geometry as ``conv``. For :class:`~filterscope.nn.BFBatchNorm2d` it has a
        bias only if ``conv`` had one (a bias-free pair stays bias-free); for
        ``nn.BatchNorm2d`` it always has one (the norm's shift).
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
    with torch.no_grad():
        # float64 so the product adds a single float32 rounding to the weights
        weight = conv.weight.detach().double()
        bias = None if conv.bias is None else conv.bias.detach().double()
        if isinstance(norm, BFBatchNorm2d):
            scale = norm.scale().detach().double()
            shift = None
        elif isinstance(norm, nn.BatchNorm2d):
            if norm.running_mean is None or norm.running_var is None:
                raise ValueError("cannot fold a BatchNorm2d without running statistics")
            scale = 1.0 / torch.sqrt(norm.running_var.double() + norm.eps)
            mean = norm.running_mean.double()
            shift = -mean * scale
            if norm.weight is not None:
                scale = scale * norm.weight.double()
                shift = shift * norm.weight.double()
            if norm.bias is not None:
                shift = shift + norm.bias.double()
        else:
            raise TypeError(f"cannot fold a {type(norm).__name__} into a convolution")

        folded = copy.deepcopy(conv)
        folded.weight = nn.Parameter(
            (weight * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype), requires_grad=False
        )
        if shift is None:
            new_bias = None if bias is None else bias * scale
        else:
            new_bias = shift if bias is None else bias * scale + shift
        if new_bias is None:
            folded.bias = None
        else:
            folded.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)
    return folded


class FastDenoiser(Denoiser):
    """Base of the modules returned by :func:`optimize_for_inference`.

    Copies the descriptive attributes of the source model (``arch``, ``bias``,
    ``in_channels``, ``config``, ``card``, ``receptive_radius``, ``tile_alignment``) so
    code that inspects a model keeps working, and records :attr:`precision` (``"float32"`` or
    ``"bfloat16"``).
    """

    def __init__(self, source: nn.Module, precision: str):
        super().__init__()
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        if isinstance(source, Denoiser):
            self.blind = source.blind
            self.in_channels = source.in_channels
        for name in ("arch", "bias", "config", "card"):
            if hasattr(source, name):
                setattr(self, name, copy.deepcopy(getattr(source, name)))
        self._receptive_radius = getattr(source, "receptive_radius", None)
        self.tile_alignment = getattr(source, "tile_alignment", 1)

    @property
    def input_dtype(self) -> torch.dtype:
        """float32: the input and output of every precision (bfloat16 converts inside)."""
        return torch.float32

    @property
    def receptive_radius(self) -> int:
        """Receptive radius of the source model, when it has one."""
        if self._receptive_radius is None:
            raise AttributeError(f"{type(self).__name__} has no receptive_radius")
        return self._receptive_radius

    def image_noise_level(self, y: torch.Tensor) -> torch.Tensor | None:
        """The converted network's estimate (see :meth:`Denoiser.image_noise_level`)."""
        net = getattr(self, "net", None)
        return net.image_noise_level(y) if isinstance(net, Denoiser) else None

    def _check_input(self, y: torch.Tensor) -> None:
        if y.dim() != 4 or (self.in_channels is not None and y.shape[1] != self.in_channels):
            channels = "C" if self.in_channels is None else self.in_channels
            raise ValueError(f"expected a (B, {channels}, H, W) tensor, got {tuple(y.shape)}")
        if not y.is_floating_point():
            raise TypeError(f"expected a floating-point image tensor, got {y.dtype}")

    def extra_repr(self) -> str:
        return f"precision={self.precision}"


@functools.cache
def _fused_conv_relu_works(dtype: torch.dtype) -> bool:
    """Whether oneDNN's fused convolution + ReLU runs here for ``dtype``.

    The op is internal to PyTorch (the one Inductor emits) and its bfloat16 kernel
    needs CPU support, so it is tried once on a tiny input against the plain path. The
    comparison catches a changed meaning, not rounding (kernels may sum differently).
    """
    if not torch.backends.mkldnn.is_available():
        return False
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 5, 6, generator=gen).to(dtype)
    conv = nn.Conv2d(8, 8, 3, padding=1, bias=False).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            fused = _fused_call(conv, x)
            plain = torch.relu(conv(x))
    except (AttributeError, RuntimeError):
        return False
    return torch.allclose(fused.float(), plain.float(), rtol=1e-2, atol=1e-2)


def _fused_call(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise(
        x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups,
        "relu", [], "",
    )  # fmt: skip


def conv_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x))``, with the ReLU fused into oneDNN's convolution where possible.

    Fusing saves a read and a write of the whole activation per layer; the result equals
    that of the two separate steps (bitwise in our bfloat16 DnCNN runs). Elsewhere (GPU,
    autograd, other dtypes, builds without oneDNN) it is the two steps.
    """
    if (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.enabled
        # the fused op has no backward: keep autograd working for analysis code
        and not (torch.is_grad_enabled() and x.requires_grad)
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
        and _fused_conv_relu_works(x.dtype)
    ):
        return _fused_call(conv, x)
    return torch.relu_(conv(x))


class ConvReLUChain(nn.Module):
    """Convolutions with a ReLU after each but the last: ``convs[-1](...relu(convs[0](x)))``.

    Parameters
    ----------
    convs : list of nn.Conv2d
        Applied in order.
    """

    def __init__(self, convs: list[nn.Conv2d]):
        super().__init__()
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.convs) - 1
        for index, conv in enumerate(self.convs):
            x = conv(x) if index == last else conv_relu(conv, x)
        return x


class FastDnCNN(FastDenoiser):
    """DnCNN with its norms folded: ``y - chain(relu(first(y)))``.

    The first convolution always runs in float32: rounding the image itself to
    bfloat16 (steps of 2^-8 near 1) would pass almost unfiltered into the predicted
    noise and so into the estimate; it costs little (one input channel). The other
    convolutions run in :attr:`precision`, and the residual subtraction in the input's
    dtype, so the remaining bfloat16 rounding reaches the predicted noise only.
    """

    def __init__(self, model: DnCNN, precision: str):
        super().__init__(model, precision)
        self.first = copy.deepcopy(model.first_layer).float()
        convs = []
        for conv, norm in zip(model.hidden_layer_list, model.bn_layer_list, strict=True):
            convs.append(fold_norm_into_conv(conv, norm))
        convs.append(copy.deepcopy(model.last_layer))
        self.chain = ConvReLUChain(convs).to(self.dtype)

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        self._check_input(y)
        h = conv_relu(self.first, y.float().contiguous(memory_format=torch.channels_last))
        noise = self.chain(h.to(self.dtype))
        return (y - noise.to(y.dtype)).contiguous()


class FastDRUNet(FastDenoiser):
    """DRUNet under autocast: convolutions in :attr:`precision`, the residual in float32.

    The weights stay float32 and autocast rounds them and the activations for each
    convolution; the image and the final ``y - noise`` stay float32, so bfloat16
    rounding reaches the predicted noise only (as in :class:`FastDnCNN`). σ is passed
    on, so a model with a noise-level input stays non-blind when it is given.
    """

    def __init__(self, model: DRUNet, precision: str):
        super().__init__(model, precision)
        self.net = copy.deepcopy(model).float()

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        self._check_input(y)
        enabled = self.dtype != torch.float32
        with torch.autocast(y.device.type, dtype=self.dtype, enabled=enabled):
            x_hat = self.net(y.float().contiguous(memory_format=torch.channels_last), sigma)
        return x_hat.to(y.dtype).contiguous()


class FastWrapper(FastDenoiser):
    """Any other model, converted as a whole: input cast in, output cast back.

    Every :class:`~filterscope.models.stacks.ConvStack` inside (RCNN, SDenseNet) is
    replaced by a :class:`ConvReLUChain` computing the same function with fused ReLUs.
    Other norms (if any) are left in place; they still compute the right thing.
    """

    def __init__(self, model: nn.Module, precision: str):
        super().__init__(model, precision)
        self.net = copy.deepcopy(model).to(self.dtype)
        stacks = [(name, m) for name, m in self.net.named_modules() if isinstance(m, ConvStack)]
        for name, stack in stacks:
            parent_name, _, child = name.rpartition(".")
            convs = [stack.first_layer, *stack.hidden_layer_list, stack.last_layer]
            setattr(self.net.get_submodule(parent_name), child, ConvReLUChain(convs))

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        self._check_input(y)
        # σ goes through: a network with a noise-level input (DRUNet) needs it.
        if isinstance(sigma, torch.Tensor):
            sigma = sigma.to(self.dtype)
        return (
            self.net(
                y.to(self.dtype).contiguous(memory_format=torch.channels_last), sigma, **kwargs
            )
            .to(y.dtype)
            .contiguous()
        )


def optimize_for_inference(model: nn.Module, *, precision: str = "bfloat16") -> nn.Module:
    """Return a faster eval-mode copy of ``model`` for inference.

    Parameters
    ----------
    model : nn.Module
        A denoiser with ``forward(y) -> x_hat`` on ``(B, C, H, W)`` tensors, typically a
        registered architecture (``dncnn``, ``rcnn``, ``unet``, ``sdensenet``). It is
        not modified.
    precision : {"bfloat16", "float32"}, keyword-only
        Arithmetic of the convolutions. ``"float32"`` matches the original up to
        float32 rounding (about 1e-6 relative); ``"bfloat16"`` is about twice as fast
        again on CPUs with native bfloat16 and changes PSNR by a few thousandths of a dB
        (DnCNN at σ = 25 on BSD68; see ``benchmarks/throughput.py``).

    Returns
    -------
    nn.Module
        In eval mode, without gradients, on the model's device, with the same
        ``forward(y)`` contract: float32 in, float32 out of the same shape, contiguous.
        Norm layers of DnCNN are folded into the convolutions (a bias-free model stays
        bias-free); activations are channels-last.

    Notes
    -----
    Call it once and reuse the result: it copies the weights. The RCNN copy runs the
    evaluation number of stages (``max_stages``), as the original does in eval mode.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if isinstance(model, FastDenoiser):
        raise TypeError("model is already optimized for inference")
    if isinstance(model, BlindMode):
        return BlindMode(optimize_for_inference(model.model, precision=precision)).eval()
    if isinstance(model, DnCNN):
        fast = FastDnCNN(model, precision)
    elif isinstance(model, DRUNet):
        fast = FastDRUNet(model, precision)
    else:
        fast = FastWrapper(model, precision)
    fast = fast.to(memory_format=torch.channels_last)
    fast.eval()
    fast.requires_grad_(False)
    return fast
