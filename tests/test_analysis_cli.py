"""``filterscope analyze ...`` on a tiny model and tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import filterscope
from filterscope.cli import main as cli_main
from filterscope.cli.analyze import parse_sigmas


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setitem(cli_main.COMMANDS, "analyze", "filterscope.cli.analyze")
    return cli_main.main


@pytest.fixture
def clean_image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:31, 0:37]
    image = (0.3 + 0.4 * (xx > 18) + 0.05 * rng.standard_normal((31, 37))).clip(0, 1)
    path = tmp_path / "clean.png"
    filterscope.write_image(path, image[:, :, None].astype(np.float32))
    return path


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_parse_sigmas():
    assert parse_sigmas("10:50:20") == [10, 30, 50]
    assert parse_sigmas("5,25") == [5, 25]
    with pytest.raises(filterscope.InputError):
        parse_sigmas("a,b")


DECOMPOSITION_FIELDS = {"sigma", "noise_norm", "residual_norm", "linear_norm", "bias_norm"}


def test_decomposition(cli, tiny_model_path, clean_image, tmp_path):
    out = tmp_path / "dec.json"
    args = ["analyze", "decomposition", "--model", str(tiny_model_path), "--data"]
    args += [str(clean_image.parent), "--sigmas", "10,50", "--patch", "12", "--patches", "3"]
    assert cli(args + ["--json", str(out)]) == 0
    data = _read(out)
    results = data["results"]
    assert data["mode"] == "patches" and data["patch"] == 12
    assert [r["sigma"] for r in results] == [10, 50]
    assert all(DECOMPOSITION_FIELDS <= set(r) for r in results)
    assert all(r["images"] == 3 for r in results)
    assert results[1]["bias_norm"] < 1e-9


def test_decomposition_whole_images_and_plot(cli, tiny_model_path, clean_image, tmp_path):
    pytest.importorskip("matplotlib")
    # a second, smaller image: whole images of different sizes are each one input
    filterscope.write_image(clean_image.parent / "b.png", np.full((9, 14, 1), 0.5, np.float32))
    out = tmp_path / "whole.json"
    args = ["analyze", "decomposition", "--model", str(tiny_model_path), "--data"]
    args += [str(clean_image.parent), "--sigmas", "10,30,50", "--patch", "0", "--plot"]
    assert cli(args + ["--json", str(out)]) == 0
    data = _read(out)
    assert data["mode"] == "whole images" and data["patch"] is None
    assert data["images"] == ["b.png", "clean.png"]
    assert all(DECOMPOSITION_FIELDS <= set(r) and r["images"] == 2 for r in data["results"])
    assert all(r["bias_norm"] < 1e-9 for r in data["results"])  # bias-free model
    # norms average the per-image RMS values, so the noise norm is close to sigma
    assert data["results"][2]["noise_norm"] == pytest.approx(50, rel=0.2)
    for name in ("whole.png", "whole_parts.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_filters(cli, tiny_model_path, clean_image, tmp_path):
    out = tmp_path / "f.json"
    args = ["analyze", "filters", "--model", str(tiny_model_path), "--image", str(clean_image)]
    assert cli(args + ["--sigma", "50", "--pixels", "3,4", "36,30", "--json", str(out)]) == 0
    filters = _read(out)["filters"]
    assert [f["pixel"] for f in filters] == [[3, 4], [36, 30]]
    assert all(isinstance(f["sum"], float) and "extent_99" in f for f in filters)
    # the filter is the weight window; its entries add up to the reported sum
    assert all(np.isclose(np.sum(f["filter"]), f["sum"], rtol=0, atol=1e-9) for f in filters)


def test_spectrum_and_dimension(cli, tiny_model_path, clean_image, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "s.json"
    args = ["analyze", "spectrum", "--model", str(tiny_model_path), "--image", str(clean_image)]
    args += ["--sigmas", "10,50", "--patch", "10", "--at", "13,5", "--json", str(out), "--plot"]
    assert cli(args) == 0
    data = _read(out)
    assert [r["sigma"] for r in data["results"]] == [10, 50]
    for r in data["results"]:
        assert {"sigma", "singular_values", "effective_dim", "clean_energy_fraction"} <= set(r)
        assert {"cosines", "signal_dim"} <= set(r)
    assert len(data["results"][0]["singular_values"]) == 100
    assert 0 <= data["results"][0]["clean_energy_fraction"] <= 1 + 1e-9
    assert data["nesting"][0]["reference_sigma"] == 10
    assert {"sigma", "reference_sigma", "fraction"} <= set(data["nesting"][0])
    for name in ("s.png", "s_subspaces.png", "s_vectors.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "d.json"
    args = ["analyze", "dimension", "--model", str(tiny_model_path), "--image", str(clean_image)]
    assert cli(args + ["--sigma", "50", "--probes", "4", "--json", str(out), "--plot"]) == 0
    data = _read(out)
    assert {"sigma", "effective_dim", "interval", "probes"} <= set(data)
    assert data["sigma"] == 50 and data["probes"] == 4
    lo, hi = data["interval"]
    assert lo <= data["effective_dim"] <= hi
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


def test_plot(cli, tiny_model_path, clean_image, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "f.json"
    args = ["analyze", "filters", "--model", str(tiny_model_path), "--image", str(clean_image)]
    assert cli(args + ["--sigma", "30", "--pixels", "5,5", "--json", str(out), "--plot"]) == 0
    assert (tmp_path / "f.png").stat().st_size > 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["filters", "--sigma", "50", "--pixels", "37,3"], "outside"),
        (["filters", "--sigma", "50", "--pixels", "3,-1"], "outside"),
        (["spectrum", "--patch", "40"], "larger than"),
        (["spectrum", "--patch", "20", "--max-gib", "0.0001"], "matrix-free"),
        (["spectrum", "--patch", "10", "--at", "30,3"], "does not fit"),
        (["filters", "--sigma", "50", "--pixels", "3"], "X,Y"),
        (["dimension", "--sigma", "50", "--probes", "1"], "at least 2"),
        (["filters", "--sigma", "-5", "--pixels", "3,4"], "sigma must be >= 0"),
        (["dimension", "--sigma", "-5", "--probes", "2"], "sigma must be >= 0"),
    ],
)
def test_bad_input_exit_2(cli, tiny_model_path, clean_image, tmp_path, capsys, extra, message):
    args = ["analyze", extra[0], "--model", str(tiny_model_path), "--image", str(clean_image)]
    assert cli(args + extra[1:] + ["--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    "extra, message", [(["--patch", "40"], "larger than"), (["--patch", "-1"], ">= 1")]
)
def test_decomposition_bad_patch_exit_2(
    cli, tiny_model_path, clean_image, tmp_path, capsys, extra, message
):
    args = ["analyze", "decomposition", "--model", str(tiny_model_path)]
    args += ["--data", str(clean_image.parent), "--json", str(tmp_path / "x.json")]
    assert cli(args + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


class _NumpyDenoiser(torch.nn.Module):
    """Halves the image through numpy: runs, but torch cannot differentiate it."""

    in_channels = 1

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(y.detach().cpu().numpy() * 0.5)


@pytest.mark.parametrize(
    "extra",
    [
        ["filters", "--image", "IMG", "--sigma", "50", "--pixels", "3,4"],
        ["spectrum", "--image", "IMG", "--patch", "8"],
        ["dimension", "--image", "IMG", "--sigma", "50", "--probes", "2"],
        ["decomposition", "--data", "DIR", "--patch", "8", "--patches", "2"],
    ],
)
def test_not_differentiable_model_exit_2(cli, monkeypatch, clean_image, tmp_path, capsys, extra):
    from filterscope.cli import analyze

    monkeypatch.setattr(analyze, "_load", lambda model, channels: _NumpyDenoiser())
    extra = [
        str(clean_image) if e == "IMG" else str(clean_image.parent) if e == "DIR" else e
        for e in extra
    ]
    assert cli(["analyze", *extra, "--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not differentiable" in err[0]
    assert not (tmp_path / "x.json").exists()


def test_existing_outputs_are_kept_without_force(
    cli, tiny_model_path, clean_image, tmp_path, capsys
):
    pytest.importorskip("matplotlib")
    out = tmp_path / "f.json"
    args = ["analyze", "filters", "--model", str(tiny_model_path), "--image", str(clean_image)]
    args += ["--sigma", "50", "--pixels", "3,4", "--json", str(out), "--plot"]
    figure = tmp_path / "f.png"
    figure.write_bytes(b"mine")  # only the figure exists: refused all the same
    assert cli(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert figure.read_bytes() == b"mine" and not out.exists()
    assert cli(args + ["--force"]) == 0
    assert figure.read_bytes()[:4] == b"\x89PNG" and _read(out)["filters"]
    out.write_text("mine")
    assert cli(args[:-1]) == 2  # the JSON alone, no --plot
    assert out.read_text() == "mine"
