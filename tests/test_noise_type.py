"""Choosing between the shipped default and the real-camera-noise model by the image
(``noise_type``): scale-free evidence, the choice on both kinds of noise, bad values."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import filterscope as fs
from filterscope.camera_noise import NoiseOptions, correlated_noise
from filterscope.cli import main as cli_main
from filterscope.errors import InputError
from filterscope.hub import load_model
from filterscope.inference import (
    REAL_NOISE_RATIO,
    choose_shipped_model,
    real_noise_evidence,
    real_noise_threshold,
)
from filterscope.io import write_image
from filterscope.models import zoo

REAL = zoo.real_noise_model_name(3)
GRAY_REAL = zoo.real_noise_model_name(1)
pytestmark = pytest.mark.skipif(REAL is None, reason="no real-noise model shipped")


def _scene(height: int = 67, width: int = 81) -> torch.Tensor:
    """A smooth colour scene with a few edges, (1, 3, H, W) in [0.15, 0.85]."""
    rows = torch.linspace(0, 1, height)[:, None]
    cols = torch.linspace(0, 1, width)[None, :]
    red = 0.3 + 0.4 * rows * cols
    green = 0.5 + 0.2 * torch.sin(6 * cols) * (rows > 0.5)
    blue = 0.6 - 0.3 * rows + 0.1 * (cols > 0.3)
    return torch.stack([red, green, blue])[None].clamp(0.15, 0.85)


def _white(x: torch.Tensor, sigma: float = 20 / 255) -> torch.Tensor:
    return x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))


def _blotchy(x: torch.Tensor, sigma: float = 6 / 255) -> torch.Tensor:
    """Noise a camera's processing leaves: correlated over a few pixels, shared by the
    channels (what the finest wavelet band misses)."""
    options = NoiseOptions(correlation_width_range=(1.5, 1.5), channel_mixing_range=(0.5, 0.5))
    noisy, _ = correlated_noise(
        x, sigma, options=options, generator=torch.Generator().manual_seed(2)
    )
    return noisy


@pytest.fixture(scope="module")
def real_model():
    return load_model(REAL)


def test_evidence_does_not_change_with_the_image_scale(real_model):
    y = _blotchy(_scene())
    evidence = real_noise_evidence(real_model, y)
    for scale in (0.5, 2.0):
        # Homogeneous estimators: the ratio is scale-free (float32 round-off only).
        assert real_noise_evidence(real_model, scale * y) == pytest.approx(evidence, rel=1e-4)


@pytest.mark.parametrize("channels", [3, 1])
def test_white_noise_takes_the_default_and_camera_like_noise_the_real_model(channels):
    real = zoo.real_noise_model_name(channels)
    if real is None:
        pytest.skip(f"no real-noise model ships for {channels}-channel images")
    real_model = load_model(real)
    load = {real: real_model}.get
    x = _scene()[:, :channels]
    name, choice = choose_shipped_model(_white(x), sigma=None, load=load)
    assert name == zoo.default_model_name(channels) and choice["noise_type"] == "gaussian"
    assert choice["real_noise_evidence"] < real_noise_threshold(real_model)
    name, choice = choose_shipped_model(_blotchy(x), sigma=None, load=load)
    assert name == real and choice["noise_type"] == "real"
    assert choice["real_noise_evidence"] >= real_noise_threshold(real_model)


def _with_threshold(model, threshold):
    carded = copy.copy(model)  # the fixture's card stays as it is
    carded.card = {**model.card, "noise_type_threshold": threshold}
    return carded


def test_a_cards_threshold_moves_the_choice(real_model):
    y = _blotchy(_scene())
    evidence = real_noise_evidence(real_model, y)
    assert real_noise_threshold(real_model) == real_model.card.get(
        "noise_type_threshold", REAL_NOISE_RATIO
    )
    for threshold, expected in ((0.5 * evidence, REAL), (2.0 * evidence, None)):
        carded = _with_threshold(real_model, threshold)
        name, _ = choose_shipped_model(y, sigma=None, load={REAL: carded}.get)
        assert name == (expected or zoo.default_model_name(3))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "3", True])
def test_a_bad_threshold_in_a_card_is_refused(real_model, bad):
    with pytest.raises(InputError, match="noise_type_threshold"):
        real_noise_threshold(_with_threshold(real_model, bad))


def test_forced_and_given_sigma_choices_need_no_evidence():
    def no_load(name):  # must not be called: nothing to measure
        raise AssertionError(name)

    y = _blotchy(_scene())
    assert choose_shipped_model(y, sigma=None, noise_type="real", load=no_load)[0] == REAL
    default = zoo.default_model_name(3)
    assert choose_shipped_model(y, sigma=None, noise_type="gaussian", load=no_load) == (default, {})
    # A σ given by the caller means Gaussian noise of that level.
    name, choice = choose_shipped_model(y, sigma=6 / 255, load=no_load)
    assert name == default and choice == {"noise_type": "gaussian"}
    gray = y[:, :1]
    forced = choose_shipped_model(gray, sigma=None, noise_type="gaussian", load=no_load)
    assert forced == (zoo.default_model_name(1), {})
    if GRAY_REAL is None:  # nothing to choose from for gray images
        assert choose_shipped_model(gray, sigma=None, load=no_load) == (forced[0], {})
    else:
        assert choose_shipped_model(gray, sigma=None, noise_type="real", load=no_load) == (
            GRAY_REAL,
            {"noise_type": "real"},
        )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda y: fs.denoise(y, noise_type="poisson"), "noise_type must be one of"),
        (lambda y: fs.denoise(y[..., 0], noise_type="real"), "no real-noise model ships for 1"),
    ],
)
def test_bad_noise_types_are_refused_by_name(call, message, monkeypatch):
    monkeypatch.delitem(zoo.REAL_NOISE_MODELS, 1, raising=False)  # as before one shipped
    y = _white(_scene())[0].permute(1, 2, 0).numpy()
    with pytest.raises(InputError, match=message):
        call(y)


def _cli(capsys, *argv) -> tuple[int, str]:
    code = cli_main.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_array_api_and_cli_record_the_same_choice(tmp_path, capsys):
    y = _blotchy(_scene()).clamp(0, 1)
    image = y[0].permute(1, 2, 0).numpy()
    real = fs.denoise(image, model=REAL)
    assert np.array_equal(fs.denoise(image), real)  # auto took the real-noise model
    noisy = tmp_path / "noisy.tif"
    write_image(noisy, image, dtype="float32")
    code, err = _cli(
        capsys, "denoise", noisy, "-o", tmp_path / "o.tif", "--json", tmp_path / "r.json", "-q"
    )
    assert code == 0, err
    record = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert record["model"] == REAL and record["noise_type"] == "real"
    code, err = _cli(
        capsys,
        "denoise",
        noisy,
        "-o",
        tmp_path / "g.tif",
        "--noise-type",
        "gaussian",
        "--json",
        tmp_path / "g.json",
        "-q",
    )
    assert code == 0, err
    record = json.loads((tmp_path / "g.json").read_text())["files"][0]
    assert record["model"] == zoo.default_model_name(3) and "noise_type" not in record
