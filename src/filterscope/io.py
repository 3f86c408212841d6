"""Reading and writing images: PNG, TIFF and JPEG; 8/16-bit integer or float; gray or RGB.

Images travel through the library as float32 arrays in [0, 1] of shape ``(H, W, C)``
(``C`` = 1 or 3) together with an :class:`ImageInfo` that remembers how the file was
stored, so that a result can be written back in the input's mode and bit depth, with
the input's colour profile, resolution and other metadata (:class:`ImageMetadata`).

Photos are read the way they are displayed: the EXIF orientation (phones store most
pictures sideways and set this tag) is applied to the pixels, and the tag written back
is 1 (upright). CMYK and palette images are converted, with a
:class:`~filterscope.errors.FilterscopeWarning`; multi-page TIFFs are refused.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._files import atomic_write, check_output_paths, is_temporary
from .errors import FilterscopeWarning, InputError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm")
_TIFF_SUFFIXES = (".tif", ".tiff")


#: EXIF/TIFF tag numbers.
_ORIENTATION_TAG = 0x0112
_XMP_TAG = 700
_ICC_TAG = 34675
#: Room for EXIF or XMP in one JPEG marker segment (64 KiB less headers, with margin).
_JPEG_SEGMENT_BYTES = 65_000
#: PNG text key under which XMP travels.
_PNG_XMP_KEY = "XML:com.adobe.xmp"


@dataclass(frozen=True)
class ImageMetadata:
    """What a file says about its pixels besides their values, kept from input to output.

    Attributes
    ----------
    icc_profile : bytes or None
        Colour profile (ICC). Written only to an image whose channel count matches the
        profile's colour space (a gray profile to a gray image, an RGB one to RGB).
    dpi : (float, float) or None
        Resolution in pixels per inch, (horizontal, vertical).
    exif : bytes or None
        EXIF block (camera, date, GPS...), its Orientation set to 1 since the pixels
        are read upright. Written to JPEG and PNG; TIFF output leaves it out.
    xmp : bytes or None
        XMP packet (editing history, rights...). Written to JPEG, PNG and TIFF.
    text : tuple of (str, str)
        PNG text chunks other than XMP (title, author, software...). Written to PNG.
    """

    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    text: tuple[tuple[str, str], ...] = ()


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
    metadata : ImageMetadata
        Colour profile, resolution, EXIF...; pass it to :func:`write_image`.
    orientation : int
        EXIF orientation (1-8) that was applied to the pixels on reading; 1 = none.
    """

    dtype: str
    channels: int
    format: str
    metadata: ImageMetadata = field(default_factory=ImageMetadata)
    orientation: int = 1


#: Smallest image side in pixels, for files and arrays alike (noise estimation and the
#: reflections of some methods need two pixels).
MIN_SIDE = 2


def check_pixels(image: np.ndarray, what: str) -> None:
    """Refuse an ``(H, W, C)`` image with a side under :data:`MIN_SIDE` pixels, or with
    NaN or infinite values (they would spread over the whole estimate).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        Any numeric dtype.
    what : str
        How the message names the image (a file name, ``"image"``).

    Raises
    ------
    InputError
        Naming the size, or how many pixels are not finite and the first one as (x, y).
    """
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InputError(f"{what} is {width}x{height} pixels; each side needs at least {MIN_SIDE}")
    if np.issubdtype(image.dtype, np.floating):
        bad = ~np.isfinite(image).all(axis=-1)
        if bad.any():
            y, x = (int(v) for v in np.argwhere(bad)[0])
            raise InputError(
                f"{what} has {int(bad.sum())} pixel(s) with NaN or Inf values, the "
                f"first at (x, y) = ({x}, {y}); replace them (e.g. numpy.nan_to_num) first"
            )


def _to_unit_range(raw: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / 255.0, "uint8"
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) / 65535.0, "uint16"
    if raw.dtype == np.bool_:
        return raw.astype(np.float32), "uint8"
    if np.issubdtype(raw.dtype, np.floating):
        return raw.astype(np.float32), "float32"
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
        ``C`` is 1 for gray and 3 for RGB images, upright: an EXIF (or TIFF)
        orientation tag has been applied to the pixels.
    info : ImageInfo
        Storage type and metadata, so :func:`write_image` can write a result in the
        same form.

    Raises
    ------
    InputError
        Missing file, directory, unreadable or truncated file, alpha channel, a
        multi-page TIFF, a side of fewer than 2 pixels, NaN or Inf values.

    Warns
    -----
    FilterscopeWarning
        A CMYK image is converted to RGB (its CMYK colour profile is dropped); a
        palette image to gray or RGB.
    """
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise InputError(f"{path}: broken symbolic link or link loop")
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file")
    suffix = path.suffix.lower()
    if suffix in _TIFF_SUFFIXES:
        raw, metadata, orientation = _read_tiff(path)
    else:
        raw, metadata, orientation = _read_with_pillow(path)
    if raw.ndim == 2:
        raw = raw[:, :, None]
    if raw.ndim != 3:
        raise InputError(f"{path}: expected a 2-D image, got an array of shape {raw.shape}")
    channels = raw.shape[2]
    if channels in (2, 4):
        raise InputError(f"{path}: image has an alpha channel; remove it (flatten) first")
    if channels not in (1, 3):
        raise InputError(f"{path}: expected 1 (gray) or 3 (RGB) channels, got {channels}")
    raw = apply_orientation(raw, orientation)
    check_pixels(raw, f"{path}: image")
    image, dtype = _to_unit_range(raw, path)
    info = ImageInfo(dtype, channels, suffix.lstrip("."), metadata, orientation)
    return np.ascontiguousarray(image), info


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF/TIFF ``orientation`` (1-8) upright.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Pixels in storage order.
    orientation : int
        The tag's value: 1 upright, 3 rotated 180°, 6 to be turned 90° clockwise
        (a phone held upright), 8 to be turned 90° counter-clockwise; 2, 4, 5, 7 the
        same with a mirror. Any other value is treated as 1.

    Returns
    -------
    ndarray
        A view of ``image``, shape (W, H, ...) for orientations 5 to 8.
    """
    if orientation in (2, 3):
        image = image[:, ::-1]
    if orientation in (3, 4):
        image = image[::-1]
    if orientation in (5, 6, 7, 8):
        image = np.swapaxes(image, 0, 1)  # transpose: orientation 5
        if orientation in (6, 7):
            image = image[:, ::-1]
        if orientation in (7, 8):
            image = image[::-1]
    return image


def _warn_converted(path: Path, what: str) -> None:
    warnings.warn(f"{path}: {what}", FilterscopeWarning, stacklevel=4)


def _read_tiff(path: Path) -> tuple[np.ndarray, ImageMetadata, int]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = [page for page in tif.pages if not page.is_reduced]
            if len(pages) > 1:
                raise InputError(
                    f"{path}: TIFF holds {len(pages)} pages (a stack or multi-page file); "
                    "only single images are supported: save each page as its own file"
                )
            page = pages[0]
            raw = page.asarray()
            metadata, orientation = _tiff_metadata(page)
            photometric = int(page.photometric)
            if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and raw.ndim == 3:
                raw = np.moveaxis(raw, 0, -1)  # stored as (C, H, W)
            if photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
                raw, metadata = _palette_to_image(path, raw, page.colormap, metadata)
            elif photometric == tifffile.PHOTOMETRIC.SEPARATED and raw.ndim == 3:
                raw, metadata = _cmyk_to_rgb(path, raw, metadata)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise InputError(f"{path}: not a readable TIFF image ({_first_line(exc)})") from None
    return raw, metadata, orientation


def _tiff_metadata(page) -> tuple[ImageMetadata, int]:
    tags = page.tags

    def value(code: int):
        tag = tags.get(code)
        return None if tag is None else tag.value

    dpi = None
    x_res, y_res, unit = value(282), value(283), value(296)
    per_inch = {2: 1.0, 3: 2.54}.get(int(unit) if unit is not None else 2)
    if x_res is not None and y_res is not None and per_inch is not None:
        x_dpi, y_dpi = (r[0] / r[1] * per_inch if r[1] else 0.0 for r in (x_res, y_res))
        if x_dpi > 0 and y_dpi > 0:
            dpi = (x_dpi, y_dpi)
    icc, xmp = value(_ICC_TAG), value(_XMP_TAG)
    metadata = ImageMetadata(
        icc_profile=bytes(icc) if icc is not None else None,
        dpi=dpi,
        xmp=bytes(xmp) if isinstance(xmp, (bytes, bytearray)) else None,
    )
    orientation = value(274)
    return metadata, int(orientation) if orientation is not None else 1


def _palette_to_image(
    path: Path, indices: np.ndarray, colormap: np.ndarray, metadata: ImageMetadata
) -> tuple[np.ndarray, ImageMetadata]:
    """TIFF palette (3, 2**bits) uint16 colour map applied to the index image."""
    colormap = np.asarray(colormap)
    if np.all(colormap % 257 == 0):  # an 8-bit palette stored on 16 bits
        colormap = (colormap // 257).astype(np.uint8)
    gray = bool(np.all(colormap[0] == colormap[1]) and np.all(colormap[1] == colormap[2]))
    image = colormap[0][indices] if gray else np.moveaxis(colormap[:, indices], 0, -1)
    kind = "gray" if gray else "RGB"
    _warn_converted(path, f"palette image converted to {kind}; the output has no palette")
    return image, metadata


def _cmyk_to_rgb(
    path: Path, cmyk: np.ndarray, metadata: ImageMetadata
) -> tuple[np.ndarray, ImageMetadata]:
    """Naive CMYK -> RGB, R = (1 - C)(1 - K) etc., in the input's integer type."""
    if cmyk.shape[2] != 4:
        raise InputError(f"{path}: ink-separated image with {cmyk.shape[2]} inks; expected CMYK")
    top = float(np.iinfo(cmyk.dtype).max) if cmyk.dtype.kind in "ui" else 1.0
    ink = cmyk.astype(np.float64) / top
    rgb = (1.0 - ink[:, :, :3]) * (1.0 - ink[:, :, 3:])
    rgb = (np.round(rgb * top) if top != 1.0 else rgb).astype(cmyk.dtype)
    _warn_converted(path, "CMYK image converted to RGB without its colour profile")
    return rgb, _without_profile(metadata)


def _without_profile(metadata: ImageMetadata) -> ImageMetadata:
    return ImageMetadata(None, metadata.dpi, metadata.exif, metadata.xmp, metadata.text)


def _pillow_metadata(img) -> tuple[ImageMetadata, int]:
    exif = img.getexif()
    orientation = int(exif.get(_ORIENTATION_TAG, 1) or 1)
    if _ORIENTATION_TAG in exif:
        exif[_ORIENTATION_TAG] = 1  # the pixels are turned upright on reading
    text = getattr(img, "text", None) if img.format == "PNG" else None
    text = dict(text or {})
    xmp = img.info.get("xmp") or text.pop(_PNG_XMP_KEY, None)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    dpi = img.info.get("dpi")
    metadata = ImageMetadata(
        icc_profile=img.info.get("icc_profile") or None,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi and min(dpi) > 0 else None,
        exif=exif.tobytes() if len(exif) else None,
        xmp=xmp or None,
        text=tuple((str(k), str(v)) for k, v in text.items()),
    )
    return metadata, orientation


def _read_with_pillow(path: Path) -> tuple[np.ndarray, ImageMetadata, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            # An MPO (a camera JPEG with previews or a depth map) is its first image.
            if getattr(img, "n_frames", 1) > 1 and img.format != "MPO":
                raise InputError(
                    f"{path}: file holds {img.n_frames} images (frames); "
                    "only single images are supported: save each as its own file"
                )
            metadata, orientation = _pillow_metadata(img)
            pixels = _pillow_pixels(path, img)
            return pixels, _metadata_after_conversion(img, metadata), orientation
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (format not recognised)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: {_first_line(exc)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: truncated or corrupt image ({_first_line(exc)})") from None


def _pillow_pixels(path: Path, img) -> np.ndarray:
    """The pixels of an open Pillow image as an (H, W) or (H, W, C) array."""
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
        rgb = img.convert("RGB")
        colours = np.asarray(rgb)
        gray = bool(np.all(colours[..., 0] == colours[..., 1]))
        gray = gray and bool(np.all(colours[..., 1] == colours[..., 2]))
        kind = "gray" if gray else "RGB"
        _warn_converted(path, f"palette image converted to {kind}; the output has no palette")
        return colours[..., 0] if gray else colours
    if mode == "CMYK":
        _warn_converted(path, "CMYK image converted to RGB without its colour profile")
        return np.asarray(img.convert("RGB"))
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode == "YCbCr":
        return np.asarray(img.convert("RGB"))
    if mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img, dtype=np.uint16)
    if mode == "I":
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise InputError(f"{path}: 32-bit integer image out of the 16-bit range")
        return arr.astype(np.uint16)
    if mode == "F":
        return np.asarray(img, dtype=np.float32)
    if mode not in ("L", "RGB"):
        raise InputError(f"{path}: unsupported image mode {mode}")
    return np.asarray(img)


def _metadata_after_conversion(img, metadata: ImageMetadata) -> ImageMetadata:
    """A CMYK profile does not describe the RGB pixels the image was converted to."""
    return _without_profile(metadata) if img.mode == "CMYK" else metadata


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
    metadata: ImageMetadata | None = None,
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
    metadata : ImageMetadata or None, keyword-only
        Colour profile, resolution, EXIF, XMP and text to store, usually
        ``read_image(...)[1].metadata`` of the input, as far as the format carries
        them: JPEG and PNG all of it (text: PNG only), TIFF the profile, resolution and
        XMP. A profile whose colour space does not match the image's channels is left
        out.

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
    metadata = metadata or ImageMetadata()
    icc_profile = metadata.icc_profile if _icc_fits(metadata.icc_profile, channels) else None

    def write(tmp_name: str) -> None:
        if suffix in _TIFF_SUFFIXES:
            import tifffile

            options = {}
            if metadata.dpi is not None:
                options.update(resolution=metadata.dpi, resolutionunit="INCH")
            if metadata.xmp is not None:
                options["extratags"] = [(_XMP_TAG, "B", len(metadata.xmp), metadata.xmp, True)]
            tifffile.imwrite(
                tmp_name,
                data,
                photometric="rgb" if data.ndim == 3 else "minisblack",
                iccprofile=icc_profile,
                **options,
            )
        else:
            from PIL import Image

            # A 2-D uint16 array becomes mode "I;16" (16-bit gray); Pillow 13 no longer
            # accepts the mode argument here.
            Image.fromarray(data).save(tmp_name, **_pillow_options(suffix, metadata, icc_profile))

    try:
        atomic_write(path, write, suffix=suffix)
    except OSError as exc:  # read-only or full folder: a user error, not a crash
        raise InputError(f"{path}: cannot write ({_first_line(exc)})") from None
    return path


def _icc_fits(profile: bytes | None, channels: int) -> bool:
    """Whether an ICC profile's colour space (header bytes 16-20) is that of the pixels."""
    if not profile or len(profile) < 20:
        return False
    space = profile[16:20].decode("ascii", "replace").strip().upper()
    return space == {1: "GRAY", 3: "RGB"}.get(channels)


def _pillow_options(suffix: str, metadata: ImageMetadata, icc_profile: bytes | None) -> dict:
    """Keyword arguments of Pillow's ``save`` storing ``metadata`` in a JPEG or PNG."""
    options: dict = {}
    if suffix in (".jpg", ".jpeg"):
        options["quality"] = 95
    if icc_profile is not None:
        options["icc_profile"] = icc_profile
    if metadata.dpi is not None:
        options["dpi"] = metadata.dpi
    jpeg = suffix in (".jpg", ".jpeg")
    if metadata.exif is not None and (suffix == ".png" or jpeg):
        options["exif"] = metadata.exif
    if jpeg and metadata.xmp is not None:
        options["xmp"] = metadata.xmp
    for key in ("exif", "xmp"):
        # A JPEG marker segment holds at most 64 KiB; a PNG chunk could hold more.
        if jpeg and key in options and len(options[key]) > _JPEG_SEGMENT_BYTES:
            warnings.warn(
                f"{key.upper()} block of {len(options.pop(key))} bytes does not fit in a "
                "JPEG; left out (write PNG or TIFF to keep it)",
                FilterscopeWarning,
                stacklevel=3,
            )
    if suffix == ".png" and (metadata.text or metadata.xmp is not None):
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in metadata.text:
            info.add_itxt(key, value)
        if metadata.xmp is not None:
            info.add_itxt(_PNG_XMP_KEY, metadata.xmp.decode("utf-8", "replace"))
        options["pnginfo"] = info
    return options


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted list of the image files directly inside ``folder``, without the temporary
    files of atomic writes (:func:`~filterscope._files.is_temporary`) that a killed
    process may have left."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not is_temporary(p)
    )


def input_files(paths: Iterable[str | os.PathLike | None]) -> list[Path]:
    """The files a command reads from ``paths``: each existing file (a model file with
    its ``.json`` card), and the image files directly in each folder. Paths that name
    nothing (a model name such as ``"dncnn"``) and None are left out."""
    files: list[Path] = []
    for path in paths:
        if path is None or not isinstance(path, (str, os.PathLike)):
            continue
        path = Path(path)
        if path.is_dir():
            # a link loop or broken link there is no file to protect (it fails as input)
            files.extend(p for p in list_images(path) if p.exists())
        elif path.is_file():
            files.append(path)
            card = path.with_suffix(".json")
            if path.suffix.lower() in (".pt", ".pth", ".safetensors") and card.is_file():
                files.append(card)
    return files


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> (1, C, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor -> (H, W, C) float32 array."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    return tensor.detach().to("cpu", dtype=torch.float32).permute(1, 2, 0).numpy()
