"""Reading and writing images: round trips, atomic writes, and every kind of bad input."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from filterscope import InputError, read_image, write_image
from filterscope.errors import FilterscopeWarning
from filterscope.io import ImageMetadata, apply_orientation, check_output_path

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


# ---------------------------------------------------------------- orientation and metadata


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_with(orientation: int | None = None, make: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if make is not None:
        exif[0x010F] = make
    return exif


def stored_image(height: int = 31, width: int = 37, channels: int = 3) -> np.ndarray:
    """uint8 pixels, all distinct enough that any turn or mirror changes them."""
    values = np.arange(height * width * channels, dtype=np.int64) * 7 % 251
    return values.reshape(height, width, channels).astype(np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path, orientation):
    stored = stored_image()
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=exif_with(orientation))
    image, info = read_image(path)
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img))
    np.testing.assert_array_equal(np.round(image * 255).astype(np.uint8), expected)
    assert info.orientation == orientation


def test_phone_jpeg_with_orientation_6_comes_out_upright(tmp_path):
    # Stored landscape 37 wide x 31 high, top row bright: displayed, it is portrait
    # (31 wide x 37 high) with the bright stripe on the right (turned 90° clockwise).
    stored = np.full((31, 37, 3), 40, dtype=np.uint8)
    stored[:4] = 230
    source = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(source, exif=exif_with(6, "TestPhone"), quality=95)
    image, info = read_image(source)
    assert image.shape == (37, 31, 3)
    assert image[:, -2:].mean() > 0.8 and image[:, :-6].mean() < 0.25
    out = tmp_path / "out.jpg"
    write_image(out, image, metadata=info.metadata)
    with Image.open(out) as img:
        assert img.size == (31, 37)
        assert img.getexif().get(0x0112) == 1  # so viewers do not turn it again
        assert img.getexif().get(0x010F) == "TestPhone"  # the rest of EXIF is kept
    again, again_info = read_image(out)
    assert again.shape == (37, 31, 3) and again_info.orientation == 1


def test_tiff_orientation_tag_is_applied(tmp_path):
    stored = stored_image(channels=1)[:, :, 0]
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, stored, extratags=[(274, "H", 1, 8, True)])
    image, info = read_image(path)
    assert info.orientation == 8
    np.testing.assert_array_equal(np.round(image[:, :, 0] * 255), np.rot90(stored))


def test_orientation_outside_1_to_8_is_ignored():
    stored = stored_image()
    for orientation in (0, 1, 9):
        np.testing.assert_array_equal(apply_orientation(stored, orientation), stored)


@pytest.mark.parametrize("name", ["m.png", "m.jpg", "m.tif"])
def test_profile_and_resolution_survive_a_round_trip(tmp_path, name):
    profile = srgb_profile()
    metadata = ImageMetadata(icc_profile=profile, dpi=(300.0, 150.0), xmp=b"<x:xmpmeta/>")
    write_image(tmp_path / name, random_image(31, 37, 3), metadata=metadata)
    _, info = read_image(tmp_path / name)
    assert info.metadata.icc_profile == profile
    # PNG stores whole pixels per metre: 150 dpi comes back as 150.012.
    assert info.metadata.dpi == pytest.approx((300.0, 150.0), rel=1e-3)
    assert info.metadata.xmp == b"<x:xmpmeta/>"


@pytest.mark.parametrize("name", ["in.png", "in.jpg"])
def test_exif_and_png_text_are_kept(tmp_path, name):
    source = tmp_path / name
    options = {"exif": exif_with(make="TestCam")}
    if name.endswith(".png"):
        from PIL.PngImagePlugin import PngInfo

        text = PngInfo()
        text.add_text("Title", "harbour at dusk")
        options["pnginfo"] = text
    Image.fromarray(stored_image()).save(source, **options)
    image, info = read_image(source)
    out = tmp_path / ("out" + source.suffix)
    write_image(out, image, metadata=info.metadata)
    with Image.open(out) as img:
        assert img.getexif().get(0x010F) == "TestCam"
        if name.endswith(".png"):
            assert img.text["Title"] == "harbour at dusk"


def test_exif_too_large_for_jpeg_is_left_out_with_a_warning(tmp_path):
    big = ImageMetadata(exif=exif_with(make="x" * 70_000).tobytes(), dpi=(96.0, 96.0))
    write_image(tmp_path / "big.png", random_image(9, 11, 3), metadata=big)
    with pytest.warns(FilterscopeWarning, match="does not fit in a JPEG"):
        write_image(tmp_path / "big.jpg", random_image(9, 11, 3), metadata=big)
    assert read_image(tmp_path / "big.jpg")[1].metadata.dpi == (96.0, 96.0)
    assert len(read_image(tmp_path / "big.png")[1].metadata.exif) > 70_000


def test_profile_of_another_colour_space_is_left_out(tmp_path):
    # An RGB profile on a gray image would make a file that viewers reject.
    metadata = ImageMetadata(icc_profile=srgb_profile())
    write_image(tmp_path / "g.png", random_image(9, 11, 1), metadata=metadata)
    _, info = read_image(tmp_path / "g.png")
    assert info.metadata.icc_profile is None


def test_no_metadata_by_default(tmp_path):
    write_image(tmp_path / "plain.png", random_image())
    _, info = read_image(tmp_path / "plain.png")
    assert info.metadata == ImageMetadata()


# ---------------------------------------------------------------- pages, CMYK, palettes


def test_multi_page_tiff_is_refused(tmp_path):
    # Three gray pages have the shape of a planar RGB image; they must not be taken for one.
    stack = (RNG.random((3, 31, 37)) * 255).astype(np.uint8)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    with pytest.raises(InputError, match="3 pages") as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_planar_rgb_tiff_is_read_as_rgb(tmp_path):
    data = (random_image(31, 37, 3) * 255).astype(np.uint8)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(data, -1, 0), photometric="rgb", planarconfig="separate")
    image, info = read_image(path)
    assert info.channels == 3
    np.testing.assert_array_equal(np.round(image * 255).astype(np.uint8), data)


def test_sixteen_bit_rgb_tiff_stays_sixteen_bit_rgb(tmp_path):
    data = (random_image(31, 37, 3) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", data, photometric="rgb")
    image, info = read_image(tmp_path / "in.tif")
    write_image(tmp_path / "out.tif", image, dtype=info.dtype, metadata=info.metadata)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), data)


def test_multi_frame_gif_is_refused(tmp_path):
    frames = [Image.fromarray(stored_image()[:, :, 0] // (k + 1)) for k in range(2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="2 images"):
        read_image(tmp_path / "anim.gif")


def test_cmyk_jpeg_is_converted_with_a_warning(tmp_path):
    cmyk = np.zeros((31, 37, 4), dtype=np.uint8)
    cmyk[..., 0] = 255  # full cyan: no red
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=95)
    with pytest.warns(FilterscopeWarning, match="CMYK image converted to RGB") as record:
        image, info = read_image(tmp_path / "c.jpg")
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert info.channels == 3
    assert image[..., 0].max() < 0.05 and image[..., 1:].min() > 0.95


def test_cmyk_tiff_is_converted_with_a_warning(tmp_path):
    cmyk = np.zeros((31, 37, 4), dtype=np.uint16)
    cmyk[..., 3] = 65535 // 2  # half black: mid gray
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, cmyk, photometric="separated", iccprofile=b"\0" * 16 + b"CMYK")
    with pytest.warns(FilterscopeWarning, match="CMYK"):
        image, info = read_image(path)
    assert (info.channels, info.dtype) == (3, "uint16")
    np.testing.assert_allclose(image, 0.5, atol=1e-4)
    assert info.metadata.icc_profile is None  # the CMYK profile does not fit RGB pixels


@pytest.mark.parametrize("kind", ["gray", "RGB"])
def test_palette_png_is_converted_with_a_warning(tmp_path, kind):
    pixels = stored_image(channels=1)[:, :, 0] // 4  # 63 levels
    img = Image.fromarray(pixels, mode="L").convert("P")
    if kind == "RGB":
        img.putpalette([v for level in range(256) for v in (level, 255 - level, 0)])
    img.save(tmp_path / "p.png")
    with pytest.warns(FilterscopeWarning, match=f"palette image converted to {kind}"):
        image, info = read_image(tmp_path / "p.png")
    assert info.channels == (1 if kind == "gray" else 3)
    np.testing.assert_array_equal(np.round(image[..., 0] * 255), pixels)


def test_palette_tiff_is_converted_with_a_warning(tmp_path):
    indices = (stored_image(channels=1)[:, :, 0] % 4).astype(np.uint8)
    colormap = np.zeros((3, 256), dtype=np.uint16)
    colormap[0, :4] = np.array([0, 85, 170, 255]) * 257
    path = tmp_path / "p.tif"
    tifffile.imwrite(path, indices, photometric="palette", colormap=colormap)
    with pytest.warns(FilterscopeWarning, match="palette image converted to RGB"):
        image, info = read_image(path)
    assert (info.channels, info.dtype) == (3, "uint8")
    np.testing.assert_array_equal(np.round(image[..., 0] * 255), indices * 85)
    assert image[..., 1:].max() == 0


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
