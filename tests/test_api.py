"""``fs.denoise``: a NumPy image in, the same shape out, like scikit-image's denoisers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import filterscope as fs
from filterscope.errors import ChannelError, InputError, UnknownModelError
from filterscope.inference import denoise_tensor, prepare_model
from filterscope.machine import choose_precision
from filterscope.models import zoo

HEIGHT, WIDTH = 37, 31
SIGMA = 25 / 255


def clean_image(channels: int | None = None) -> np.ndarray:
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    gray = 0.5 + 0.3 * np.sin(cols / 5.0) * np.cos(rows / 7.0)
    if channels is None:
        return gray
    return np.stack([gray * (0.8 + 0.1 * c) for c in range(channels)], axis=-1)


def noisy(clean: np.ndarray, seed: int = 0) -> np.ndarray:
    return clean + SIGMA * np.random.default_rng(seed).standard_normal(clean.shape)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


@pytest.mark.parametrize("channels", [None, 3], ids=["gray", "rgb"])
def test_default_model_denoises_and_keeps_the_shape(channels):
    x = clean_image(channels)
    y = noisy(x)
    x_hat = fs.denoise(y)
    assert x_hat.shape == y.shape and x_hat.dtype == np.float64
    assert rmse(x_hat, x) < 0.6 * rmse(y, x)


def test_default_is_the_shipped_model_for_the_channel_count():
    y = noisy(clean_image(3))
    expected = fs.load_model(zoo.default_model_name(3))
    tensor = torch.from_numpy(y.astype(np.float32)).permute(2, 0, 1)[None]
    reference = denoise_tensor(expected, tensor)[0].permute(1, 2, 0).numpy()
    assert np.allclose(fs.denoise(y, precision="float32"), reference, atol=1e-5)
    # "auto" is the command line's path: bfloat16 where native, so only close
    assert rmse(fs.denoise(y), reference) < 2e-3


def test_auto_precision_runs_as_the_command_line_does():
    y = noisy(clean_image(3))
    model = fs.load_model(zoo.default_model_name(3))
    tensor = torch.from_numpy(y.astype(np.float32)).permute(2, 0, 1)[None]
    prepared = prepare_model(model, precision=choose_precision("denoise", "cpu"))
    reference = denoise_tensor(prepared, tensor)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(fs.denoise(y, model=model), reference)
    bf16 = fs.denoise(y, model=model, precision="bfloat16")
    assert 0 < rmse(bf16, fs.denoise(y, model=model, precision="float32")) < 2e-3


def test_an_unknown_precision_is_refused():
    with pytest.raises(InputError, match="precision must be one of"):
        fs.denoise(noisy(clean_image()), precision="float16")


def test_integer_images_are_scaled_by_their_maximum():
    y = np.clip(noisy(clean_image()), 0, 1)
    as_uint8 = np.round(y * 255).astype(np.uint8)
    as_uint16 = np.round(y * 65535).astype(np.uint16)
    from_float = fs.denoise(as_uint8.astype(np.float64) / 255)
    assert np.allclose(fs.denoise(as_uint8), from_float, atol=1e-6)
    assert rmse(fs.denoise(as_uint16), fs.denoise(y)) < 1e-3
    assert fs.denoise(y.astype(np.float32)).dtype == np.float32


def test_channel_axis_and_a_named_model_with_sigma():
    y = noisy(clean_image(3))
    channels_first = np.moveaxis(y, -1, 0)
    out = fs.denoise(channels_first, model="nlm", sigma=SIGMA, channel_axis=0)
    assert out.shape == channels_first.shape
    assert np.allclose(np.moveaxis(out, 0, -1), fs.denoise(y, model="nlm", sigma=SIGMA))
    module = fs.load_model("bf-dncnn-gray")
    by_name = fs.denoise(y[..., 0], model="bf-dncnn-gray")
    assert np.array_equal(fs.denoise(y[..., 0], model=module), by_name)


def test_any_size_works_through_tiles():
    # DnCNN is shift-invariant, so tiles reproduce the whole image to round-off (the
    # default DRUNet downsamples, and tiles agree with the whole image only closely).
    y = noisy(np.tile(clean_image(), (3, 4)))  # 111 x 124, tiles of 40
    whole = fs.denoise(y, model="bf-dncnn-gray", tile=512)
    tiled = fs.denoise(y, model="bf-dncnn-gray", tile=40)
    assert whole.shape == y.shape
    assert np.abs(whole - tiled).max() < 1e-4  # the halo is the receptive radius


@pytest.mark.parametrize(
    "image, options, error, message",
    [
        (np.zeros((4, 5, 6, 7)), {}, InputError, "gray or .* colour"),
        (np.zeros((9, 9, 2)), {}, InputError, "1 or 3 channels"),
        (np.zeros((9, 9), dtype=bool), {}, InputError, "float or integer"),
        (np.zeros((9, 9)), {"sigma": -1.0}, InputError, "sigma"),
        (np.zeros((9, 9)), {"model": "bm3d-typo"}, UnknownModelError, "did you mean"),
        (np.zeros((9, 9)), {"model": "nlm"}, InputError, "needs the noise level"),
    ],
)
def test_bad_input(image, options, error, message):
    with pytest.raises(error, match=message):
        fs.denoise(image, **options)


def test_a_colour_model_refuses_a_gray_image():
    with pytest.raises(ChannelError):
        fs.denoise(clean_image(), model=zoo.DEFAULT_MODELS[3])


def test_shipped_models_are_read_once_per_weights_file(monkeypatch, tmp_path):
    import os

    from filterscope import api, hub

    api._load_once.cache_clear()
    loads = []
    read = hub.load_model
    monkeypatch.setattr(hub, "load_model", lambda name: loads.append(name) or read(name))
    y = noisy(clean_image(3))
    name = zoo.default_model_name(3)
    first = fs.denoise(y, noise_type="gaussian")
    assert np.array_equal(fs.denoise(y, noise_type="gaussian"), first)
    assert loads == [name]
    # a weights file written since (another mtime) is read again
    weights = tmp_path / f"{name}.safetensors"
    weights.write_bytes(zoo.shipped_weights(name).read_bytes())
    os.utime(weights, ns=(1, 1))
    monkeypatch.setattr(zoo, "shipped_weights", lambda _: weights)
    fs.denoise(y, noise_type="gaussian")
    assert loads == [name, name]
