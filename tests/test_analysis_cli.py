"""``filterscope analyze ...`` on a tiny model and tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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


def test_decomposition(cli, tiny_model_path, clean_image, tmp_path):
    out = tmp_path / "dec.json"
    args = ["analyze", "decomposition", "--model", str(tiny_model_path), "--data"]
    args += [str(clean_image.parent), "--sigmas", "10,50", "--patch", "12", "--patches", "3"]
    assert cli(args + ["--json", str(out)]) == 0
    results = _read(out)["results"]
    assert [r["sigma"] for r in results] == [10, 50]
    assert {"noise_norm", "residual_norm", "linear_norm", "bias_norm"} <= set(results[0])
    assert results[1]["bias_norm"] < 1e-9


def test_filters(cli, tiny_model_path, clean_image, tmp_path):
    out = tmp_path / "f.json"
    args = ["analyze", "filters", "--model", str(tiny_model_path), "--image", str(clean_image)]
    assert cli(args + ["--sigma", "50", "--pixels", "3,4", "36,30", "--json", str(out)]) == 0
    filters = _read(out)["filters"]
    assert [f["pixel"] for f in filters] == [[3, 4], [36, 30]]
    assert all(isinstance(f["sum"], float) and "extent_99" in f for f in filters)


def test_spectrum_and_dimension(cli, tiny_model_path, clean_image, tmp_path):
    out = tmp_path / "s.json"
    args = ["analyze", "spectrum", "--model", str(tiny_model_path), "--image", str(clean_image)]
    args += ["--sigmas", "10,50", "--patch", "10", "--at", "13,5", "--json", str(out)]
    assert cli(args) == 0
    data = _read(out)
    assert [r["sigma"] for r in data["results"]] == [10, 50]
    assert len(data["results"][0]["singular_values"]) == 100
    assert 0 <= data["results"][0]["clean_energy_fraction"] <= 1 + 1e-9
    assert data["nesting"][0]["reference_sigma"] == 10
    out = tmp_path / "d.json"
    args = ["analyze", "dimension", "--model", str(tiny_model_path), "--image", str(clean_image)]
    assert cli(args + ["--sigma", "50", "--probes", "4", "--json", str(out)]) == 0
    data = _read(out)
    assert data["sigma"] == 50 and data["probes"] == 4
    lo, hi = data["interval"]
    assert lo <= data["effective_dim"] <= hi


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
        (["spectrum", "--patch", "40"], "larger than"),
        (["spectrum", "--patch", "20", "--max-gib", "0.0001"], "matrix-free"),
        (["filters", "--sigma", "50", "--pixels", "3"], "X,Y"),
    ],
)
def test_bad_input_exit_2(cli, tiny_model_path, clean_image, tmp_path, capsys, extra, message):
    args = ["analyze", extra[0], "--model", str(tiny_model_path), "--image", str(clean_image)]
    assert cli(args + extra[1:] + ["--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
