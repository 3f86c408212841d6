"""Bounded memory for large images: the NTK filter of overlapping tiles."""

from __future__ import annotations

import pytest
import torch

from filterscope.errors import InputError
from filterscope.ntk.denoiser import denoise
from filterscope.ntk.tiling import (
    DEFAULT_MAX_BYTES,
    IMAGE_BYTES_PER_PIXEL_CHANNEL,
    choose_tile,
    estimate_bytes,
    tile_starts,
)


def _noisy(height: int, width: int, channels: int = 1) -> torch.Tensor:
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, height, dtype=torch.float64),
        torch.linspace(0, 1, width, dtype=torch.float64),
        indexing="ij",
    )
    x = (0.5 + 0.3 * torch.sin(9 * xx) * torch.cos(7 * yy))[None].repeat(channels, 1, 1)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    return x + 0.1 * noise


@pytest.mark.parametrize("length, tile", [(64, 64), (70, 64), (200, 64), (513, 128)])
def test_tiles_cover_the_side_with_the_overlap(length, tile):
    starts = tile_starts(length, tile, 16)
    assert starts[0] == 0 and starts[-1] + tile == max(length, tile)
    assert all(b - a <= tile - 16 for a, b in zip(starts, starts[1:], strict=False))


def test_small_images_are_whole_and_a_12_megapixel_photo_is_tiled_within_4_gib():
    assert choose_tile(256, 256, 3, columns=0.02, max_bytes=DEFAULT_MAX_BYTES) is None
    # a 1024x680 photo needed 6.35 GB whole: now tiled
    assert choose_tile(680, 1024, 3, columns=0.02, max_bytes=DEFAULT_MAX_BYTES) is not None
    side = choose_tile(3000, 4000, 3, columns=0.02, max_bytes=DEFAULT_MAX_BYTES)
    assert side is not None and 64 <= side <= 512
    arrays = IMAGE_BYTES_PER_PIXEL_CHANNEL * 3000 * 4000 * 3
    assert arrays + estimate_bytes(side, side, 3, columns=0.02) <= DEFAULT_MAX_BYTES


def test_tiled_denoising_blends_tiles_and_keeps_single_tile_pixels():
    y = _noisy(70, 80)
    whole_bytes = estimate_bytes(70, 80, 1, columns=0.02)
    budget = whole_bytes - 1  # the whole image does not fit, a 64x64 tile does
    assert choose_tile(70, 80, 1, columns=0.02, max_bytes=budget) == 64
    x_hat, info = denoise(y, stop=3.0, max_bytes=budget)
    assert info["tiles"] == 4 and info["tile"] == 64 and len(info["tile_t"]) == 4
    assert x_hat.shape == y.shape and torch.isfinite(x_hat).all()
    # rows < 6 and columns < 16 lie in the first tile alone: exactly that tile's output
    corner, _ = denoise(y[:, :64, :64], stop=3.0, max_bytes=None)
    assert torch.allclose(x_hat[:, :6, :16], corner[:, :6, :16], atol=1e-12)
    assert not torch.allclose(x_hat[:, 30:40, :16], corner[:, 30:40, :16], atol=1e-6)
    whole, whole_info = denoise(y, stop=3.0, max_bytes=None)
    assert "tiles" not in whole_info
    assert float((x_hat - whole).abs().mean()) < 0.05  # tiles and the whole image agree


def test_oracle_stopping_in_tiles_uses_each_tile_of_the_clean_image():
    y = _noisy(70, 80)
    clean = _noisy(70, 80) * 0 + 0.5
    budget = estimate_bytes(70, 80, 1, columns=0.02) - 1
    _, info = denoise(y, clean=clean, stop="oracle", max_bytes=budget)
    assert info["stop"] == "oracle" and info["tiles"] == 4


def test_a_budget_too_small_for_any_tile_is_refused_with_the_memory_needed():
    with pytest.raises(InputError, match="GiB"):
        denoise(_noisy(70, 80), stop=3.0, max_bytes=1000)
    with pytest.raises(InputError, match="clean has shape"):
        denoise(_noisy(70, 80), clean=_noisy(60, 80), stop="oracle")


def test_cli_denoises_in_tiles_under_a_small_budget_and_reports_them(tmp_path, capsys):
    import json

    import filterscope
    from filterscope.cli.main import main

    noisy = tmp_path / "noisy.png"
    filterscope.write_image(noisy, _noisy(70, 80)[0, :, :, None].clamp(0, 1).float().numpy())
    gib = (estimate_bytes(70, 80, 1, columns=0.02) - 1) / 2**30
    out, report = tmp_path / "out.png", tmp_path / "out.json"
    argv = ["ntk", "denoise", str(noisy), "-o", str(out), "--stop", "3", "--json", str(report)]
    assert main(argv + ["--max-gib", f"{gib:.12f}"]) == 0
    assert "4 tiles of 64 px" in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["tiles"] == 4 and len(data["tile_t"]) == 4 and out.exists()
    assert main(argv[:4] + [str(tmp_path / "b.png"), "--max-gib", "1e-6", "--stop", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GiB" in err[0] and not (tmp_path / "b.png").exists()
