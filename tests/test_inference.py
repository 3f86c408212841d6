"""Tiled inference: equality with whole-image results, channel matching, bounded batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_tiny_dncnn
from filterscope import CheckpointError, InputError, inference, read_image, write_image
from filterscope.inference import (
    default_precision,
    denoise_file,
    denoise_tensor,
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


# ---------------------------------------------------------------- tiling


def test_tiled_result_equals_whole_image_result():
    model = make_tiny_dncnn(1)
    y = torch.rand(2, 1, 37, 31, generator=torch.Generator().manual_seed(1))
    tiled = denoise_tensor(model, y, tile=16)
    assert len(tile_grid(37, 31, tile=16, overlap=model.receptive_radius)) == 6
    torch.testing.assert_close(tiled, whole(model, y), rtol=0, atol=1e-5)


def test_halo_smaller_than_receptive_radius_changes_the_result():
    # The equality above is not trivial: too little context shows at the seams.
    model = make_tiny_dncnn(1)
    y = torch.rand(1, 1, 37, 31, generator=torch.Generator().manual_seed(1))
    tiled = denoise_tensor(model, y, tile=16, overlap=model.receptive_radius - 1)
    assert (tiled - whole(model, y)).abs().max() > 1e-4


@pytest.mark.parametrize(("height", "width", "tile"), [(37, 31, 16), (16, 16, 16), (5, 40, 7)])
def test_tile_cores_cover_every_pixel(height, width, tile):
    covered = np.zeros((height, width), dtype=int)
    for core, padded in tile_grid(height, width, tile=tile, overlap=3):
        top, bottom, left, right = core
        assert 0 <= padded[0] <= top < bottom <= padded[1] <= height
        assert 0 <= padded[2] <= left < right <= padded[3] <= width
        assert bottom - top == min(tile, height) and right - left == min(tile, width)
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


def test_color_model_on_gray_averages_the_replicated_outputs():
    model = make_tiny_dncnn(3)
    y = torch.rand(2, 1, 20, 18)
    out = denoise_tensor(model, y, tile=8)
    assert out.shape == (2, 1, 20, 18)
    ref = whole(model, y.expand(2, 3, 20, 18)).mean(dim=1, keepdim=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


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


def test_default_precision_follows_native_bfloat16_support(monkeypatch):
    monkeypatch.setattr(inference, "bfloat16_supported", lambda: False)
    assert default_precision() == "float32"
    monkeypatch.setattr(inference, "bfloat16_supported", lambda: True)
    assert default_precision() == "bfloat16"


def test_precision_is_passed_to_optimize_for_inference(monkeypatch):
    calls = []

    def optimize_for_inference(model, *, precision="bfloat16"):
        calls.append(precision)
        return model

    monkeypatch.setattr(inference, "optimize_for_inference", optimize_for_inference)
    monkeypatch.setattr(inference, "bfloat16_supported", lambda: True)
    model = make_tiny_dncnn(1)
    assert prepare_model(model) is model
    prepare_model(model, precision="float32")
    assert calls == ["bfloat16", "float32"]


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
    denoise_file(tmp_path / "in.png", tmp_path / "out.png", model=make_tiny_dncnn(3))
    assert read_image(tmp_path / "out.png")[1].channels == 1


def test_denoise_file_refuses_existing_output_before_work(tmp_path, tiny_model_path):
    write_image(tmp_path / "in.png", np.zeros((8, 8, 1), dtype=np.float32))
    (tmp_path / "out.png").write_bytes(b"keep")
    with pytest.raises(InputError, match="already exists"):
        # An unloadable model shows that the output was checked first.
        denoise_file(tmp_path / "in.png", tmp_path / "out.png", model=tmp_path / "nope.pt")
    assert (tmp_path / "out.png").read_bytes() == b"keep"


def test_missing_default_model_is_a_checkpoint_error(tmp_path, monkeypatch):
    from filterscope.models import zoo

    monkeypatch.setattr(zoo, "weights_dir", lambda: tmp_path / "no-weights")
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
