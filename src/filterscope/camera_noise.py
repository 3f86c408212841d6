"""Noise as cameras make it: signal-dependent, spatially correlated, clipped and quantised.

Every model takes clean images ``x`` of shape ``(B, C, H, W)`` in [0, 1] (C = 1 or 3)
and returns ``(noisy, std_map)``: the noisy images and the standard deviation of their
noise at each pixel and channel, shape ``(B, C, H, W)`` (image scale). All random draws
come from the ``generator`` passed (CPU or the images' device), in a fixed order, so a
seeded generator gives the same noise on every run and a training run resumes exactly.

- :func:`poisson_gaussian_noise`: shot + read noise on the image itself,
  ``Var(y | x) = a·x + b`` (Foi et al., "Practical Poissonian-Gaussian noise modeling
  and fitting for single-image raw-data", IEEE TIP 2008).
- :func:`camera_noise`: the same sensor noise added where a camera adds it, in the
  linear raw Bayer mosaic, then carried through demosaicking, white balance, colour
  matrix, tone curve, 8-bit quantisation and optionally JPEG (Brooks et al.,
  "Unprocessing images for learned raw denoising", CVPR 2019; Guo et al., "Toward
  convolutional blind denoising of real photographs" (CBDNet), CVPR 2019).
- :func:`correlated_noise`: Gaussian noise with a given marginal σ, blurred by a
  Gaussian kernel of random width (and optionally mixed across channels).
- :func:`quantize`: clip to [0, 1] and round to ``2**bits`` levels, as storing an
  image in a file does.

The parameter ranges live in :class:`NoiseOptions`; their defaults and where they come
from are documented there.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

#: ITU-R BT.601 luma weights: how gray photographs are made from colour ones (Pillow's
#: ``convert("L")``, MATLAB's ``rgb2gray``; BSD68's gray images were made so).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """The gray image of RGB images ``x`` (B, 3, H, W): :data:`LUMA_WEIGHTS` summed over
    the channels, shape (B, 1, H, W), dtype and device of ``x``."""
    luma = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device)
    return torch.einsum("c,bchw->bhw", luma, x)[:, None]


#: sRGB (D65) → CIE XYZ.
_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)

#: XYZ → camera matrices of four real cameras, the set Brooks et al. (2019) mix: the
#: calibration constants of dcraw's ``adobe_coeff`` table (divided by 10000).
_XYZ_TO_CAMERA = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.6130, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.8380, -0.2630, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.0970, 0.1581, 0.5181)),
)


#: Largest in-camera smoothing width (pixels) :class:`NoiseOptions` accepts: kernels
#: reach 3 widths, and training patches are 64 pixels or more.
MAX_SMOOTHING = 8.0

#: What the std map of smoothed camera noise may say (:class:`NoiseOptions`.map_level).
MAP_LEVELS = ("pixel", "sensor")

#: sRGB → (Y, Cb, Cr) (ITU-R BT.601, full range), the space camera processors denoise in.
_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)


@dataclass(frozen=True)
class NoiseOptions:
    """Parameter ranges of the noise models (each drawn per image, i.e. per patch).

    Attributes
    ----------
    shot_range : (float, float)
        Range of the shot-noise factor ``a`` of ``Var = a·x + b`` (x in [0, 1]), drawn
        log-uniformly. Default ``[1e-4, 1.2e-2]``: the range Brooks et al. (2019, §3.2)
        fitted to the raw images of the Darmstadt Noise Dataset (DND) cameras, whose
        noise profiles (DNG metadata) they measured across ISO settings.
    read_slope, read_intercept, read_spread : float
        The read-noise variance ``b`` follows ``a``: ``log b = read_slope · log a +
        read_intercept + N(0, read_spread²)`` (natural logs), Brooks et al.'s linear fit
        of the same profiles (2.18, 1.20, 0.26). At ``a = 1.2e-2`` the read noise has a
        median std of about 0.015 (3.8 on the 0–255 scale).
    correlation_width_range : (float, float)
        :func:`correlated_noise`: standard deviation (pixels) of the Gaussian kernel that
        blurs white noise, drawn uniformly. Default ``[0.4, 1.5]``: from nearly white to
        correlations over 2–3 pixels, the extent that demosaicking (about 1 pixel) and
        in-camera sharpening and denoising (a few pixels) leave in photographs.
    channel_mixing_range : (float, float)
        :func:`correlated_noise` on colour images: fraction ρ in [0, 1] of each
        channel's noise that is shared with the others (``(1−ρ)·I + ρ/C`` with unit-norm
        rows), drawn uniformly. Default ``[0, 0.5]``.
    brightness_range : (float, float)
        :func:`camera_noise`: the raw image is the linear image times this factor,
        drawn uniformly (exposure: Brooks et al. draw 1/N(0.8, 0.1) for its inverse;
        ``[0.6, 1.0]`` covers the same middle range without its tails).
    red_gain_range, blue_gain_range : (float, float)
        :func:`camera_noise`: white-balance gains of the red and blue channels, drawn
        uniformly: Brooks et al.'s ``[1.9, 2.4]`` and ``[1.5, 1.9]`` (green gain 1).
    jpeg_probability : float
        :func:`camera_noise`: probability that an image is JPEG-compressed after
        quantisation (0 never, 1 always).
    jpeg_quality_range : (int, int)
        JPEG quality (Pillow, 1–95 useful) drawn uniformly from this range, ends
        included. Default ``[75, 95]``: camera JPEGs are stored at high quality.
    bits : int
        :func:`camera_noise`: the output is quantised to ``bits`` bits (8 as in a JPEG
        or PNG photograph; 0 = no quantisation, float output in [0, 1]).
    luma_smoothing_range, chroma_smoothing_range : (float, float)
        :func:`camera_noise`: in-camera noise reduction, as image processors apply it
        after demosaicking: the noise's luma (Y) and chroma (Cb, Cr) components are each
        low-pass filtered by a unit-sum Gaussian kernel whose std (pixels) is drawn
        uniformly from these ranges (0 = left as it is). The fine grain goes, the low
        frequencies stay: the per-pixel std falls and what is left is blotchy.
        Processors smooth chroma much more than luma (chroma detail is what the eye
        misses least), which leaves the low-frequency colour noise of high-ISO JPEGs.
        Default ``[0, 0]`` for both (off, as in Brooks et al.); a real-noise recipe sets
        e.g. ``[0, 1.2]`` and ``[0, 4]``.
    smoothing_residual_range : (float, float)
        :func:`camera_noise` with in-camera smoothing: fraction r in [0, 1] of the
        unsmoothed noise the noise reduction keeps, drawn uniformly per image (the
        kernel is ``r·δ + (1 − r)·G``): a processor blends its smoothed result with the
        input, so a fine-grained part of the noise survives beside the blotches.
        Default ``[0, 0]`` (the smoothed noise alone; nothing drawn, so recipes written
        before this option keep their noise stream).
    map_level : {"pixel", "sensor"}
        What :func:`camera_noise`'s std map says after in-camera smoothing. ``"pixel"``
        (default): each pixel's std, which the smoothing lowers. ``"sensor"``: the std
        before the smoothing, i.e. the level of white noise with the same coarse bands
        (a unit-sum low-pass keeps them): the level a Gaussian denoiser must be told to
        clear blotchy noise, which the per-pixel std of the blotches understates several
        times. Without smoothing the two are the same.
    """

    shot_range: tuple[float, float] = (1e-4, 1.2e-2)
    read_slope: float = 2.18
    read_intercept: float = 1.20
    read_spread: float = 0.26
    correlation_width_range: tuple[float, float] = (0.4, 1.5)
    channel_mixing_range: tuple[float, float] = (0.0, 0.5)
    brightness_range: tuple[float, float] = (0.6, 1.0)
    red_gain_range: tuple[float, float] = (1.9, 2.4)
    blue_gain_range: tuple[float, float] = (1.5, 1.9)
    jpeg_probability: float = 0.5
    jpeg_quality_range: tuple[int, int] = (75, 95)
    bits: int = 8
    luma_smoothing_range: tuple[float, float] = (0.0, 0.0)
    chroma_smoothing_range: tuple[float, float] = (0.0, 0.0)
    smoothing_residual_range: tuple[float, float] = (0.0, 0.0)
    map_level: str = "pixel"

    def __post_init__(self) -> None:
        for name in (
            "shot_range",
            "correlation_width_range",
            "channel_mixing_range",
            "brightness_range",
            "red_gain_range",
            "blue_gain_range",
            "jpeg_quality_range",
            "luma_smoothing_range",
            "chroma_smoothing_range",
            "smoothing_residual_range",
        ):
            value = getattr(self, name)
            if len(value) != 2 or not value[0] <= value[1]:
                raise InputError(f"{name}: need two values [lo, hi] with lo <= hi, got {value}")
        self._check_positive_range("shot_range", self.shot_range, upper=1.0)
        self._check_positive_range("correlation_width_range", self.correlation_width_range)
        self._check_positive_range("brightness_range", self.brightness_range, upper=1.0)
        self._check_positive_range("red_gain_range", self.red_gain_range)
        self._check_positive_range("blue_gain_range", self.blue_gain_range)
        lo, hi = self.channel_mixing_range
        if not 0 <= lo <= hi <= 1:
            raise InputError(f"channel_mixing_range: need 0 <= lo <= hi <= 1, got {[lo, hi]}")
        if not self.read_spread >= 0:
            raise InputError(f"read_spread: must be >= 0, got {self.read_spread}")
        for name in ("read_slope", "read_intercept"):
            if not math.isfinite(getattr(self, name)):
                raise InputError(f"{name}: must be finite, got {getattr(self, name)}")
        if not 0 <= self.jpeg_probability <= 1:
            raise InputError(f"jpeg_probability: must be in [0, 1], got {self.jpeg_probability}")
        lo, hi = self.jpeg_quality_range
        if not (int(lo) == lo and int(hi) == hi and 1 <= lo <= hi <= 100):
            raise InputError(
                f"jpeg_quality_range: need integers 1 <= lo <= hi <= 100, got {[lo, hi]}"
            )
        for name in ("luma_smoothing_range", "chroma_smoothing_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= MAX_SMOOTHING:
                raise InputError(f"{name}: need 0 <= lo <= hi <= {MAX_SMOOTHING:g}, got {[lo, hi]}")
        lo, hi = self.smoothing_residual_range
        if not 0 <= lo <= hi <= 1:
            raise InputError(f"smoothing_residual_range: need 0 <= lo <= hi <= 1, got {[lo, hi]}")
        if self.map_level not in MAP_LEVELS:
            raise InputError(
                f"map_level: must be one of {', '.join(MAP_LEVELS)}, got {self.map_level!r}"
            )
        if self.bits not in (0, 8, 16):
            raise InputError(f"bits: must be 0 (none), 8 or 16, got {self.bits}")

    @staticmethod
    def _check_positive_range(name: str, value: tuple[float, float], upper: float = math.inf):
        if not 0 < value[0] <= value[1] <= upper:
            bound = "" if math.isinf(upper) else f" <= {upper:g}"
            raise InputError(f"{name}: need 0 < lo <= hi{bound}, got {list(value)}")

    @classmethod
    def from_dict(cls, values: dict) -> NoiseOptions:
        """Options from a recipe's ``noise_options`` table; unknown keys are refused by
        name, lists become tuples."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise InputError(
                    f"noise_options: unknown key {key!r}; known: {', '.join(sorted(known))}"
                )
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if "bits" in converted:
            converted["bits"] = int(converted["bits"])
        try:
            return cls(**converted)
        except InputError as exc:
            raise InputError(f"noise_options: {exc}") from None

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


DEFAULT_OPTIONS = NoiseOptions()


def quantize(y: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """``y`` clipped to [0, 1] and rounded to ``2**bits`` levels, as a file stores it.

    Parameters
    ----------
    y : Tensor
        Images on the [0, 1] scale, any shape; noise may take them outside.
    bits : int
        Bits per sample: 8 (JPEG, PNG) or 16 (16-bit PNG/TIFF); 0 clips only.

    Returns
    -------
    Tensor
        Same shape and dtype; values ``k / (2**bits − 1)``, k integer.
    """
    if bits not in (0, 8, 16):
        raise InputError(f"bits: must be 0 (clip only), 8 or 16, got {bits}")
    clipped = y.clamp(0.0, 1.0)
    if bits == 0:
        return clipped
    levels = float(2**bits - 1)
    return torch.round(clipped * levels) / levels


def quantization_variance(bits: int) -> float:
    """Variance added by rounding to ``2**bits`` levels, ``Δ²/12`` (0 for ``bits`` = 0):
    exact for noise wider than a step, as camera noise is."""
    return 0.0 if bits == 0 else (1.0 / (2**bits - 1)) ** 2 / 12.0


def _check_images(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"x must be a (B, C, H, W) tensor with C = 1 or 3, got {tuple(x.shape)}")


def _uniform(lo: float, hi: float, count: int, generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(count, generator=generator, device=device)


def _per_image(value: float | torch.Tensor, batch: int, x: torch.Tensor, name: str):
    """A float or a tensor of ``batch`` values as a ``(B, 1, 1, 1)`` tensor like ``x``."""
    level = torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(-1)
    if level.numel() not in (1, batch):
        raise InputError(f"{name}: need one value or one per image ({batch}), got {level.numel()}")
    return level.expand(batch).reshape(batch, 1, 1, 1)


def sample_sensor_noise(
    batch: int,
    *,
    options: NoiseOptions = DEFAULT_OPTIONS,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shot and read noise parameters ``(a, b)``, each of shape ``(B,)``, drawn as
    :class:`NoiseOptions` says (log-uniform ``a``, ``b`` on Brooks et al.'s line)."""
    lo, hi = (math.log(v) for v in options.shot_range)
    log_shot = _uniform(lo, hi, batch, generator, device)
    spread = torch.randn(batch, generator=generator, device=device) * options.read_spread
    log_read = options.read_slope * log_shot + options.read_intercept + spread
    return log_shot.exp(), log_read.exp()


def sensor_noise_for_sigma(
    sigma: float | torch.Tensor, *, options: NoiseOptions = DEFAULT_OPTIONS
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` for a nominal noise level σ (image scale): ``a = σ²`` (the shot noise
    alone has std σ at x = 1) and ``b`` the median of the read noise at that ``a``
    (Brooks et al.'s line without its spread). Evaluation sweeps over σ use it."""
    shot = torch.as_tensor(sigma, dtype=torch.float64).clamp(min=0) ** 2
    read = torch.exp(options.read_slope * torch.log(shot.clamp(min=1e-30)) + options.read_intercept)
    return shot.float(), torch.where(shot > 0, read, torch.zeros_like(read)).float()


def _shot_and_read(
    signal: torch.Tensor, shot: torch.Tensor, read: torch.Tensor, generator
) -> torch.Tensor:
    """Zero-mean Poisson–Gaussian noise for a clean ``signal`` (any ``(B, ...)``):
    ``a·Poisson(x/a) − x`` plus ``N(0, b)``; ``shot``, ``read`` broadcast per image."""
    signal = signal.clamp(min=0)
    safe_shot = shot.clamp(min=1e-12)
    # Poisson counts, not their Gaussian approximation: in dark regions (x/a of a few
    # photons) the counts are skewed, and that is where real noise looks least Gaussian.
    counts = torch.poisson(signal / safe_shot, generator=generator)
    shot_part = torch.where(shot > 0, counts * safe_shot - signal, torch.zeros_like(signal))
    read_part = torch.randn(
        signal.shape, generator=generator, device=signal.device, dtype=signal.dtype
    )
    return shot_part + read_part * read.sqrt()


def poisson_gaussian_noise(
    x: torch.Tensor,
    *,
    shot: float | torch.Tensor | None = None,
    read: float | torch.Tensor | None = None,
    options: NoiseOptions = DEFAULT_OPTIONS,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shot and read noise on the image itself: ``y = a·Poisson(x/a) + N(0, b)``.

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W)
        Clean images in [0, 1] (negative values count as 0 for the shot noise).
    shot, read : float or Tensor of shape (B,), keyword-only
        ``a`` and ``b`` of ``Var(y | x) = a·x + b``. Both None: drawn per image from
        ``options`` (:func:`sample_sensor_noise`); give both or neither.
    options : NoiseOptions, keyword-only
        Ranges of the draw.
    generator : torch.Generator, keyword-only
        Source of every random draw (on ``x``'s device).

    Returns
    -------
    noisy, std_map : Tensor, shape (B, C, H, W)
        ``y`` (not clipped) and ``sqrt(a·max(x, 0) + b)``. Cost: one Poisson and one
        Gaussian draw per value.
    """
    _check_images(x)
    if (shot is None) != (read is None):
        raise InputError("shot, read: give both noise parameters or neither")
    batch = x.shape[0]
    if shot is None:
        shot, read = sample_sensor_noise(
            batch, options=options, generator=generator, device=x.device
        )
    shot = _per_image(shot, batch, x, "shot")
    read = _per_image(read, batch, x, "read")
    if bool((shot < 0).any()) or bool((read < 0).any()):
        raise InputError("shot, read: noise parameters must be >= 0")
    noise = _shot_and_read(x, shot, read, generator)
    return x + noise, (shot * x.clamp(min=0) + read).sqrt()


def _gaussian_kernels(widths: torch.Tensor, radius: int) -> torch.Tensor:
    """``(N, 1, 2r+1, 2r+1)`` Gaussian kernels of the given widths, unit L2 norm (so
    white noise of std 1 stays std 1)."""
    offsets = torch.arange(-radius, radius + 1, dtype=widths.dtype, device=widths.device)
    profile = torch.exp(-0.5 * (offsets / widths[:, None]) ** 2)
    kernels = profile[:, :, None] * profile[:, None, :]
    kernels = kernels / kernels.square().sum(dim=(1, 2), keepdim=True).sqrt()
    return kernels[:, None]


def correlated_noise(
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    options: NoiseOptions = DEFAULT_OPTIONS,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian noise of marginal std σ, correlated across neighbouring pixels (and
    channels): white noise convolved with a unit-norm Gaussian kernel.

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W)
        Clean images.
    sigma : float or Tensor with one value per image
        Marginal standard deviation of every pixel's noise (image scale).
    options : NoiseOptions, keyword-only
        ``correlation_width_range`` (kernel std in pixels, one per image) and, for
        C = 3, ``channel_mixing_range``.
    generator : torch.Generator, keyword-only
        Source of every random draw (on ``x``'s device).

    Returns
    -------
    noisy, std_map : Tensor, shape (B, C, H, W)
        ``x + n`` (not clipped) and σ at every pixel.

    Notes
    -----
    The white noise is drawn on a field larger by the kernel radius on every side and
    convolved without padding, so the noise is stationary up to the borders. The
    neighbour correlation of a kernel of width w is ``exp(−1/(4w²))`` (0.21 at w = 0.4,
    0.89 at w = 1.5). Cost: one grouped convolution of ``(2r+1)²`` taps, r = ⌈3 w_max⌉.
    """
    _check_images(x)
    batch, channels, height, width = x.shape
    sigma = _per_image(sigma, batch, x, "sigma")
    if bool((sigma < 0).any()):
        raise InputError("sigma: must be >= 0")
    widths = _uniform(*options.correlation_width_range, batch, generator, x.device)
    mixing = _uniform(*options.channel_mixing_range, batch, generator, x.device)
    radius = max(1, math.ceil(3 * options.correlation_width_range[1]))
    white = torch.randn(
        (1, batch * channels, height + 2 * radius, width + 2 * radius),
        generator=generator,
        device=x.device,
        dtype=x.dtype,
    )
    kernels = _gaussian_kernels(widths.to(x.dtype), radius).repeat_interleave(channels, dim=0)
    field = F.conv2d(white, kernels, groups=batch * channels).view(batch, channels, height, width)
    if channels > 1:
        eye = torch.eye(channels, dtype=x.dtype, device=x.device)
        rho = mixing.to(x.dtype).view(batch, 1, 1)
        matrix = (1 - rho) * eye + rho / channels
        matrix = matrix / matrix.square().sum(dim=2, keepdim=True).sqrt()  # unit-norm rows
        field = torch.einsum("bij,bjhw->bihw", matrix, field)
    return x + field * sigma, sigma.expand_as(x).contiguous()


# ---------------------------------------------------------------------------------------
# The camera pipeline


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Undo a camera's tone curve: the inverse of :func:`linear_to_srgb` on [0, 1]
    (inverse smoothstep, then gamma 2.2 expansion; Brooks et al. 2019)."""
    x = x.clamp(0.0, 1.0)
    untoned = 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x) / 3.0)
    return untoned.clamp(min=1e-8) ** 2.2


def linear_to_srgb(z: torch.Tensor) -> torch.Tensor:
    """A camera-like tone curve: gamma 1/2.2 compression, then the smoothstep S-curve
    ``3u² − 2u³`` (Brooks et al. 2019); ``z`` is clipped to [0, 1] first."""
    u = z.clamp(1e-8, 1.0) ** (1.0 / 2.2)
    return u * u * (3.0 - 2.0 * u)


def random_rgb_to_camera(
    batch: int, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """``(B, 3, 3)`` linear sRGB → camera RGB matrices: a random convex combination of
    four real cameras' XYZ → camera matrices, times sRGB → XYZ, rows normalised to sum 1
    (white stays white), as Brooks et al. (2019) draw them."""
    weights = torch.rand(batch, len(_XYZ_TO_CAMERA), generator=generator, device=device)
    weights = weights / weights.sum(dim=1, keepdim=True)
    xyz_to_camera = torch.tensor(_XYZ_TO_CAMERA, device=device)
    mixed = torch.einsum("bk,kij->bij", weights, xyz_to_camera)
    rgb_to_camera = mixed @ torch.tensor(_RGB_TO_XYZ, device=device)
    return rgb_to_camera / rgb_to_camera.sum(dim=2, keepdim=True)


def bayer_masks(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(3, H, W)`` 0/1 masks of the R, G, B sites of an RGGB Bayer mosaic (R at the top
    left); any H, W (odd sizes end on a partial 2×2 cell; H, W >= 2 for every pixel to
    have all three colours in its 3×3 neighbourhood, as demosaicking needs)."""
    rows = torch.arange(height, device=device)[:, None] % 2
    cols = torch.arange(width, device=device)[None, :] % 2
    red = (rows == 0) & (cols == 0)
    blue = (rows == 1) & (cols == 1)
    green = ~(red | blue)
    return torch.stack([red, green, blue]).to(dtype)


def _demosaic_kernels(dtype, device) -> torch.Tensor:
    """``(3, 1, 3, 3)`` bilinear interpolation kernels for the R, G, B planes."""
    corner = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    cross = torch.tensor([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]])
    return torch.stack([corner, cross, corner])[:, None].to(dtype=dtype, device=device)


def demosaic_bilinear(planes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicking of a mosaic spread into ``(B, 3, H, W)`` planes (zeros off
    each channel's sites), with the ``(3, H, W)`` masks of :func:`bayer_masks`.

    A normalised convolution: ``conv(planes, k) / conv(masks, k)``. Inside the image
    the denominator is 1 (plain bilinear interpolation); at the borders it renormalises
    over the sites that exist, so odd sizes and edges need no special case. Linear in
    ``planes``.
    """
    kernels = _demosaic_kernels(planes.dtype, planes.device)
    weight = F.conv2d(masks[None], kernels, padding=1, groups=3)
    return F.conv2d(planes, kernels, padding=1, groups=3) / weight


def _demosaicked_variance(site_variance: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-channel variance after :func:`demosaic_bilinear` of independent noise whose
    variance at each site is ``site_variance`` ``(B, 1, H, W)``: Σ w² v / (Σ w)²."""
    kernels = _demosaic_kernels(site_variance.dtype, site_variance.device)
    weight = F.conv2d(masks[None], kernels, padding=1, groups=3)
    spread = F.conv2d(site_variance * masks, kernels.square(), padding=1, groups=3)
    return spread / weight.square()


@dataclass
class _Camera:
    """One draw of the camera of each image: colour matrix, gains, noise parameters."""

    rgb_to_camera: torch.Tensor  # (B, 3, 3)
    gains: torch.Tensor  # (B, 3): white balance × exposure, applied when processing
    shot: torch.Tensor  # (B,)
    read: torch.Tensor  # (B,)

    @classmethod
    def draw(cls, batch: int, options: NoiseOptions, generator, device) -> _Camera:
        matrix = random_rgb_to_camera(batch, generator=generator, device=device)
        brightness = _uniform(*options.brightness_range, batch, generator, device)
        red = _uniform(*options.red_gain_range, batch, generator, device)
        blue = _uniform(*options.blue_gain_range, batch, generator, device)
        gains = torch.stack([red, torch.ones_like(red), blue], dim=1) / brightness[:, None]
        shot, read = sample_sensor_noise(batch, options=options, generator=generator, device=device)
        return cls(matrix, gains, shot, read)


def _process(raw: torch.Tensor, camera: _Camera, camera_to_rgb: torch.Tensor) -> torch.Tensor:
    """Camera RGB (white balance not applied) → linear sRGB: gains, then colour matrix."""
    balanced = raw * camera.gains[:, :, None, None]
    return torch.einsum("bij,bjhw->bihw", camera_to_rgb, balanced)


def camera_noise(
    x: torch.Tensor,
    *,
    sigma: float | torch.Tensor | None = None,
    options: NoiseOptions = DEFAULT_OPTIONS,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise as a camera makes it: sensor noise in the raw Bayer mosaic, carried through
    a camera's processing back to sRGB.

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W)
        Clean sRGB images in [0, 1], C = 1 or 3, any H, W >= 2.
    sigma : float or Tensor with one value per image, keyword-only
        Nominal noise level (image scale): the raw shot and read noise of
        :func:`sensor_noise_for_sigma`. None draws them from ``options``
        (:func:`sample_sensor_noise`). The camera (colour matrix, gains, JPEG) is drawn
        from ``options`` either way.
    options : NoiseOptions, keyword-only
        Parameter ranges, output bits and JPEG.
    generator : torch.Generator, keyword-only
        Source of every random draw (on ``x``'s device; JPEG runs on the CPU).

    Returns
    -------
    noisy : Tensor, shape (B, C, H, W)
        In [0, 1], quantised to ``options.bits`` bits (and JPEG-compressed for a
        fraction ``jpeg_probability`` of the images).
    std_map : Tensor, shape (B, C, H, W)
        Approximate standard deviation of the noise (see Notes).

    Notes
    -----
    Steps (Brooks et al. 2019, with CBDNet's mosaic and demosaicking): inverse tone
    curve and gamma (:func:`srgb_to_linear`); linear sRGB → camera RGB by a random
    colour matrix; inverse white balance and exposure (red, blue gains, brightness);
    the RGGB mosaic; Poisson shot noise ``a·Poisson(x/a)`` and Gaussian read noise of
    variance ``b`` at each site; bilinear demosaicking; white balance; camera → sRGB;
    tone curve; quantisation; JPEG.

    Only the *noise* goes through the demosaicking: the clean signal is not
    re-interpolated (y = T(M·G·(raw + D(n))) with D the bilinear demosaic and n the
    mosaic noise), so the noise has a demosaicker's spatial and cross-channel structure
    while ``noisy`` has no interpolation artefacts that are not noise: a network trained
    on these pairs learns to remove noise, not to redo a camera's demosaicking (whose
    result is part of a real photograph's ground truth, the mean of many shots). With
    σ = 0 and no quantisation or JPEG, ``noisy`` equals ``x`` up to rounding.

    Gray images are made as gray photographs are: the image is repeated to RGB, sent
    through the colour pipeline, and converted back with :data:`LUMA_WEIGHTS`.

    ``std_map`` linearises the tone curve around the clean value (the difference of
    the curve over ±1 std of the linear noise, so it stays finite in the shadows and
    falls at the clip to 1), propagates the demosaicked raw variance exactly through
    the gains and the colour matrix, and adds the quantisation variance. It ignores
    JPEG (which removes part of the noise and adds its own error) and the clipping of
    the noise at 0 and 1 beyond the tone curve's: an approximation, within about 10%
    on mid-gray flat patches (tests/test_noise.py).

    Cost: a few elementwise passes, two 3×3 grouped convolutions and a Poisson draw per
    pixel; JPEG goes through Pillow one image at a time on the CPU.
    """
    _check_images(x)
    batch, channels, height, width = x.shape
    if min(height, width) < 2:
        raise InputError(f"x: the Bayer mosaic needs H, W >= 2, got {tuple(x.shape)}")
    device, dtype = x.device, x.dtype
    camera = _Camera.draw(batch, options, generator, device)
    if sigma is not None:
        level = _per_image(sigma, batch, x, "sigma").reshape(-1)
        shot, read = sensor_noise_for_sigma(level, options=options)
        camera.shot, camera.read = shot.to(device), read.to(device)
    rgb = x.expand(batch, 3, height, width) if channels == 1 else x
    camera_to_rgb = torch.linalg.inv(camera.rgb_to_camera.double()).to(dtype)
    rgb_to_camera = camera.rgb_to_camera.to(dtype)
    gains = camera.gains.to(dtype)

    linear = srgb_to_linear(rgb)
    raw = torch.einsum("bij,bjhw->bihw", rgb_to_camera, linear) / gains[:, :, None, None]
    masks = bayer_masks(height, width, device=device, dtype=dtype)
    mosaic = (raw * masks).sum(dim=1, keepdim=True)
    shot = camera.shot.to(dtype).view(-1, 1, 1, 1)
    read = camera.read.to(dtype).view(-1, 1, 1, 1)
    site_noise = _shot_and_read(mosaic, shot, read, generator)
    raw_noise = demosaic_bilinear(site_noise * masks, masks)
    noisy_linear = _process(raw + raw_noise, camera, camera_to_rgb)
    noisy = linear_to_srgb(noisy_linear)
    smoothing = torch.ones(batch, channels, device=device, dtype=dtype)
    if options.luma_smoothing_range[1] > 0 or options.chroma_smoothing_range[1] > 0:
        noisy, smoothing = _in_camera_smoothing(noisy, linear, channels, options, generator)

    # The std map: raw variance through the demosaic, gains and colour matrix exactly
    # (the three channels' demosaicked noise comes from disjoint sites: independent).
    site_variance = shot * mosaic.clamp(min=0) + read
    raw_variance = _demosaicked_variance(site_variance, masks) * gains[:, :, None, None] ** 2
    linear_std = torch.einsum("bij,bjhw->bihw", camera_to_rgb.square(), raw_variance).sqrt()
    clean_linear = linear  # _process(raw) undoes the unprocessing exactly
    # Effective slope of the tone curve over ±1 std of the linear noise, per channel.
    output_std = 0.5 * (
        linear_to_srgb(clean_linear + linear_std) - linear_to_srgb(clean_linear - linear_std)
    )
    slope = torch.where(linear_std > 0, output_std / linear_std.clamp(min=1e-12), 0.0)
    if channels == 1:
        luma = torch.tensor(LUMA_WEIGHTS, dtype=dtype, device=device)
        noisy = luminance(noisy)
        # gray noise = Σ_c w_c t_c Σ_k M_ck n_k: variance Σ_k (Σ_c w_c t_c M_ck)² v_k
        weights = torch.einsum("c,bchw,bck->bkhw", luma, slope, camera_to_rgb)
        variance = (weights.square() * raw_variance).sum(dim=1, keepdim=True)
    else:
        variance = output_std.square()
    if options.map_level == "pixel":
        variance = variance * smoothing[:, :, None, None]
    if options.bits:
        noisy = quantize(noisy, options.bits)
        variance = variance + quantization_variance(options.bits)
    else:
        noisy = noisy.clamp(0.0, 1.0)
    if options.jpeg_probability > 0:
        noisy = _maybe_jpeg(noisy, options, generator)
    return noisy, variance.sqrt()


def _in_camera_smoothing(
    noisy: torch.Tensor,
    clean_linear: torch.Tensor,
    channels: int,
    options: NoiseOptions,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A camera processor's noise reduction on the processed noise: its Y, Cb and Cr
    components each low-pass filtered by a unit-sum Gaussian kernel (widths drawn per image,
    :class:`NoiseOptions`). ``noisy`` is RGB (B, 3, H, W) before quantisation; returns
    it smoothed and, shape (B, ``channels``), the ratio of each output channel's
    empirical noise variance after to before (the RGB channels, or for a gray output
    its luma; smoothing Y and C with different kernels changes each RGB channel's
    variance a little; the std map is rescaled by it)."""
    batch, _, height, width = noisy.shape
    device, dtype = noisy.device, noisy.dtype
    luma = _uniform(*options.luma_smoothing_range, batch, generator, device)
    chroma = _uniform(*options.chroma_smoothing_range, batch, generator, device)
    clean = linear_to_srgb(clean_linear)
    noise = noisy - clean
    to_ycbcr = torch.tensor(_RGB_TO_YCBCR, dtype=dtype, device=device)
    components = torch.einsum("ij,bjhw->bihw", to_ycbcr, noise)
    widths = torch.stack([luma, chroma, chroma], dim=1).reshape(-1).to(dtype)
    radius = max(
        1, math.ceil(3 * max(options.luma_smoothing_range[1], options.chroma_smoothing_range[1]))
    )
    # A width of 0 gives a unit impulse: exp(-x²/2w²) underflows to 0 off the centre.
    kernels = _gaussian_kernels(widths.clamp(min=1e-3), radius)
    # Unit sum, not unit norm: noise reduction is a low-pass that keeps the noise's
    # low frequencies as they were and removes its fine grain (a unit-norm kernel
    # would amplify the demosaicked noise's low frequencies many times).
    kernels = kernels / kernels.sum(dim=(2, 3), keepdim=True)
    # Mirrored borders keep the noise's statistics there (replicated edges would repeat
    # one value and inflate the variance); images narrower than the kernel replicate.
    mode = "reflect" if radius < min(height, width) else "replicate"
    padded = F.pad(components.reshape(1, batch * 3, height, width), [radius] * 4, mode=mode)
    smoothed = F.conv2d(padded, kernels, groups=batch * 3).view(batch, 3, height, width)
    if options.smoothing_residual_range[1] > 0:
        kept = _uniform(*options.smoothing_residual_range, batch, generator, device)
        kept = kept.to(dtype).view(batch, 1, 1, 1)
        smoothed = kept * components + (1 - kept) * smoothed
    new_noise = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_ycbcr), smoothed)
    if channels == 1:  # the gray output's noise is the luma component
        before, after = components[:, :1], smoothed[:, :1]
    else:
        before, after = noise, new_noise
    ratio = after.square().mean(dim=(2, 3)) / before.square().mean(dim=(2, 3)).clamp(min=1e-20)
    return clean + new_noise, ratio


def _maybe_jpeg(
    images: torch.Tensor, options: NoiseOptions, generator: torch.Generator | None
) -> torch.Tensor:
    """Each image JPEG-compressed (Pillow, 4:2:0 chroma for colour) with probability
    ``jpeg_probability`` at a quality drawn uniformly from ``jpeg_quality_range``."""
    from PIL import Image  # Pillow: a dependency; imported here as only JPEG needs it

    batch = images.shape[0]
    chosen = torch.rand(batch, generator=generator, device=images.device)
    chosen = (chosen < options.jpeg_probability).cpu()
    lo, hi = options.jpeg_quality_range
    qualities = torch.randint(
        int(lo), int(hi) + 1, (batch,), generator=generator, device=images.device
    ).cpu()
    if not bool(chosen.any()):
        return images
    out = images.clone()
    pixels = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    for index in torch.nonzero(chosen).flatten().tolist():
        array = pixels[index].permute(1, 2, 0).numpy()
        image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(qualities[index]))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert(image.mode))
        decoded = decoded.reshape(array.shape).astype(np.float32) / 255.0
        out[index] = torch.from_numpy(decoded).permute(2, 0, 1).to(out)
    return out
