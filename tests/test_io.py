"""Reading and writing images: round trips, atomic writes, and every kind of bad input."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from filterscope import InputError, read_image, write_image
from filterscope.io import check_output_path

RNG = np.random.default_rng(0)


def random_image(height: int = 9, width: int = 11, channels: int = 1) -> np.ndarray:
    return RNG.random((height, width, channels), dtype=np.float32)


def write_png16_rgb(path: Path, data: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    height, width, _ = data.shape
    rows = b"".join(b"\x00" + data[r].astype(">u2").tobytes() for r in range(height))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("name", "channels", "dtype", "tolerance"),
    [
        ("g8.png", 1, "uint8", 0.5 / 255),
        ("c8.png", 3, "uint8", 0.5 / 255),
        ("g16.png", 1, "uint16", 0.5 / 65535),
        ("c16.tif", 3, "uint16", 0.5 / 65535),
        ("g16.tif", 1, "uint16", 0.5 / 65535),
        ("c8.tif", 3, "uint8", 0.5 / 255),
        ("f32.tif", 1, "float32", 0.0),
        ("cf32.tif", 3, "float32", 0.0),
    ],
)
def test_lossless_round_trip(tmp_path, name, channels, dtype, tolerance):
    image = random_image(channels=channels)
    write_image(tmp_path / name, image, dtype=dtype)
    back, info = read_image(tmp_path / name)
    assert info.dtype == dtype
    assert info.channels == channels
    assert info.format == Path(name).suffix[1:]
    assert back.shape == image.shape
    assert back.dtype == np.float32
    assert np.abs(back - image).max() <= tolerance + 1e-7


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_round_trip_within_tolerance(tmp_path, channels):
    # Smooth content: JPEG at quality 95 is then close to the original.
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    image = np.repeat(((yy + xx) / 2)[:, :, None], channels, axis=2).astype(np.float32)
    write_image(tmp_path / "a.jpg", image)
    back, info = read_image(tmp_path / "a.jpg")
    assert (info.dtype, info.channels, info.format) == ("uint8", channels, "jpg")
    assert np.abs(back - image).mean() < 0.01


def test_float_tiff_keeps_values_outside_unit_range(tmp_path):
    image = np.full((4, 5, 1), 1.5, dtype=np.float32)
    image[0, 0, 0] = -0.25
    write_image(tmp_path / "f.tif", image, dtype="float32")
    back, _ = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(back, image)


def test_integer_output_is_clipped(tmp_path):
    image = np.array([[-0.5, 0.5], [1.0, 2.0]], dtype=np.float32)[:, :, None]
    write_image(tmp_path / "c.png", image)
    back, _ = read_image(tmp_path / "c.png")
    np.testing.assert_allclose(back[:, :, 0], [[0.0, 128 / 255], [1.0, 1.0]], atol=1e-7)


def test_float_to_png_becomes_16_bit(tmp_path):
    write_image(tmp_path / "a.png", random_image(), dtype="float32")
    assert read_image(tmp_path / "a.png")[1].dtype == "uint16"


def test_sixteen_bit_rgb_png_output_is_refused_before_writing(tmp_path):
    with pytest.raises(InputError, match="TIFF"):
        write_image(tmp_path / "a.png", random_image(channels=3), dtype="uint16")
    assert list(tmp_path.iterdir()) == []


def test_written_file_has_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_image(tmp_path / "a.png", random_image())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- atomic writes


def test_write_refuses_to_overwrite(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        write_image(path, random_image())
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_write_overwrites_when_asked(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"old")
    write_image(path, random_image(), overwrite=True)
    assert read_image(path)[0].shape == (9, 11, 1)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "a.tif"
    path.write_bytes(b"precious")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(RuntimeError):
        write_image(path, random_image(), overwrite=True)
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing/a.png", "does not exist"), ("a.xyz", "unknown output format")],
)
def test_bad_output_paths(tmp_path, name, message):
    with pytest.raises(InputError, match=message):
        check_output_path(tmp_path / name)


def test_output_path_that_is_a_directory(tmp_path):
    with pytest.raises(InputError, match="directory"):
        write_image(tmp_path, random_image(), overwrite=True)


def test_check_output_path_resolves_storage_type(tmp_path):
    assert check_output_path(tmp_path / "a.jpg", dtype="uint16") == "uint8"
    assert check_output_path(tmp_path / "a.png", dtype="float32") == "uint16"
    assert check_output_path(tmp_path / "a.tif", dtype="float32", channels=3) == "float32"


# ---------------------------------------------------------------- bad input


def make_bad_input(kind: str, folder: Path) -> Path:
    """Create one kind of unusable input file in ``folder`` and return its path."""
    if kind == "missing":
        return folder / "missing.png"
    if kind == "truncated_png":
        Image.fromarray((random_image(20, 24)[:, :, 0] * 255).astype(np.uint8)).save(
            folder / "full.png"
        )
        data = (folder / "full.png").read_bytes()
        (folder / "truncated.png").write_bytes(data[: len(data) // 2])
        return folder / "truncated.png"
    if kind == "truncated_tiff":
        tifffile.imwrite(folder / "full.tif", (random_image(20, 24, 3) * 255).astype(np.uint8))
        data = (folder / "full.tif").read_bytes()
        (folder / "truncated.tif").write_bytes(data[: len(data) // 2])
        return folder / "truncated.tif"
    if kind == "text_png":
        (folder / "notes.png").write_text("this is not an image\n")
        return folder / "notes.png"
    if kind == "empty_png":
        (folder / "empty.png").write_bytes(b"")
        return folder / "empty.png"
    if kind == "directory":
        (folder / "dir.png").mkdir()
        return folder / "dir.png"
    if kind == "rgba_png":
        Image.fromarray((random_image(8, 8, 4) * 255).astype(np.uint8)).save(folder / "rgba.png")
        return folder / "rgba.png"
    if kind == "one_pixel_side":
        Image.fromarray((random_image(1, 8)[:, :, 0] * 255).astype(np.uint8)).save(
            folder / "thin.png"
        )
        return folder / "thin.png"
    if kind in ("nan_tiff", "inf_tiff"):
        data = random_image(8, 8)[:, :, 0]
        data[3, 4] = np.nan if kind == "nan_tiff" else np.inf
        tifffile.imwrite(folder / f"{kind}.tif", data)
        return folder / f"{kind}.tif"
    if kind == "png16_rgb":
        write_png16_rgb(folder / "rgb16.png", (random_image(5, 7, 3) * 65535).astype(np.uint16))
        return folder / "rgb16.png"
    raise ValueError(kind)


BAD_INPUTS = {
    "missing": "no such file",
    "truncated_png": "truncated or corrupt",
    "truncated_tiff": "not a readable TIFF",
    "text_png": "not an image file",
    "empty_png": "not an image file",
    "directory": "is a directory",
    "rgba_png": "alpha channel",
    "one_pixel_side": "at least 2",
    "nan_tiff": "NaN or Inf",
    "inf_tiff": "NaN or Inf",
    "png16_rgb": "16-bit RGB PNG",
}


@pytest.mark.parametrize(("kind", "message"), BAD_INPUTS.items())
def test_bad_input_raises_input_error(tmp_path, kind, message):
    path = make_bad_input(kind, tmp_path)
    with pytest.raises(InputError, match=message) as info:
        read_image(path)
    assert "\n" not in str(info.value)
