"""Reading and writing images: PNG, TIFF and JPEG; 8/16-bit integer or float; gray or RGB.

Images travel through the library as float32 arrays in [0, 1] of shape ``(H, W, C)``
(``C`` = 1 or 3) together with an :class:`ImageInfo` that remembers how the file was
stored, so that a result can be written back in the input's mode and bit depth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._files import atomic_write, check_output_paths
from .errors import InputError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm")
_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class ImageInfo:
    """How an image was stored on disk.

    Attributes
    ----------
    dtype : str
        ``"uint8"``, ``"uint16"`` or ``"float32"``.
    channels : int
        1 (gray) or 3 (RGB).
    format : str
        Lower-case file suffix without the dot (``"png"``, ``"tif"``, ...).
    """

    dtype: str
    channels: int
    format: str


def _to_unit_range(raw: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / 255.0, "uint8"
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) / 65535.0, "uint16"
    if raw.dtype == np.bool_:
        return raw.astype(np.float32), "uint8"
    if np.issubdtype(raw.dtype, np.floating):
        image = raw.astype(np.float32)
        if not np.all(np.isfinite(image)):
            raise InputError(f"{path}: image contains NaN or Inf values")
        return image, "float32"
    raise InputError(f"{path}: unsupported pixel type {raw.dtype}")


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file into a float32 array in [0, 1].

    Parameters
    ----------
    path : str or path-like
        PNG, TIFF, JPEG (or another format Pillow reads). 8- and 16-bit integer images
        are scaled to [0, 1]; float TIFFs are taken as they are (values are not clipped).

    Returns
    -------
    image : ndarray, shape (H, W, C), float32
        ``C`` is 1 for gray and 3 for RGB images.
    info : ImageInfo
        Storage type, so :func:`write_image` can write a result in the same form.

    Raises
    ------
    InputError
        Missing file, directory, unreadable or truncated file, alpha channel, palette
        images, a side of fewer than 2 pixels, NaN or Inf values.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file")
    suffix = path.suffix.lower()
    if suffix in _TIFF_SUFFIXES:
        raw = _read_tiff(path)
    else:
        raw = _read_with_pillow(path)
    if raw.ndim == 2:
        raw = raw[:, :, None]
    if raw.ndim != 3:
        raise InputError(f"{path}: expected a 2-D image, got an array of shape {raw.shape}")
    channels = raw.shape[2]
    if channels in (2, 4):
        raise InputError(f"{path}: image has an alpha channel; remove it (flatten) first")
    if channels not in (1, 3):
        raise InputError(f"{path}: expected 1 (gray) or 3 (RGB) channels, got {channels}")
    if min(raw.shape[:2]) < 2:
        raise InputError(
            f"{path}: image is {raw.shape[1]}x{raw.shape[0]} pixels; each side needs at least 2"
        )
    image, dtype = _to_unit_range(raw, path)
    return np.ascontiguousarray(image), ImageInfo(dtype, channels, suffix.lstrip("."))


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        raw = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(f"{path}: not a readable TIFF image ({_first_line(exc)})") from None
    # Planar (C, H, W) storage of a small number of channels.
    if raw.ndim == 3 and raw.shape[0] in (1, 3, 4) and raw.shape[2] not in (1, 3, 4):
        raw = np.moveaxis(raw, 0, -1)
    return raw


def _read_with_pillow(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format == "PNG" and img.mode == "RGB" and _png_bit_depth(path) == 16:
                # Pillow would silently reduce 16-bit RGB PNGs to 8 bits.
                raise InputError(
                    f"{path}: 16-bit RGB PNG is not supported (it would lose precision); "
                    "convert it to a 16-bit TIFF"
                )
            img.load()
            mode = img.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
                raise InputError(f"{path}: image has an alpha channel; remove it (flatten) first")
            if mode == "P":
                img = img.convert("RGB")
            elif mode == "1":
                img = img.convert("L")
            elif mode == "CMYK" or mode == "YCbCr":
                img = img.convert("RGB")
            elif mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.uint16)
            elif mode == "I":
                arr = np.asarray(img)
                if arr.min() < 0 or arr.max() > 65535:
                    raise InputError(f"{path}: 32-bit integer image out of the 16-bit range")
                return arr.astype(np.uint16)
            elif mode == "F":
                return np.asarray(img, dtype=np.float32)
            elif mode not in ("L", "RGB"):
                raise InputError(f"{path}: unsupported image mode {mode}")
            return np.asarray(img)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (format not recognised)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: {_first_line(exc)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: truncated or corrupt image ({_first_line(exc)})") from None


def _png_bit_depth(path: Path) -> int:
    """Bits per sample from a PNG's IHDR chunk (which always comes first)."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    return header[24] if len(header) == 26 and header[12:16] == b"IHDR" else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _quantize(image: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if dtype == "uint16":
        return np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    if dtype == "float32":
        return image.astype(np.float32)
    raise ValueError(f"unknown dtype {dtype!r}")


def check_output_path(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: str = "uint8",
    channels: int = 1,
) -> str:
    """Check that an image can be written to ``path``, before any work is done.

    Parameters
    ----------
    path : str or path-like
        Destination; the format follows the suffix.
    overwrite : bool, keyword-only
        Whether an existing file may be replaced.
    dtype : {"uint8", "uint16", "float32"}, keyword-only
        Requested storage type.
    channels : int, keyword-only
        1 (gray) or 3 (RGB).

    Returns
    -------
    str
        The storage type the format allows: ``float32`` is kept only for TIFF (it becomes
        ``uint16`` for PNG), ``uint16`` only for PNG and TIFF; everything else is ``uint8``.

    Raises
    ------
    InputError
        Existing file without ``overwrite``, a directory, a missing folder, an unknown
        format, or 16-bit RGB to a format other than TIFF.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    check_output_paths({"the output image": path}, overwrite=overwrite, figures=())
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unknown output format {suffix!r}; use .png, .tif or .jpg")
    if dtype not in ("uint8", "uint16", "float32"):
        raise ValueError(f"unknown dtype {dtype!r}")
    if suffix in (".jpg", ".jpeg"):
        dtype = "uint8"
    if dtype == "float32" and suffix not in _TIFF_SUFFIXES:
        dtype = "uint16" if suffix == ".png" else "uint8"
    if dtype == "uint16" and suffix not in (".png", *_TIFF_SUFFIXES):
        dtype = "uint8"
    if dtype == "uint16" and channels == 3 and suffix not in _TIFF_SUFFIXES:
        raise InputError(f"{path}: 16-bit RGB needs TIFF output (.tif)")
    return dtype


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    dtype: str = "uint8",
    overwrite: bool = False,
) -> Path:
    """Write a float image in [0, 1] atomically.

    Parameters
    ----------
    path : str or path-like
        Destination; the format follows the suffix (PNG, TIFF, JPEG).
    image : ndarray, shape (H, W) or (H, W, C), C in {1, 3}
        Values are clipped to [0, 1] for integer output.
    dtype : {"uint8", "uint16", "float32"}, keyword-only
        Storage type. JPEG supports only ``uint8``; ``float32`` needs TIFF.
    overwrite : bool, keyword-only
        Refuse to replace an existing file unless True.

    Notes
    -----
    The data go to a temporary file in the destination folder that is renamed over
    the destination only once complete, so an interrupted write never leaves a
    half-written file and never destroys an existing one.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    image = np.asarray(image)
    channels = image.shape[2] if image.ndim == 3 else 1
    dtype = check_output_path(path, overwrite=overwrite, dtype=dtype, channels=channels)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    data = _quantize(np.asarray(image), dtype)

    def write(tmp_name: str) -> None:
        if suffix in _TIFF_SUFFIXES:
            import tifffile

            tifffile.imwrite(tmp_name, data, photometric="rgb" if data.ndim == 3 else None)
        else:
            from PIL import Image

            # A 2-D uint16 array becomes mode "I;16" (16-bit gray); Pillow 13 no longer
            # accepts the mode argument here.
            options = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
            Image.fromarray(data).save(tmp_name, **options)

    try:
        atomic_write(path, write, suffix=suffix)
    except OSError as exc:  # read-only or full folder: a user error, not a crash
        raise InputError(f"{path}: cannot write ({_first_line(exc)})") from None
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted list of the image files directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> (1, C, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor -> (H, W, C) float32 array."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    return tensor.detach().to("cpu", dtype=torch.float32).permute(1, 2, 0).numpy()
