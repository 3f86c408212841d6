"""The ntk command's operations as library calls (filterscope.ntk.reports)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from filterscope.errors import InputError
from filterscope.ntk.denoiser import filter_basis
from filterscope.ntk.reports import (
    basis_report,
    denoise_image,
    eigenimage_paths,
    filter_rows,
    save_eigenimages,
)


def _pair(height: int = 31, width: int = 37):
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, height, dtype=torch.float64),
        torch.linspace(0, 1, width, dtype=torch.float64),
        indexing="ij",
    )
    clean = (0.5 + 0.3 * torch.sin(9 * xx) * torch.cos(7 * yy))[None]
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=clean.dtype)
    return clean + 0.1 * noise, clean


def test_denoise_image_uses_the_oracle_with_a_clean_image_and_reports_psnr():
    y, clean = _pair()
    result = denoise_image(y, clean=clean, kernel_size=5)
    assert result.info["stop"] == "oracle" and result.psnr > 20.0
    payload = json.loads(json.dumps(result.to_json()))
    assert payload["psnr"] == pytest.approx(result.psnr) and payload["method"] == "ntk"
    assert "stop oracle" in result.summary()


def test_filter_rows_are_rows_of_the_filter():
    y, _ = _pair(15, 17)
    rows = filter_rows(y, [(3, 4), (16, 12)], columns=1.0, kernel_size=5)  # (x, y)
    full = filter_basis(y, columns=None, kernel_size=5).matrix()
    assert rows.shape == (2, 15, 17)
    assert torch.allclose(rows[1].reshape(-1), full[12 * 17 + 16], atol=1e-10)
    for outside in [(17, 0), (0, 15)]:  # the image is 17 wide, 15 high
        with pytest.raises(InputError, match="outside the 17x15 image"):
            filter_rows(y, [outside], kernel_size=5)
    with pytest.raises(InputError, match="NLM filter needs sigma"):
        filter_rows(y, [(3, 4)], method="nlm")


def test_eigenimages_as_npy_and_as_pngs(tmp_path):
    y, _ = _pair(15, 17)
    basis = filter_basis(y, columns=None, kernel_size=5, rank=6)
    assert save_eigenimages(basis, tmp_path / "e.npy", 4) == 4
    assert np.load(tmp_path / "e.npy").shape == (4, 15, 17)
    assert np.load(tmp_path / "e_eigvals.npy").shape == (4,)
    assert save_eigenimages(basis, tmp_path / "folder", 3) == 3
    assert sorted(p.name for p in (tmp_path / "folder").iterdir())[-1] == "eigenimage_02.png"
    assert basis_report(basis)["rank"] == 6
    (tmp_path / "file.png").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        eigenimage_paths(tmp_path / "file.png", 2)
    with pytest.raises(InputError, match="does not exist"):
        eigenimage_paths(tmp_path / "nowhere" / "e.npy", 2)
