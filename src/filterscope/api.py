"""NumPy in, NumPy out: :func:`denoise` for users who hold an image as an array.

Like scikit-image's ``denoise_*`` functions: a gray ``(H, W)`` or colour ``(H, W, 3)``
array, float in [0, 1] or uint8/uint16 scaled by its maximum, comes back as a float
array of the same shape. Any size works: the image is denoised tile by tile as
``filterscope denoise`` does (:func:`filterscope.inference.denoise_tensor`).
"""

from __future__ import annotations

import functools
import numbers
from typing import TYPE_CHECKING

import numpy as np

from .errors import FilterscopeError, InputError
from .io import check_pixels

if TYPE_CHECKING:
    from torch import nn


#: Integer types an array may have: scaled by their maximum, as image files are.
INTEGER_TYPES = (np.uint8, np.uint16)


def _as_float_image(image: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """``(H, W, C)`` float array in [0, 1] (nominally) from the caller's layout and dtype."""
    array = np.asarray(image)
    dtype = array.dtype
    if np.issubdtype(dtype, np.integer) and dtype not in INTEGER_TYPES:
        # int64 scaled by its maximum gives ~1e-17, int8 negative values: refuse both.
        raise InputError(
            f"image has dtype {dtype}; integer images must be uint8 (0-255) or uint16 "
            "(0-65535), or give floats in [0, 1]: e.g. image.astype(numpy.uint8) for "
            "values 0-255, or image / 255"
        )
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InputError(f"image must be a float or integer array, got dtype {dtype}")
    if np.issubdtype(dtype, np.integer):
        array = array.astype(np.float64) / np.iinfo(dtype).max
    if channel_axis is None:
        if array.ndim == 2:
            array = array[..., None]
        elif array.ndim != 3:
            raise InputError(
                f"image must be (H, W) gray or (H, W, 3) colour, got shape {array.shape}"
            )
    else:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
            raise InputError(f"channel_axis must be an integer axis or None, got {channel_axis!r}")
        if array.ndim != 3:
            raise InputError(
                f"with channel_axis={channel_axis} the image must have 3 dimensions, "
                f"got shape {array.shape}"
            )
        if not -3 <= channel_axis < 3:
            raise InputError(
                f"channel_axis must be an axis of the 3-dimensional image (-3 to 2), "
                f"got {channel_axis}"
            )
        array = np.moveaxis(array, int(channel_axis), -1)
    if array.shape[-1] not in (1, 3):
        raise InputError(
            f"image must have 1 or 3 channels, got {array.shape[-1]} (shape {array.shape}); "
            "set channel_axis if the channels are not on the last axis"
        )
    check_pixels(array, "image")
    return array


def _shipped_model(name: str) -> nn.Module:
    """The shipped model ``name``, read once per weights file: :func:`denoise` only runs
    it (prepared copies, or the estimator under ``inference_mode``) and never hands it
    out, so calls after the first skip reading and building it (about 0.03 s each)."""
    from .models.zoo import shipped_weights

    path = shipped_weights(name)
    stat = path.stat()
    return _load_once(name, str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load_once(name: str, path: str, mtime_ns: int, size: int) -> nn.Module:
    from .hub import load_model

    return load_model(name)


def denoise(
    image: np.ndarray,
    *,
    model: str | nn.Module = "default",
    sigma: float | None = None,
    channel_axis: int | None = None,
    tile: int = 512,
    noise_type: str = "auto",
    precision: str | None = None,
) -> np.ndarray:
    """Denoise one image held as a NumPy array.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Gray or RGB image: float nominally in [0, 1], or uint8 / uint16 scaled by its
        maximum (/ 255, / 65535). Other integer types are refused rather than guessed
        at: scaled by its maximum an int64 image comes out near 1e-17 and a signed one
        negative; convert it (``image.astype(numpy.uint8)`` for 0-255 values, or
        ``image / 255``). Each side needs at least 2 pixels (as for image files, so
        ``1 x N`` arrays are refused in Python and on the command line alike); NaN and
        infinite values are refused, naming how many and the first as (x, y).
    model : str or nn.Module, keyword-only
        ``"default"`` (the shipped model for the image's channel count and, by
        ``noise_type``, its kind of noise), any name or path
        :func:`filterscope.load_model` accepts, or a loaded denoiser.
    sigma : float or None, keyword-only
        Noise standard deviation on the image scale (25/255 for σ = 25 on 0–255), in
        [0, 1]: a value above 1 is a σ on the 0-255 scale given by mistake and is
        refused ("did you mean 25/255?"). Blind models ignore it, non-blind ones
        (``bm3d``, ``ntk``...) need it.
    channel_axis : int or None, keyword-only
        Axis of the channels. None: a 2-D array is gray and a 3-D array has its
        channels last.
    tile : int, keyword-only
        Tile side in pixels; the halo around each tile is the model's receptive
        radius, so a convolutional network gives the whole-image result.
    noise_type : {"auto", "gaussian", "real"}, keyword-only
        With ``model="default"``: ``"real"`` takes the shipped real-camera-noise model
        of the image's channel count, ``"gaussian"`` the default, ``"auto"`` chooses by the image
        (:func:`filterscope.inference.choose_shipped_model`; a given ``sigma`` means
        Gaussian noise). Ignored for other models.
    precision : {"auto", "float32", "bfloat16"} or None, keyword-only
        Arithmetic of a filterscope network (:func:`filterscope.inference.prepare_model`,
        as ``filterscope denoise`` runs it): None or ``"auto"`` takes bfloat16 where the
        CPU runs it natively (about 3x faster there, a few thousandths of a dB apart) and
        float32 elsewhere. Methods without weights (BM3D, NLM) and modules of the user's
        that are no :class:`~filterscope.models.base.Denoiser` run as they are.

    Returns
    -------
    ndarray
        The estimate, the shape of ``image``, not clipped; float32 for a float32
        input, float64 otherwise.

    Raises
    ------
    InputError
        An array that is not a gray or colour image (see ``image``), a ``sigma`` that is
        not one number in [0, 1], a ``channel_axis`` that is not an axis, or a module
        of the user's that fails on a ``(B, C, H, W)`` batch or changes its shape.
    UnknownModelError, ChannelError, CheckpointError
        A model that cannot be loaded or does not take the image's channels.

    Examples
    --------
    >>> import numpy as np, filterscope as fs
    >>> noisy = np.clip(0.5 + 0.1 * np.random.default_rng(0).standard_normal((40, 50)), 0, 1)
    >>> fs.denoise(noisy).shape
    (40, 50)
    """
    import torch

    from .hub import load_model
    from .inference import (
        check_noise_type,
        choose_shipped_model,
        denoise_tensor,
        prepare_model,
        validate_sigma,
    )
    from .machine import AUTO, choose_precision
    from .models.base import Denoiser

    original = np.asarray(image)
    array = _as_float_image(original, channel_axis)
    sigma = validate_sigma(sigma)
    check_noise_type(noise_type)
    choose_precision("denoise", requested=AUTO if precision is None else precision)
    y = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]
    if isinstance(model, str) and model == "default":
        name, _ = choose_shipped_model(y, sigma=sigma, noise_type=noise_type, load=_shipped_model)
        denoiser = _shipped_model(name)
    else:
        denoiser = model if isinstance(model, torch.nn.Module) else load_model(model)
    # A filterscope network runs as the command line runs it; a module of the user's
    # (which need not take sigma) runs as it is.
    runner = (
        prepare_model(denoiser, precision=precision) if isinstance(denoiser, Denoiser) else denoiser
    )
    try:
        x_hat = denoise_tensor(runner, y, tile=tile, sigma=sigma)
    except (RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, (FilterscopeError, torch.OutOfMemoryError)) or isinstance(
            denoiser, Denoiser
        ):
            raise
        # A module of the user's that is no denoiser (nn.Linear(3, 3)): say so in one line.
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(
            f"model {type(denoiser).__name__} does not denoise a (B, C, H, W) batch "
            f"(here {tuple(y.shape)}): {detail}"
        ) from exc
    out = x_hat[0].permute(1, 2, 0).numpy()
    dtype = np.float32 if original.dtype == np.float32 else np.float64
    if channel_axis is None:
        out = out[..., 0] if original.ndim == 2 else out
    else:
        out = np.moveaxis(out, -1, channel_axis)
    return out.astype(dtype, copy=False)


__all__ = ["denoise"]
