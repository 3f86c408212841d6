"""Classical denoisers as baselines beside the networks: BM3D and non-local means.

Both follow the denoiser interface of :class:`filterscope.models.Denoiser`:
``forward(y, sigma) -> x_hat`` on ``(B, C, H, W)`` tensors with images nominally in
[0, 1] and σ on the image scale (25/255 ≈ 0.098). They need the noise level, which
they take from one of two sources:

- ``sigma_source="true"`` (default): the σ the caller passes, i.e. the true noise level
  of a sweep (``blind = False``, so :func:`filterscope.evaluation.evaluate` passes it);
- ``sigma_source="estimated"``: σ estimated from each noisy image with
  :func:`estimate_noise_sigma` (wavelet median absolute deviation, Donoho & Johnstone
  1994, over the image's flattest quarter); the σ passed in is ignored, which makes
  the method blind (``blind = True``), comparable with blind networks on equal terms.

:meth:`~filterscope.models.base.Denoiser.denoise_with_info` returns the estimates with
the result (``"sigma"`` per image, image scale), and the sweep records them per image.

Both run on the CPU in float64 NumPy, one image at a time; tensors on another device
are moved to the CPU and back.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ChannelError, FilterscopeError, InputError
from ..models.base import Denoised, Denoiser, per_image_sigmas
from ..noise import estimate_noise_level

SIGMA_SOURCES = ("true", "estimated")


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Noise standard deviation of one image, estimated from its finest wavelet band.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        One noisy image, C = 1 or 3, any scale (the estimate is on the same scale).

    Returns
    -------
    float
        :func:`filterscope.noise.estimate_noise_level` of the image: the median
        absolute deviation of its db2 diagonal detail band over its flattest quarter,
        averaged over channels. Accurate for white Gaussian noise; fine texture that
        remains in the flattest quarter still inflates it a little.

    Notes
    -----
    Cost: one level of a 2-D Daubechies wavelet transform per channel, ``O(H W C)``.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return float(estimate_noise_level(tensor.double()))


class _ClassicalDenoiser(Denoiser):
    """Per-image NumPy denoiser with a true or estimated σ (see the module docstring)."""

    #: Name used in error messages and model descriptions.
    method = ""
    differentiable = False  # NumPy code: no Jacobian

    def __init__(self, *, sigma_source: str = "true"):
        super().__init__()
        if sigma_source not in SIGMA_SOURCES:
            raise InputError(
                f"sigma_source must be one of {', '.join(SIGMA_SOURCES)}, got {sigma_source!r}"
            )
        self._sigma_source = sigma_source
        # With an estimated σ the method needs nothing from the caller: it is blind.
        self.blind = sigma_source == "estimated"

    @property
    def sigma_source(self) -> str:
        """``"true"`` (the σ passed in) or ``"estimated"`` (from each noisy image)."""
        return self._sigma_source

    def _denoise_image(self, image: np.ndarray, sigma: float) -> np.ndarray:
        raise NotImplementedError

    def forward(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        return self.denoise_with_info(y, sigma).x_hat

    def denoise_with_info(
        self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs
    ) -> Denoised:
        """The estimate, and in estimate mode each image's σ (image scale) as ``"sigma"``."""
        if y.dim() != 4 or y.shape[1] not in (1, 3):
            raise ChannelError(
                f"{self.method} expects a (B, C, H, W) tensor with C = 1 or 3, got {tuple(y.shape)}"
            )
        images = y.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
        if self.sigma_source == "true":
            sigmas = per_image_sigmas(self.require_sigma(sigma), y.shape[0])
            per_image = [{} for _ in sigmas]
        else:
            sigmas = [estimate_noise_sigma(image) for image in images]
            per_image = [{"sigma": s} for s in sigmas]
        out = np.stack(
            [self._denoise_image(image, float(s)) for image, s in zip(images, sigmas, strict=True)]
        )
        x_hat = torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))
        return Denoised(x_hat.to(device=y.device, dtype=y.dtype), per_image)

    def extra_repr(self) -> str:
        return f"sigma_source={self.sigma_source!r}"


class BM3DDenoiser(_ClassicalDenoiser):
    """BM3D (Dabov et al. 2007), through the ``bm3d`` package of Mäkinen et al.

    Parameters
    ----------
    sigma_source : {"true", "estimated"}, keyword-only
        Use the σ given to :meth:`forward` (the default; ``blind = False``), or
        estimate it from each noisy image with :func:`estimate_noise_sigma` and
        ignore the given one (``blind = True``).
    profile : str, keyword-only
        ``bm3d`` parameter profile; ``"np"`` (the package default, "normal profile")
        is the setting of the published BM3D results.

    Notes
    -----
    ``forward(y, sigma)`` takes a ``(B, C, H, W)`` tensor, C = 1 (gray: ``bm3d.bm3d``)
    or C = 3 (RGB: ``bm3d.bm3d_rgb``, collaborative filtering in the opponent colour
    space), noisy images nominally in [0, 1] and not clipped, and σ on the image scale
    (float or one per image). It returns an estimate of the same shape and dtype,
    not clipped. σ = 0 returns the input unchanged (there is nothing to remove).

    Cost: both stages (hard thresholding, then Wiener filtering) of BM3D per image,
    in the package's compiled code; about 3.6 s for a 256×256 gray image on one busy
    CPU core, so a 10-σ sweep of BSD68 (68 images of 481×321) takes one to two
    hours. The package is single-image and CPU-only.

    References
    ----------
    K. Dabov, A. Foi, V. Katkovnik, K. Egiazarian, "Image denoising by sparse 3-D
    transform-domain collaborative filtering", IEEE TIP 16(8), 2007.
    Y. Mäkinen, L. Azzari, A. Foi, "Collaborative filtering of correlated noise:
    exact transform-domain variance for improved shrinkage and patch matching",
    IEEE TIP 29, 2020 (the ``bm3d`` package).
    """

    method = "bm3d"

    def __init__(self, *, sigma_source: str = "true", profile: str = "np"):
        super().__init__(sigma_source=sigma_source)
        self.profile = profile
        self._bm3d = _import_bm3d()

    def _denoise_image(self, image: np.ndarray, sigma: float) -> np.ndarray:
        if sigma <= 0:
            return image.copy()
        if image.shape[-1] == 3:
            out = self._bm3d.bm3d_rgb(image, sigma, profile=self.profile)
        else:
            out = self._bm3d.bm3d(image[..., 0], sigma, profile=self.profile)[..., None]
        return np.asarray(out, dtype=np.float64).reshape(image.shape)

    def extra_repr(self) -> str:
        return f"sigma_source={self.sigma_source!r}, profile={self.profile!r}"


class NLMDenoiser(_ClassicalDenoiser):
    """Non-local means (Buades et al. 2005), scikit-image's ``denoise_nl_means``.

    Parameters
    ----------
    sigma_source : {"true", "estimated"}, keyword-only
        Use the σ given to :meth:`forward` (the default; ``blind = False``), or
        estimate it from each noisy image with :func:`estimate_noise_sigma` and
        ignore the given one (``blind = True``).
    patch_size : int, keyword-only
        Side of the compared patches (default 5).
    patch_distance : int, keyword-only
        Search radius in pixels (default 6: a 13×13 search window).
    h_factor : float, keyword-only
        Filtering parameter ``h = h_factor · σ`` (default 0.8).

    Notes
    -----
    The defaults are the settings of scikit-image's non-local means example for the
    fast algorithm given σ (``patch_size=5, patch_distance=6, h=0.8·σ, sigma=σ,
    fast_mode=True``): with ``sigma`` given, the expected noise variance is subtracted
    from the patch distances, and ``h`` of about 0.8 σ was hand-tuned there for
    near-best PSNR. They are not tuned per noise level here, so NLM is a simple, honest
    reference rather than the best NLM possible.

    ``forward(y, sigma)`` takes a ``(B, C, H, W)`` tensor, C = 1 or 3 (colour patches
    compared over all channels with ``channel_axis``), noisy images nominally in
    [0, 1] and not clipped, and σ on the image scale (float or one per image). It
    returns an estimate of the same shape and dtype, not clipped. σ = 0 returns the
    input unchanged.

    Cost: ``O(H W C · (2 d + 1)^2)`` for search distance ``d`` with the fast
    (integral-image) algorithm, independent of the patch size; about 0.08 s for a
    256×256 gray image on one CPU core.

    References
    ----------
    A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image denoising",
    CVPR 2005.
    J. Darbon, A. Cunha, T. F. Chan, S. Osher, G. J. Jensen, "Fast nonlocal filtering
    applied to electron cryomicroscopy", ISBI 2008 (the fast algorithm).
    """

    method = "nlm"

    def __init__(
        self,
        *,
        sigma_source: str = "true",
        patch_size: int = 5,
        patch_distance: int = 6,
        h_factor: float = 0.8,
    ):
        super().__init__(sigma_source=sigma_source)
        self.patch_size = int(patch_size)
        self.patch_distance = int(patch_distance)
        self.h_factor = float(h_factor)

    def _denoise_image(self, image: np.ndarray, sigma: float) -> np.ndarray:
        from skimage.restoration import denoise_nl_means

        if sigma <= 0:
            return image.copy()
        color = image.shape[-1] == 3
        out = denoise_nl_means(
            image if color else image[..., 0],
            patch_size=self.patch_size,
            patch_distance=self.patch_distance,
            h=self.h_factor * sigma,
            sigma=sigma,
            fast_mode=True,
            # Keep the values as they are: the noisy input is not clipped to [0, 1].
            preserve_range=True,
            channel_axis=-1 if color else None,
        )
        return np.asarray(out, dtype=np.float64).reshape(image.shape)

    def extra_repr(self) -> str:
        return (
            f"sigma_source={self.sigma_source!r}, patch_size={self.patch_size}, "
            f"patch_distance={self.patch_distance}, h_factor={self.h_factor}"
        )


def _import_bm3d():
    try:
        import bm3d
    except ImportError:
        raise FilterscopeError(
            "the bm3d baseline needs the optional bm3d package (free for non-commercial "
            "use only); install it with `pip install 'filterscope[baselines]'`"
        ) from None
    return bm3d


#: Baseline names accepted by :func:`create_baseline` (and ``--model`` on the CLI).
BASELINES = {"bm3d": BM3DDenoiser, "nlm": NLMDenoiser}


def create_baseline(name: str, *, sigma_source: str = "true") -> Denoiser:
    """A classical baseline by name: ``"bm3d"`` or ``"nlm"``.

    Parameters
    ----------
    name : {"bm3d", "nlm"}
        The method.
    sigma_source : {"true", "estimated"}, keyword-only
        Where its noise level comes from (see the module docstring).
    """
    if name not in BASELINES:
        raise InputError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return BASELINES[name](sigma_source=sigma_source)


__all__ = [
    "BASELINES",
    "BM3DDenoiser",
    "NLMDenoiser",
    "create_baseline",
    "estimate_noise_sigma",
]
