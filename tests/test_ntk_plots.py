"""Figures of the neural-tangent filters (Figures 1 and 2) and their CLI, on tiny images."""

from __future__ import annotations

import pytest
import torch

from filterscope.cli.main import main
from filterscope.errors import InputError
from filterscope.io import write_image
from filterscope.ntk import filter_basis

pytest.importorskip("matplotlib")

from filterscope.plotting.ntk import plot_eigenimages, plot_filter_rows  # noqa: E402

PNG = b"\x89PNG"


def _image(c=3, h=11, w=13, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(c, h, w, generator=g, dtype=torch.float64)


def _write(path, image):
    write_image(path, image.permute(1, 2, 0).numpy(), overwrite=True)
    return str(path)


def test_filter_rows_are_rows_of_the_matrix():
    y = _image()
    basis = filter_basis(y, kernel_size=3, columns=None)
    pixels = [(0, 0), (7, 5), (12, 10)]  # (x, y) = (column, row) in the 13-wide image
    rows = basis.rows(pixels)
    w = basis.matrix()
    flat = [y * 13 + x for x, y in pixels]
    assert rows.shape == (3, 11, 13)
    assert torch.allclose(rows.reshape(3, -1), w[flat], atol=1e-12)
    # twicing filter rows: t = 1 is W itself
    assert torch.allclose(basis.rows(pixels, t=1.0), rows, atol=1e-12)
    # row normalisation: rows of the row-stochastic NLM filter sum to 1
    nlm = filter_basis(y, method="nlm", sigma=0.1, kernel_size=3, columns=None, rank=None)
    assert torch.allclose(nlm.rows(pixels).sum((1, 2)), torch.ones(3, dtype=torch.float64))
    for outside in [(13, 0), (0, 11), (-1, 3)]:  # the image is 13 wide, 11 high
        with pytest.raises(InputError, match="outside the 13x11 image"):
            basis.rows([outside])


def test_plots_write_pngs(tmp_path):
    y = _image()
    basis = filter_basis(y, kernel_size=3, columns=0.5)
    pixels = [(2, 3), (8, 9)]
    out = plot_filter_rows(y, basis.rows(pixels), pixels, tmp_path / "f.png", window=5)
    assert out.read_bytes()[:4] == PNG
    out = plot_eigenimages(basis.eigenimages(3), basis.eigvals, tmp_path / "e.png", columns=2)
    assert out.read_bytes()[:4] == PNG


def test_cli_filters_and_eigenimages_plot(tmp_path):
    src = _write(tmp_path / "in.png", _image())
    fig = tmp_path / "filters.png"
    argv = ["ntk", "filters", src, "--kernel", "3", "--pixels", "2,3", "8,9", "-o", str(fig)]
    assert main([*argv, "--columns", "1", "--steps", "3"]) == 0
    assert fig.read_bytes()[:4] == PNG
    nlm = tmp_path / "nlm.png"
    argv = ["ntk", "filters", src, "--method", "nlm", "--sigma", "25", "--kernel", "3"]
    assert main([*argv, "--pixels", "5,5", "-o", str(nlm)]) == 0
    assert nlm.read_bytes()[:4] == PNG
    eig = tmp_path / "eig"
    plot = tmp_path / "eig.png"
    argv = ["ntk", "eigenimages", src, "--kernel", "3", "-n", "3", "--columns", "0.5"]
    assert main([*argv, "-o", str(eig), "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:4] == PNG
    assert len(list(eig.glob("eigenimage_*.png"))) == 3


def test_cli_filters_pixels_are_x_y(tmp_path, capsys):
    """--pixels X,Y: x the column, y the row, as image tools count; the label says so."""
    src = _write(tmp_path / "in.png", _image())  # 13 wide, 11 high
    argv = ["ntk", "filters", src, "--kernel", "3", "--columns", "1", "-o", str(tmp_path / "f.png")]
    assert main([*argv, "--pixels", "12,10"]) == 0  # the far corner: x = 12 < 13, y = 10 < 11
    capsys.readouterr()
    assert main([*argv, "--force", "--pixels", "10,12"]) == 2  # y = 12 is below the image
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "pixel (10, 12) is outside the 13x11 image" in err and "--pixels" not in err


@pytest.mark.parametrize(
    "extra",
    [
        ["--pixels", "13,0"],  # outside the 13x11 image (x = 13)
        ["--pixels", "0,11"],  # y = 11
        ["--pixels", "3"],
        ["--pixels", "3,3", "--columns", "0"],
        ["--pixels", "3,3", "--method", "nlm"],  # NLM needs sigma
        ["--pixels", "3,3", "--depth", "1"],
        ["--pixels", "3,3", "--window", "0"],
    ],
)
def test_cli_filters_bad_input_exit_2(tmp_path, capsys, extra):
    src = _write(tmp_path / "in.png", _image())
    argv = ["ntk", "filters", src, "--kernel", "3", "-o", str(tmp_path / "f.png")]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("filterscope: error:")
    assert not (tmp_path / "f.png").exists()
