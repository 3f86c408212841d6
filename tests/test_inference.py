"""Tiled inference: equality with whole-image results, channel matching, bounded batches."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_tiny_dncnn
from filterscope import CheckpointError, InputError, inference, machine, read_image, write_image
from filterscope.errors import ChannelError
from filterscope.inference import (
    denoise_file,
    denoise_files,
    denoise_tensor,
    plan_outputs,
    prepare_model,
    tile_grid,
)


class Spy(nn.Module):
    """Wraps a model and records the shape of every batch it is given."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.in_channels = model.in_channels
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(y.shape))
        return self.model(y)


def whole(model: nn.Module, y: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(y)


def whole_with_sigma(model: nn.Module, y: torch.Tensor, sigma: float) -> torch.Tensor:
    with torch.inference_mode():
        return model(y, sigma)


def each_tile_alone(model: nn.Module, y: torch.Tensor, *, align: int) -> torch.Tensor:
    """``model(tile)`` on every tile of ``y`` (side and halo the receptive radius), each
    called on its own without a σ, the cores pasted together."""
    radius = model.receptive_radius
    out = torch.empty_like(y)
    for core, padded in tile_grid(*y.shape[-2:], tile=radius, overlap=radius, align=align):
        x_hat = whole(model, y[:, :, padded[0] : padded[1], padded[2] : padded[3]])
        rows = slice(core[0] - padded[0], core[1] - padded[0])
        cols = slice(core[2] - padded[2], core[3] - padded[2])
        out[:, :, core[0] : core[1], core[2] : core[3]] = x_hat[:, :, rows, cols]
    return out


def filterscope_create(arch: str, **options) -> nn.Module:
    from filterscope import create_model

    return create_model(arch, **options)


# ---------------------------------------------------------------- tiling


def test_tiled_result_equals_whole_image_result():
    model = make_tiny_dncnn(1)
    y = torch.rand(2, 1, 37, 31, generator=torch.Generator().manual_seed(1))
    tiled = denoise_tensor(model, y, tile=16)
    assert len(tile_grid(37, 31, tile=16, overlap=model.receptive_radius)) == 6
    torch.testing.assert_close(tiled, whole(model, y), rtol=0, atol=1e-5)


def test_only_a_tiled_pass_changes_how_large_blocks_are_freed(monkeypatch):
    calls = []
    monkeypatch.setattr(inference, "return_large_blocks", lambda: calls.append(1))
    model = make_tiny_dncnn(1)
    y = torch.rand(1, 1, 37, 31, generator=torch.Generator().manual_seed(1))
    denoise_tensor(model, y)  # one tile
    assert calls == []
    denoise_tensor(model, y, tile=16)  # six tiles
    assert calls == [1]


def test_halo_smaller_than_receptive_radius_changes_the_result():
    # The equality above is not trivial: too little context shows at the seams.
    model = make_tiny_dncnn(1)
    y = torch.rand(1, 1, 37, 31, generator=torch.Generator().manual_seed(1))
    tiled = denoise_tensor(model, y, tile=16, overlap=model.receptive_radius - 1)
    assert (tiled - whole(model, y)).abs().max() > 1e-4


def _tiny_drunet() -> nn.Module:
    torch.manual_seed(0)
    model = filterscope_create("drunet", widths=[4, 8], blocks=1, noise_map=True)
    return model.eval()


def test_tiled_drunet_equals_whole_image_because_tiles_start_on_its_stride_grid():
    model = _tiny_drunet()
    assert model.tile_alignment == 2
    y = torch.rand(1, 1, 61, 53, generator=torch.Generator().manual_seed(2))
    tile = model.receptive_radius  # the smallest allowed: many tiles, most seams
    tiled = denoise_tensor(model, y, tile=tile, sigma=25 / 255)
    torch.testing.assert_close(tiled, whole_with_sigma(model, y, 25 / 255), rtol=0, atol=1e-5)


def test_tiles_off_the_stride_grid_change_a_drunet_result():
    # The equality above is not trivial: unaligned tiles see another pixel grid.
    model = _tiny_drunet()
    y = torch.rand(1, 1, 61, 53, generator=torch.Generator().manual_seed(2))
    unaligned = each_tile_alone(model, y, align=1)
    assert (unaligned - whole(model, y)).abs().max() > 1e-4


@pytest.mark.parametrize("align", [1, 8])
def test_aligned_tiles_start_on_the_grid_and_still_cover_their_halo(align):
    height, width, overlap = 101, 77, 5
    for core, padded in tile_grid(height, width, tile=20, overlap=overlap, align=align):
        assert padded[0] % align == 0 and padded[2] % align == 0
        assert padded[0] <= max(core[0] - overlap, 0) and padded[2] <= max(core[2] - overlap, 0)
        assert padded[1] >= min(core[1] + overlap, height)
        assert padded[3] >= min(core[3] + overlap, width)
        # Past the border only up to the sides rounded up to the grid.
        assert padded[1] <= -(-height // align) * align and padded[3] <= -(-width // align) * align


@pytest.mark.parametrize("align", [1, 2, 8])
def test_every_padded_tile_has_one_shape_on_the_grid(align):
    # One shape, so each model call reuses the last one's buffers (border tiles clipped
    # to the image made a 3000x2000 photo's peak memory about 1.45 times as large).
    shapes = {
        (padded[1] - padded[0], padded[3] - padded[2])
        for _, padded in tile_grid(101, 77, tile=20, overlap=5, align=align)
    }
    assert len(shapes) == 1
    assert all(side % align == 0 for side in shapes.pop())


def test_a_side_that_one_padded_tile_spans_has_one_core():
    # 20 + 2 * 5 = 30 rows hold the whole height: two overlapping cores would run the
    # same window twice.
    tiles = tile_grid(30, 100, tile=20, overlap=5)
    assert {(core[0], core[1], padded[0], padded[1]) for core, padded in tiles} == {(0, 30, 0, 30)}
    assert len(tiles) == len(tile_grid(1, 100, tile=20, overlap=5))


@pytest.mark.parametrize(("height", "width", "tile"), [(37, 31, 16), (16, 16, 16), (5, 40, 7)])
def test_tile_cores_cover_every_pixel(height, width, tile):
    covered = np.zeros((height, width), dtype=int)
    for core, padded in tile_grid(height, width, tile=tile, overlap=3):
        top, bottom, left, right = core
        assert 0 <= padded[0] <= top < bottom <= padded[1] <= height
        assert 0 <= padded[2] <= left < right <= padded[3] <= width
        assert bottom - top in (tile, height) and right - left in (tile, width)
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1


def test_image_smaller_than_a_tile_is_one_call():
    spy = Spy(make_tiny_dncnn(1)).eval()
    y = torch.rand(1, 1, 12, 10)
    torch.testing.assert_close(denoise_tensor(spy, y, tile=16, overlap=4), whole(spy.model, y))
    assert spy.shapes == [(1, 1, 12, 10)]


def test_batches_stay_bounded_and_tiles_are_batched():
    spy = Spy(make_tiny_dncnn(1)).eval()
    y = torch.rand(1, 3, 48, 48)
    budget = 3 * 24 * 24 * 2  # two interior tiles of 16 + 2*4 pixels, three channels
    out = denoise_tensor(spy, y, tile=16, overlap=4, batch_pixels=budget)
    padded_tile = 16 + 2 * 4
    assert all(
        shape[2] <= padded_tile and shape[3] <= padded_tile and np.prod(shape) <= budget
        for shape in spy.shapes
    )
    assert len(spy.shapes) < 9  # 9 tiles, some of them shared a call
    ref = whole(spy.model, y.reshape(3, 1, 48, 48)).reshape(1, 3, 48, 48)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_gray_model_on_rgb_runs_per_channel():
    model = make_tiny_dncnn(1)
    y = torch.rand(1, 3, 20, 18)
    out = denoise_tensor(model, y, tile=8)
    ref = torch.cat([whole(model, y[:, c : c + 1]) for c in range(3)], dim=1)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_color_model_on_gray_is_refused():
    # Run on gray replicated to RGB, a colour model loses about 5 dB: never silently.
    with pytest.raises(ChannelError, match=r"takes RGB images \(3 channels\).*gray \(1 channel\)"):
        denoise_tensor(make_tiny_dncnn(3), torch.rand(2, 1, 20, 18), tile=8)


def test_channel_rule():
    check = inference.check_model_channels
    for in_channels, channels in [(None, 1), (None, 3), (1, 1), (3, 3), (1, 3)]:
        check(in_channels, channels, model_name="m", image_name="i")
    with pytest.raises(ChannelError, match="m takes gray images"):
        check(1, 3, model_name="m", image_name="i", per_channel=False)
    with pytest.raises(ChannelError, match="m takes RGB images"):
        check(3, 1, model_name="m", image_name="i")


class SigmaSpy(nn.Module):
    """Records the σ of every call; its estimate is y scaled by (1 - σ)."""

    in_channels = 1
    receptive_radius = 0

    def __init__(self):
        super().__init__()
        self.sigmas: list[object] = []

    def forward(self, y: torch.Tensor, sigma=None) -> torch.Tensor:
        self.sigmas.append(sigma)
        return y * (1 - (sigma or 0.0))


def test_sigma_reaches_the_model_for_every_tile():
    spy = SigmaSpy()
    y = torch.rand(1, 1, 37, 31)
    out = denoise_tensor(spy, y, sigma=0.1, tile=8, batch_pixels=300)
    assert len(spy.sigmas) > 1 and all(s == 0.1 for s in spy.sigmas)
    torch.testing.assert_close(out, 0.9 * y)
    denoise_tensor(spy, y, tile=64)
    assert spy.sigmas[-1] is None  # no sigma: the model is called as model(y)


def test_sigma_makes_a_noise_level_model_non_blind():
    torch.manual_seed(0)
    model = filterscope_create("drunet", in_channels=1, widths=[4, 8], blocks=1).eval()
    y = torch.rand(1, 1, 37, 31)
    blind = denoise_tensor(model, y)
    told = denoise_tensor(model, y, sigma=25 / 255)
    torch.testing.assert_close(told, whole_with_sigma(model, y, 25 / 255), rtol=0, atol=1e-5)
    assert (told - blind).abs().max() > 1e-3


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf"), "25"])
def test_bad_sigma_is_refused(sigma):
    with pytest.raises(InputError, match="sigma"):
        denoise_tensor(make_tiny_dncnn(1), torch.rand(1, 1, 8, 8), sigma=sigma)


def test_ensemble_averages_the_eight_symmetries_tile_by_tile():
    from filterscope.ensemble import self_ensemble

    model = make_tiny_dncnn(1)
    y = torch.rand(1, 1, 37, 31)
    with torch.inference_mode():
        ref = self_ensemble(model, y)
    # A halo of the receptive radius makes the tiled ensemble the whole-image one.
    out = denoise_tensor(model, y, ensemble=True, tile=16)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert (out - denoise_tensor(model, y, tile=16)).abs().max() > 1e-4


def test_model_mode_is_restored_and_eval_is_used():
    model = make_tiny_dncnn(1).train()
    y = torch.rand(1, 1, 12, 12)
    out = denoise_tensor(model, y)
    assert model.training
    torch.testing.assert_close(out, whole(model.eval(), y))


def test_progress_bar_only_with_several_tiles(capsys):
    model = make_tiny_dncnn(1)
    denoise_tensor(model, torch.rand(1, 1, 12, 12), tile=16, progress=True)
    assert capsys.readouterr().err == ""
    denoise_tensor(model, torch.rand(1, 1, 40, 40), tile=16, progress=True)
    assert "tile" in capsys.readouterr().err


@pytest.mark.parametrize(("tile", "overlap"), [(0, 4), (16, -1), (8.5, 2)])
def test_bad_tiling_options(tile, overlap):
    with pytest.raises(InputError):
        denoise_tensor(make_tiny_dncnn(1), torch.rand(1, 1, 8, 8), tile=tile, overlap=overlap)


def test_bad_tensor_shape():
    with pytest.raises(InputError, match="C in"):
        denoise_tensor(make_tiny_dncnn(1), torch.rand(1, 2, 8, 8))


# ---------------------------------------------------------------- precision


def test_unknown_precision_is_refused():
    with pytest.raises(InputError, match="precision"):
        prepare_model(make_tiny_dncnn(1), precision="float16")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2"}, "float32"),
        ({"avx2", "avx512_bf16"}, "bfloat16"),
        ({"avx2", "amx_bf16"}, "bfloat16"),
    ],
)
def test_auto_precision_follows_native_bfloat16(tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset(flags))
    write_image(tmp_path / "in.png", np.full((9, 7, 1), 0.5, dtype=np.float32))
    for precision in (None, "auto"):
        out = tmp_path / f"out-{precision}.png"
        result = denoise_file(
            tmp_path / "in.png", out, model=make_tiny_dncnn(1), device="cpu", precision=precision
        )
        assert result["precision"] == expected  # the path taken, not "auto"


def test_precision_is_passed_to_optimize_for_inference(monkeypatch):
    calls = []

    def optimize_for_inference(model, *, precision="bfloat16"):
        calls.append(precision)
        return model

    monkeypatch.setattr(inference, "optimize_for_inference", optimize_for_inference)
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    model = make_tiny_dncnn(1)
    assert prepare_model(model) is model
    prepare_model(model, precision="float32")
    prepare_model(model, precision="auto")
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx2"}))
    prepare_model(model)
    assert calls == ["bfloat16", "float32", "bfloat16", "float32"]


# ---------------------------------------------------------------- files


def test_denoise_file_keeps_mode_and_bit_depth(tmp_path, tiny_model_path):
    image = np.random.default_rng(0).random((30, 26, 3), dtype=np.float32)
    write_image(tmp_path / "in.tif", image, dtype="uint16")
    result = denoise_file(
        tmp_path / "in.tif",
        tmp_path / "out.tif",
        model=tiny_model_path,
        tile=16,
        precision="float32",
        device="cpu",
    )
    assert result["shape"] == (30, 26, 3)
    assert result["tiles"] == 4
    assert result["seconds"] >= 0
    out, info = read_image(tmp_path / "out.tif")
    assert (info.dtype, info.channels) == ("uint16", 3)
    model = make_tiny_dncnn(1)
    ref = whole(
        model, torch.from_numpy(read_image(tmp_path / "in.tif")[0]).permute(2, 0, 1)[:, None]
    )
    ref = ref[:, 0].permute(1, 2, 0).clamp(0, 1).numpy()
    np.testing.assert_allclose(out, ref, atol=1 / 65535)


def test_denoise_file_float_output_is_not_clipped(tmp_path, tiny_model_path):
    image = np.random.default_rng(0).random((10, 12, 1), dtype=np.float32)
    write_image(tmp_path / "in.tif", image, dtype="float32")
    denoise_file(
        tmp_path / "in.tif", tmp_path / "out.tif", model=tiny_model_path, precision="float32"
    )
    out, info = read_image(tmp_path / "out.tif")
    assert info.dtype == "float32"
    ref = whole(make_tiny_dncnn(1), torch.from_numpy(image).permute(2, 0, 1)[None])
    np.testing.assert_allclose(out[:, :, 0], ref[0, 0].numpy(), atol=1e-6)


def test_denoise_file_default_precision_is_close_to_float32(tmp_path, tiny_model_path):
    image = np.random.default_rng(0).random((20, 20, 1), dtype=np.float32)
    write_image(tmp_path / "in.tif", image, dtype="float32")
    result = denoise_file(
        tmp_path / "in.tif", tmp_path / "out.tif", model=tiny_model_path, precision="bfloat16"
    )
    assert result["precision"] == "bfloat16"
    ref = whole(make_tiny_dncnn(1), torch.from_numpy(image).permute(2, 0, 1)[None])
    np.testing.assert_allclose(read_image(tmp_path / "out.tif")[0][:, :, 0], ref[0, 0], atol=0.02)


def test_denoise_file_takes_a_loaded_model(tmp_path):
    write_image(tmp_path / "in.png", np.full((8, 8, 1), 0.5, dtype=np.float32))
    denoise_file(tmp_path / "in.png", tmp_path / "out.png", model=make_tiny_dncnn(1))
    assert read_image(tmp_path / "out.png")[1].channels == 1


def test_denoise_file_refuses_a_colour_model_on_a_gray_image(tmp_path, tiny_color_model_path):
    write_image(tmp_path / "gray.png", np.full((8, 8, 1), 0.5, dtype=np.float32))
    with pytest.raises(ChannelError) as info:
        denoise_file(tmp_path / "gray.png", tmp_path / "out.png", model=tiny_color_model_path)
    message = str(info.value)
    assert str(tiny_color_model_path) in message and "gray.png" in message
    assert "3 channels" in message and "1 channel" in message and "\n" not in message
    assert not (tmp_path / "out.png").exists()


def test_denoise_file_keeps_orientation_and_profile(tmp_path, tiny_color_model_path):
    from PIL import Image, ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, as phones do
    stored = (np.random.default_rng(0).random((31, 37, 3)) * 255).astype(np.uint8)
    Image.fromarray(stored).save(tmp_path / "in.jpg", exif=exif, icc_profile=profile, dpi=(72, 72))
    result = denoise_file(tmp_path / "in.jpg", tmp_path / "out.jpg", model=tiny_color_model_path)
    assert (result["width"], result["height"], result["orientation"]) == (31, 37, 6)
    with Image.open(tmp_path / "out.jpg") as img:
        assert img.size == (31, 37)
        assert img.getexif().get(0x0112) == 1
        assert img.info["icc_profile"] == profile
        assert img.info["dpi"] == pytest.approx((72, 72))


def test_denoise_file_refuses_existing_output_before_work(tmp_path, tiny_model_path):
    write_image(tmp_path / "in.png", np.zeros((8, 8, 1), dtype=np.float32))
    (tmp_path / "out.png").write_bytes(b"keep")
    with pytest.raises(InputError, match="already exists"):
        # An unloadable model shows that the output was checked first.
        denoise_file(tmp_path / "in.png", tmp_path / "out.png", model=tmp_path / "nope.pt")
    assert (tmp_path / "out.png").read_bytes() == b"keep"


def test_missing_default_model_is_a_checkpoint_error(tmp_path, monkeypatch):
    from filterscope.models import shipped

    monkeypatch.setattr(shipped, "weights_dir", lambda: tmp_path / "no-weights")
    write_image(tmp_path / "in.png", np.zeros((8, 8, 1), dtype=np.float32))
    with pytest.raises(CheckpointError, match="default model"):
        denoise_file(tmp_path / "in.png", tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_sixteen_bit_rgb_to_png_is_refused_before_work(tmp_path, tiny_model_path):
    image = np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)
    write_image(tmp_path / "in.tif", image, dtype="uint16")
    with pytest.raises(InputError, match="TIFF"):
        denoise_file(tmp_path / "in.tif", tmp_path / "out.png", model=tiny_model_path)
    assert not (tmp_path / "out.png").exists()


# ---------------------------------------------------------------- many files


def gray_files(folder, names, size=(31, 37)):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        write_image(folder / name, rng.random((*size, 1), dtype=np.float32))
    return [folder / name for name in names]


def test_a_folder_of_three_images_gives_three_outputs(tmp_path, tiny_model_path):
    gray_files(tmp_path / "in", ["a.png", "b.tif", "c.png"])
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    seen = []
    records = denoise_files(
        [tmp_path / "in"], tmp_path / "out", model=tiny_model_path, on_result=seen.append
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.tif", "c.png"]
    assert [r["status"] for r in records] == ["ok"] * 3 and seen == records
    assert read_image(tmp_path / "out" / "b.tif")[1].dtype == "uint8"


def test_one_failure_does_not_stop_the_rest(tmp_path, tiny_model_path):
    good = gray_files(tmp_path, ["a.png", "c.png"])
    bad = tmp_path / "b.png"
    bad.write_text("not an image")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "c.png").write_bytes(b"keep")
    records = denoise_files([good[0], bad, good[1]], tmp_path / "out", model=tiny_model_path)
    assert [r["status"] for r in records] == ["ok", "failed", "failed"]
    assert "b.png: not an image file" in records[1]["error"]
    assert "already exists (pass overwrite=True" in records[2]["error"]
    assert (tmp_path / "out" / "c.png").read_bytes() == b"keep"
    assert read_image(tmp_path / "out" / "a.png")[0].shape == (31, 37, 1)


def test_summary_fields_and_noise_estimate(tmp_path, tiny_model_path):
    rng = np.random.default_rng(1)
    noisy = 0.5 + rng.normal(0, 25 / 255, (61, 67, 1)).astype(np.float32)
    write_image(tmp_path / "n.tif", noisy, dtype="float32")
    (record,) = denoise_files(
        [tmp_path / "n.tif"],
        tmp_path / "o.tif",
        model=tiny_model_path,
        estimate_noise=True,
        tile=32,
    )
    assert record["estimated_noise_255"] == pytest.approx(25, abs=2)
    assert (record["width"], record["height"], record["channels"]) == (67, 61, 1)
    assert record["tiles"] == 6 and record["input_bytes"] > 61 * 67 * 4
    assert record["output_bytes"] == (tmp_path / "o.tif").stat().st_size


def test_plan_outputs(tmp_path):
    files = gray_files(tmp_path / "in", ["a.png", "b.png"])
    (tmp_path / "existing").mkdir()
    assert plan_outputs([files[0]], tmp_path / "o.png") == ([(files[0], tmp_path / "o.png")], False)
    assert plan_outputs([files[0]], tmp_path / "existing")[0] == [
        (files[0], tmp_path / "existing" / "a.png")
    ]
    pairs, to_folder = plan_outputs(files, tmp_path / "new")
    assert to_folder and [t.name for _, t in pairs] == ["a.png", "b.png"]
    assert not (tmp_path / "new").exists()  # made only once work starts


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("output_is_a_file", "must be a folder"),
        ("same_name_twice", "would both be written"),
        ("output_is_input", "would replace this input"),
        ("empty_folder", "no image files"),
        ("missing_parent", "parent does not exist"),
    ],
)
def test_plans_that_cannot_work_are_refused_before_any_work(tmp_path, case, message):
    files = gray_files(tmp_path / "in", ["a.png", "b.png"])
    inputs, output = files, tmp_path / "out"
    if case == "output_is_a_file":
        output.write_bytes(b"x")
    elif case == "same_name_twice":
        inputs = [files[0], *gray_files(tmp_path / "other", ["a.png"])]
    elif case == "output_is_input":
        output = tmp_path / "in"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        inputs = [tmp_path / "empty"]
    elif case == "missing_parent":
        output = tmp_path / "no" / "out"
    with pytest.raises(InputError, match=message):
        denoise_files(inputs, output, model=tmp_path / "never-loaded.pt")


def test_output_folder_that_cannot_be_made_is_an_input_error(
    tmp_path, tiny_model_path, monkeypatch
):
    files = gray_files(tmp_path / "in", ["a.png", "b.png"])

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "mkdir", full_disk)
    with pytest.raises(InputError, match="cannot make the output folder"):
        denoise_files(files, tmp_path / "out", model=tiny_model_path)


def test_tiled_drunet_with_blind_estimate_uses_the_whole_image_estimate_in_every_tile():
    torch.manual_seed(0)
    model = filterscope_create("drunet", widths=[4, 8], blocks=1, blind_estimate=True).eval()
    y = torch.rand(2, 1, 61, 53, generator=torch.Generator().manual_seed(2))
    tiled = denoise_tensor(model, y, tile=model.receptive_radius)
    torch.testing.assert_close(tiled, whole(model, y), rtol=0, atol=1e-5)
    # Not trivial: each tile estimating its own σ gives another result.
    per_tile = each_tile_alone(model, y, align=2)
    assert (per_tile - whole(model, y)).abs().max() > 1e-4
