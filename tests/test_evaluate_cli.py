"""``filterscope evaluate`` in-process, and the generalization figures it draws.

Every bad input must give one line on stderr and exit status 2 before any model
runs; a stand-in for the sweep makes the test fail if one does.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import filterscope.evaluation.runner as runner
from filterscope.cli.analyze import parse_sigmas
from filterscope.cli.main import build_parser, main

SHARED = Path(os.environ.get("FILTERSCOPE_SHARED") or Path(__file__).parents[1].parent / "shared")
PRETRAINED = SHARED / "reference" / "bias_free_denoising" / "pretrained"
HEIGHT, WIDTH = 23, 19  # odd, unequal sides


def write_png(path: Path, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = 0.5 + 0.3 * np.sin(cols / 4.0 + seed) * np.cos(rows / 5.0)
    image = np.clip(base[..., None] + 0.02 * rng.standard_normal((HEIGHT, WIDTH, channels)), 0, 1)
    data = np.round(image * 255).astype(np.uint8)
    Image.fromarray(data[..., 0] if channels == 1 else data).save(path)
    return path


@pytest.fixture
def gray_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "gray"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"im{i}.png", 1, seed=i)
    return folder


@pytest.fixture
def rgb_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rgb"
    folder.mkdir()
    write_png(folder / "c.png", 3)
    return folder


def run_cli(*args: str) -> int:
    return main(["evaluate", *args, "--no-progress"])


def test_default_noise_levels_are_the_published_ones():
    args = build_parser().parse_args(["evaluate", "--model", "m", "--data", "d"])
    assert parse_sigmas(args.sigmas) == [10.0 * k for k in range(1, 11)]
    assert args.noise == "gaussian" and args.precision == "auto"  # float32 everywhere


def test_json_csv_and_table(tmp_path, gray_dir, tiny_model_path, capsys):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    model = str(tiny_model_path)
    code = run_cli(
        "--model", model, "--model", "nlm", "--data", str(gray_dir), "--sigmas", "10,30",
        "--json", str(out_json), "--csv", str(out_csv), "--seed", "3",
    )  # fmt: skip
    assert code == 0
    result = json.loads(out_json.read_text())
    assert set(result) >= {"protocol", "results", "models"}
    assert result["protocol"]["noise"] == "gaussian" and result["protocol"]["seed"] == 3
    assert result["protocol"]["images"] == ["im0.png", "im1.png"]
    # names exactly as given on the command line, model-major then σ
    assert [(r["model"], r["sigma"]) for r in result["results"]] == [
        (model, 10.0), (model, 30.0), ("nlm", 10.0), ("nlm", 30.0)
    ]  # fmt: skip
    for entry in result["results"]:
        assert entry["noise"] == "gaussian" and entry["blur"] == 0.0
        assert [p["image"] for p in entry["per_image"]] == ["im0.png", "im1.png"]
        assert entry["psnr"] == pytest.approx(np.mean([p["psnr"] for p in entry["per_image"]]))
    # both models saw the same noisy images
    assert result["results"][0]["psnr_in"] == result["results"][2]["psnr_in"]
    assert result["models"][model]["training_sigma_range_255"] == [0.0, 55.0]
    assert result["models"][model]["sigma_source"] == "blind"
    assert result["models"]["nlm"]["sigma_source"] == "true"
    assert [r["sigma_source"] for r in result["results"]] == ["blind", "blind", "true", "true"]
    rows = list(csv.DictReader(out_csv.open()))
    assert [(r["model"], float(r["sigma"])) for r in rows] == [
        (e["model"], e["sigma"]) for e in result["results"]
    ]
    assert float(rows[2]["psnr"]) == pytest.approx(result["results"][2]["psnr"])
    out = capsys.readouterr().out
    for column in ("model", "sigma", "psnr_in", "ssim_in", "psnr", "ssim"):
        assert column in out.splitlines()[1]
    assert "nlm" in out and f"wrote {out_json}" in out


def test_uniform_noise_is_passed_and_recorded(tmp_path, gray_dir):
    uniform, gaussian = tmp_path / "u.json", tmp_path / "g.json"
    common = ["--model", "nlm", "--data", str(gray_dir), "--sigmas", "40"]
    assert run_cli(*common, "--noise", "uniform", "--json", str(uniform)) == 0
    assert run_cli(*common, "--json", str(gaussian)) == 0
    u, g = json.loads(uniform.read_text()), json.loads(gaussian.read_text())
    assert u["protocol"]["noise"] == "uniform"
    assert [e["noise"] for e in u["results"]] == ["uniform"]
    # a different noise distribution: different noisy images, similar input PSNR
    assert u["results"][0]["psnr_in"] != g["results"][0]["psnr_in"]
    assert u["results"][0]["psnr_in"] == pytest.approx(g["results"][0]["psnr_in"], abs=1.0)


def test_blur_and_estimated_sigma(tmp_path, gray_dir):
    out = tmp_path / "b.json"
    args = ["--model", "nlm:estimate", "--data", str(gray_dir), "--sigmas", "25"]
    assert run_cli(*args, "--blur", "1.5", "--json", str(out)) == 0
    result = json.loads(out.read_text())
    (entry,) = result["results"]
    assert entry["model"] == "nlm:estimate" and entry["sigma_source"] == "estimated"
    assert entry["blur"] == 1.5 and result["protocol"]["blur"] == 1.5
    assert all(p["sigma_estimated"] > 0 for p in entry["per_image"])


def test_plot_is_written(tmp_path, gray_dir, tiny_model_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "g.png"
    args = ["--model", str(tiny_model_path), "--model", "nlm", "--data", str(gray_dir)]
    assert run_cli(*args, "--sigmas", "10,50", "--plot", str(plot)) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 1000
    assert not list(tmp_path.glob(".filterscope-tmp-*"))  # written atomically


def test_force_overwrites(tmp_path, gray_dir):
    out = tmp_path / "r.json"
    out.write_text("old")
    args = ["--model", "nlm", "--data", str(gray_dir), "--sigmas", "20", "--json", str(out)]
    assert run_cli(*args, "--force") == 0
    assert json.loads(out.read_text())["results"][0]["model"] == "nlm"


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def no_sweep(monkeypatch):
    """Fail the test if a sweep starts: bad input must be refused before any work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the sweep started despite bad input")

    monkeypatch.setattr(runner, "evaluate", refuse)


def mixed_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_png(folder / "a.png", 1)
    write_png(folder / "b.png", 3)
    return folder


def empty_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    return folder


BAD_INPUTS = {
    "missing folder": (
        lambda t, g, r, m: ["--model", m, "--data", str(t / "nope")],
        "not a folder",
    ),
    "folder without images": (
        lambda t, g, r, m: ["--model", m, "--data", str(empty_dir(t))],
        "no image files",
    ),
    "mixed gray and colour": (
        lambda t, g, r, m: ["--model", m, "--data", str(mixed_dir(t))],
        "mixes gray",
    ),
    "mixed, baseline only": (
        lambda t, g, r, m: ["--model", "nlm", "--data", str(mixed_dir(t))],
        "mixes gray",
    ),
    "gray model on RGB images": (
        lambda t, g, r, m: ["--model", m, "--data", str(r)],
        "takes gray images",
    ),
    "negative sigma": (
        lambda t, g, r, m: ["--model", m, "--data", str(g), "--sigmas", "10,-5"],
        ">= 0",
    ),
    "unparsable sigma": (
        lambda t, g, r, m: ["--model", m, "--data", str(g), "--sigmas", "10,abc"],
        "cannot read noise levels",
    ),
    "infinite sigma": (
        lambda t, g, r, m: ["--model", m, "--data", str(g), "--sigmas", "inf"],
        "finite",
    ),
    "unknown model": (
        lambda t, g, r, m: ["--model", "no-such-model", "--data", str(g)],
        "unknown model",
    ),
    "unknown baseline suffix": (
        lambda t, g, r, m: ["--model", "bm3d:guess", "--data", str(g)],
        "unknown noise-level source",  # and names the variants
    ),
    "model given twice": (
        lambda t, g, r, m: ["--model", m, "--model", m, "--data", str(g)],
        "given twice",
    ),
    "unknown noise kind": (
        lambda t, g, r, m: ["--model", m, "--data", str(g), "--noise", "poisson"],
        "unknown noise kind",
    ),
    "negative blur": (
        lambda t, g, r, m: ["--model", m, "--data", str(g), "--blur", "-1"],
        "blur width",
    ),
    "unparsable blur": (
        lambda t, g, r, m: ["--model", m, "--data", str(g), "--blur", "wide"],
        "blur width",
    ),
    "existing output": (
        lambda t, g, r, m: ["--model", m, "--data", str(g), "--json", str(existing(t))],
        "already exists",
    ),
    "output folder missing": (
        lambda t, g, r, m: ["--model", m, "--data", str(g), "--csv", str(t / "no" / "r.csv")],
        "output folder does not exist",
    ),
    "same file twice": (
        lambda t, g, r, m: [
            *("--model", m, "--data", str(g)),
            *("--json", str(t / "x"), "--csv", str(t / "x")),
        ],
        "given to both",
    ),
    "unknown figure format": (
        lambda t, g, r, m: ["--model", m, "--data", str(g), "--plot", str(t / "f.txt")],
        "figure format",
    ),
    "corrupt checkpoint": (
        lambda t, g, r, m: ["--model", str(junk_checkpoint(t)), "--data", str(g)],
        "junk.pt: ",
    ),
}


def existing(tmp_path: Path) -> Path:
    path = tmp_path / "exists.json"
    path.write_text("keep me")
    return path


def junk_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint at all")
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(
    case, tmp_path, gray_dir, rgb_dir, tiny_model_path, no_sweep, capsys
):
    make_args, message = BAD_INPUTS[case]
    args = make_args(tmp_path, gray_dir, rgb_dir, str(tiny_model_path))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert run_cli(*args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("filterscope: error:") and message in lines[0]
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    if case == "existing output":
        assert (tmp_path / "exists.json").read_text() == "keep me"


# ----------------------------------------------------------------------------- published


@pytest.mark.skipif(
    not PRETRAINED.is_dir(),
    reason=f"published checkpoints not found under {SHARED} (set FILTERSCOPE_SHARED)",
)
def test_published_checkpoint_path_records_its_training_range(tmp_path, gray_dir):
    model = str(PRETRAINED / "dncnn" / "bias_free" / "0-10.pt")
    out = tmp_path / "p.json"
    assert (
        run_cli("--model", model, "--data", str(gray_dir), "--sigmas", "50", "--json", str(out))
        == 0
    )
    result = json.loads(out.read_text())
    info = result["models"][model]
    assert info["arch"] == "dncnn" and info["bias"] is False
    assert info["training_sigma_range_255"] == [0.0, 10.0]
    assert result["results"][0]["model"] == model
    assert result["results"][0]["psnr"] > result["results"][0]["psnr_in"]


# ----------------------------------------------------------------------------- figures


def fake_result(noise: str = "gaussian") -> dict:
    """A result of three published-style networks and a baseline, on σ = 10..100."""
    sigmas = [10.0 * k for k in range(1, 11)]
    results = []
    models = {
        "x/dncnn/bias/0-30.pt": lambda s, p: p + 8 - max(0.0, s - 30) * 0.2,
        "x/dncnn/bias_free/0-30.pt": lambda s, p: p + 8,
        "x/unet/bias_free/0-55.pt": lambda s, p: p + 7.5,
        "bm3d": lambda s, p: p + 7,
    }
    for name, output in models.items():
        for s in sigmas:
            p_in = 20 * np.log10(255 / s)
            results.append(
                {"model": name, "noise": noise, "sigma": s, "psnr_in": p_in,
                 "ssim_in": 1 / (1 + s / 20), "psnr": output(s, p_in),
                 "ssim": 1 / (1 + s / 60), "per_image": []}
            )  # fmt: skip
    described = {
        "x/dncnn/bias/0-30.pt": {
            "arch": "dncnn",
            "bias": True,
            "training_sigma_range_255": [0, 30],
        },
        "x/dncnn/bias_free/0-30.pt": {
            "arch": "dncnn",
            "bias": False,
            "training_sigma_range_255": [0, 30],
        },
        "x/unet/bias_free/0-55.pt": {
            "arch": "unet",
            "bias": False,
            "training_sigma_range_255": [0, 55],
        },
        "bm3d": {"kind": "classical", "training_sigma_range_255": None},
    }
    return {"protocol": {"noise": noise, "blur": 0.0}, "models": described, "results": results}


def test_training_range_to_input_psnr_band():
    from filterscope.plotting.generalization import (
        classify_model,
        input_quality_by_sigma,
        sigma_to_input,
        training_range,
    )

    result = fake_result()
    sigmas, values = input_quality_by_sigma(result)
    assert list(sigmas) == [10.0 * k for k in range(1, 11)]
    # on the table: the table's value; between: interpolated in log σ (exact for white noise)
    assert sigma_to_input(30, sigmas, values) == pytest.approx(20 * np.log10(255 / 30))
    assert sigma_to_input(55, sigmas, values) == pytest.approx(20 * np.log10(255 / 55))
    # outside: -20 dB per decade; σ = 0 is no noise at all
    assert sigma_to_input(5, sigmas, values) == pytest.approx(20 * np.log10(255 / 5))
    assert sigma_to_input(0, sigmas, values) == np.inf
    assert training_range(result, "x/dncnn/bias/0-30.pt") == (0.0, 30.0)
    assert training_range(result, "bm3d") is None
    # from the metadata, never from a name
    assert training_range(result, "BF-DnCNN [0,55]") is None
    assert training_range(result, "BF-DnCNN [0,55]", {"BF-DnCNN [0,55]": (0, 55)}) == (0, 55)
    del result["models"]["x/dncnn/bias/0-30.pt"]
    assert training_range(result, "x/dncnn/bias/0-30.pt") is None
    assert classify_model(result, "x/dncnn/bias/0-30.pt") is None
    result = fake_result()
    assert classify_model(result, "x/dncnn/bias_free/0-30.pt") == ("dncnn", False, (0.0, 30.0))
    assert classify_model(result, "x/dncnn/bias/0-30.pt") == ("dncnn", True, (0.0, 30.0))
    assert classify_model(result, "bm3d") is None


def test_generalization_figures_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from filterscope.plotting.generalization import plot_generalization, plot_generalization_grid

    result = fake_result("uniform")
    json_path = tmp_path / "r.json"
    json_path.write_text(json.dumps(result))
    paths = [
        plot_generalization(json_path, tmp_path / "single.png"),
        plot_generalization_grid(result, tmp_path / "grid_psnr.png"),
        plot_generalization_grid(
            result, tmp_path / "grid_ssim.png", metric="ssim", archs=["dncnn"]
        ),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="no model"):
        only_baseline = {
            **result,
            "results": [r for r in result["results"] if r["model"] == "bm3d"],
        }
        plot_generalization_grid(only_baseline, tmp_path / "none.png")


def test_sigmas_above_255_are_refused_on_the_command_line(gray_dir, capsys):
    code = main(["evaluate", "--model", "nlm", "--data", str(gray_dir), "--sigmas", "25,300"])
    err = capsys.readouterr().err
    assert code == 2 and "0-255 scale" in err and "300" in err


def test_images_smaller_than_the_ssim_window_are_refused_in_one_line(tmp_path, capsys):
    folder = tmp_path / "tiny"
    folder.mkdir()
    Image.fromarray(np.full((5, 6), 128, dtype=np.uint8)).save(folder / "t.png")
    json_out = tmp_path / "r.json"
    assert run_cli("--model", "nlm", "--data", str(folder), "--json", str(json_out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "at least 7x7 for SSIM, got 5x6" in err
    assert not json_out.exists()
