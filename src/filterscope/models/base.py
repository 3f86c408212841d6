"""The one denoiser interface shared by every method in filterscope."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ChannelError, InputError


def module_device(denoiser: object) -> torch.device:
    """Device of a module's first parameter or buffer; CPU for plain callables."""
    if isinstance(denoiser, nn.Module):
        for tensor in itertools.chain(denoiser.parameters(), denoiser.buffers()):
            return tensor.device
    return torch.device("cpu")


def per_image_sigmas(sigma: float | torch.Tensor | None, batch: int) -> list[float | None]:
    """One noise level per image of a batch of ``batch``: ``sigma`` broadcast or split.

    Parameters
    ----------
    sigma : float, Tensor of shape () or (B,), or None
        Noise level(s) on the image scale.
    batch : int
        Number of images.

    Returns
    -------
    list of float or None
        ``batch`` values (all None when ``sigma`` is None).

    Raises
    ------
    InputError
        A tensor with neither one value nor one value per image.
    """
    if sigma is None:
        return [None] * batch
    values = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).tolist()
    if len(values) == 1:
        return values * batch
    if len(values) != batch:
        raise InputError(f"sigma has {len(values)} values for a batch of {batch} images")
    return values


@dataclass
class Denoised:
    """What :meth:`Denoiser.denoise_with_info` returns: the estimate and what was estimated.

    Attributes
    ----------
    x_hat : Tensor, shape (B, C, H, W)
        The estimate, as :meth:`Denoiser.forward` returns it.
    per_image : list of dict
        One JSON-ready dict per image of what the method chose or estimated on its
        own: ``"sigma"`` (noise level estimated from the image, image scale), ``"t"``
        (twicing steps or stopping iteration), ``"stop"``, SURE values... Empty dicts
        for methods that estimate nothing.
    """

    x_hat: torch.Tensor
    per_image: list[dict[str, Any]] = field(default_factory=list)


class Denoiser(nn.Module):
    """Anything that maps a noisy image batch to an estimate of the clean one.

    Subclasses implement :meth:`forward`:

    ``forward(y, sigma=None, **kwargs) -> x_hat``

    - ``y``: ``(B, C, H, W)`` tensor, images nominally in [0, 1] (noisy images are not
      clipped, so values slightly outside occur).
    - ``sigma``: noise standard deviation on the image scale (25/255 ≈ 0.098), a float
      or a ``(B,)`` tensor. It is always passed when known: blind methods
      (``blind = True``) ignore it; non-blind methods (BM3D, NTK filters with SURE
      stopping...) raise :class:`~filterscope.errors.InputError` if it is missing.
    - ``**kwargs``: extra keywords (plug-and-play code passes some); ignored unless a
      method documents them.
    - returns ``x_hat`` with the shape and dtype of ``y``, not clipped.

    Methods that estimate something on the way (a noise level, a stopping step) also
    override :meth:`denoise_with_info`, which returns it with the estimate; nothing is
    left behind in attributes.

    Attributes
    ----------
    blind : bool
        True when ``sigma`` is not needed.
    in_channels : int or None
        Channels the method works on (1 or 3), or None when any count works.
    tile_alignment : int
        Tiles of an image must start at multiples of this many pixels for the tiled
        result to equal the whole-image one (the total stride of a network that
        down-samples, such as DRUNet's 8; 1 for translation-equivariant methods).
    """

    blind: bool = True
    in_channels: int | None = None
    tile_alignment: int = 1
    #: False for methods torch cannot differentiate (BM3D, NLM: NumPy code); the
    #: Jacobian analyses refuse them in one line.
    differentiable: bool = True

    @property
    def input_dtype(self) -> torch.dtype | None:
        """The float dtype :meth:`forward` computes in: that of the first floating-point
        weight; None for a method without weights (it takes any float dtype)."""
        for tensor in self.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return None

    def __call__(self, y: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """``forward(y, ...)`` with ``y`` cast to :attr:`input_dtype` and the estimate cast
        back to ``y``'s dtype, so every denoiser keeps the promise of the interface: a
        float64 batch (for a Jacobian) gives a float64 estimate from a float32 network.
        The casts are differentiable; without a cast this is ``nn.Module.__call__``."""
        dtype = self.input_dtype
        if (
            dtype is None
            or not isinstance(y, torch.Tensor)
            or not y.is_floating_point()
            or y.dtype == dtype
        ):
            return super().__call__(y, *args, **kwargs)
        out = super().__call__(y.to(dtype), *args, **kwargs)
        return out.to(y.dtype) if isinstance(out, torch.Tensor) else out

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        raise NotImplementedError

    def denoise_with_info(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> Denoised:
        """The estimate with what the method estimated per image (see :class:`Denoised`).

        The default runs :meth:`forward` and reports nothing per image.
        """
        return Denoised(self(y, sigma, **kwargs), [{} for _ in range(y.shape[0])])

    def image_noise_level(self, y: torch.Tensor) -> torch.Tensor | None:
        """The σ per image, shape ``(B,)``, that a blind call (``sigma=None``) would
        estimate from the whole images ``y``; None when the method estimates none.

        Tiled inference asks for it once per image and passes it to every tile, so the
        tiles of a method that estimates σ agree with the whole-image result. The
        default is None.
        """
        return None

    @property
    def sigma_source(self) -> str:
        """Where the noise level comes from: ``"blind"`` (not needed) or ``"true"`` (the σ
        passed in); methods that estimate it from ``y`` say ``"estimated"``."""
        return "blind" if self.blind else "true"

    def require_sigma(self, sigma: float | torch.Tensor | None) -> float | torch.Tensor:
        """Return ``sigma``, or raise a clear error when a non-blind method lacks it."""
        if sigma is None:
            raise InputError(f"{self.label()} is not blind: it needs the noise level sigma")
        return sigma

    def check_channels(self, y: torch.Tensor) -> None:
        """Raise :class:`~filterscope.errors.ChannelError` unless ``y`` is ``(B, C, H, W)``
        with the channel count this method takes."""
        if y.dim() != 4 or (self.in_channels is not None and y.shape[1] != self.in_channels):
            channels = "C" if self.in_channels is None else self.in_channels
            raise ChannelError(
                f"{self.label()} takes a (B, {channels}, H, W) tensor, got {tuple(y.shape)}"
            )

    def label(self) -> str:
        """How messages name this denoiser (its class name)."""
        return type(self).__name__


class CNNDenoiser(Denoiser):
    """Base class of the trainable architectures (DnCNN, RCNN, UNet, SDenseNet).

    Remembers its constructor arguments in :attr:`config` so a checkpoint can rebuild
    it, and its registry name in :attr:`arch`.
    """

    arch: str = ""

    def __init__(self, *, bias: bool, in_channels: int, **config):
        super().__init__()
        if in_channels not in (1, 3):
            raise InputError(f"in_channels must be 1 (gray) or 3 (RGB), got {in_channels!r}")
        self.bias = bool(bias)
        self.in_channels = in_channels
        self.config = {"bias": self.bias, "in_channels": in_channels, **config}

    def _check_input(self, y: torch.Tensor) -> None:
        if y.dim() != 4 or y.shape[1] != self.in_channels:
            raise ChannelError(
                f"{self.arch} expects a (B, {self.in_channels}, H, W) tensor, got {tuple(y.shape)}"
            )


def conv3x3(in_channels: int, out_channels: int, *, bias: bool, dilation: int = 1) -> nn.Conv2d:
    """3×3 convolution that keeps the spatial size (zero padding)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=bias)


def orthogonal_init(module: nn.Module) -> None:
    """Orthogonal convolution weights, zero biases, unit norm scales (DnCNN's choice)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BlindMode(Denoiser):
    """A network with a noise-level input, always run in its blind mode (σ not passed).

    ``filterscope evaluate`` and the analyses pass the true σ to every method; this
    wrapper (the registry's ``NAME:blind``) measures what the network does without it,
    as ``filterscope denoise`` does when no ``--sigma`` is given.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.in_channels = model.in_channels
        for name in ("arch", "bias", "config", "card"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    @property
    def receptive_radius(self) -> int:
        return self.model.receptive_radius

    @property
    def tile_alignment(self) -> int:
        return getattr(self.model, "tile_alignment", 1)

    @property
    def sigma_source(self) -> str:
        return "blind"

    @property
    def input_dtype(self) -> torch.dtype | None:
        return getattr(self.model, "input_dtype", None)

    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs):
        return self.model(y, None, **kwargs)


class GivenSigma(Denoiser):
    """A non-blind denoiser with its noise level fixed: ``forward(y)`` is
    ``model(y, sigma)``, for code that calls a denoiser on ``y`` alone (the Jacobian
    analyses), so that the σ of the noise added is also the σ the model is given."""

    def __init__(self, model: nn.Module, sigma: float):
        super().__init__()
        self.model = model
        self.sigma = float(sigma)
        self.differentiable = getattr(model, "differentiable", True)
        self.in_channels = getattr(model, "in_channels", None)
        self.tile_alignment = getattr(model, "tile_alignment", 1)
        for name in ("arch", "bias", "config", "card", "receptive_radius"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    @property
    def input_dtype(self) -> torch.dtype | None:
        return getattr(self.model, "input_dtype", None)

    def label(self) -> str:
        return self.model.label() if isinstance(self.model, Denoiser) else super().label()

    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs):
        return self.model(y, self.sigma, **kwargs)


def with_sigma(model: nn.Module, sigma: float) -> nn.Module:
    """``model`` given ``sigma`` on every call when it needs one (a :class:`Denoiser`
    that is not blind, see :class:`GivenSigma`); any other model as it is."""
    if isinstance(model, Denoiser) and not model.blind:
        return GivenSigma(model, sigma)
    return model
