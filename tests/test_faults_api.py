"""Faults through the Python API (issue 34, part 2): every bad array, noise level, axis,
model or option given to ``fs.denoise``, ``fs.load_model`` and ``denoise_tensor`` raises a
:class:`~filterscope.errors.FilterscopeError` subclass with a one-line message, before
any work; nothing returns a silent wrong answer (an all-NaN array, values from -2.8 to
3.9 for a σ on the wrong scale). Also the interface's dtype promise: a float64 batch
gives a float64 estimate from every registered differentiable model.

Decisions documented here and in :func:`filterscope.denoise`: integer arrays must be
uint8 or uint16 (int64, int32, int16, int8 and uint32/64 are refused with a hint instead
of being scaled by their type's maximum); each side needs 2 pixels, as for image files
(1xN is refused by Python and the command line alike); sigma above 1 on the image scale
is refused with "did you mean S/255?".
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import filterscope as fs
from filterscope import hub
from filterscope.errors import FilterscopeError, InputError
from filterscope.inference import denoise_tensor

RNG = np.random.default_rng(0)
GRAY = RNG.random((19, 23)).astype(np.float32)
RGB = RNG.random((19, 23, 3)).astype(np.float32)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message, message
    assert "Traceback" not in message
    return message


def with_bad_pixels(value: float, fraction: float = 0.01) -> np.ndarray:
    image = RNG.random((32, 32))
    flat = image.reshape(-1)
    flat[RNG.choice(flat.size, max(1, int(fraction * flat.size)), replace=False)] = value
    return image


# ----------------------------------------------------------------- arrays


BAD_ARRAYS = {
    "1% NaN": (lambda: with_bad_pixels(np.nan), "NaN or Inf"),
    "1% +Inf": (lambda: with_bad_pixels(np.inf), "NaN or Inf"),
    "1% -Inf": (lambda: with_bad_pixels(-np.inf), "NaN or Inf"),
    "all NaN": (lambda: np.full((32, 32), np.nan), "1024 pixel(s)"),
    "NaN in one RGB channel": (lambda: np.where(np.arange(3) == 2, np.nan, RGB), "(x, y)"),
    "float32 NaN": (lambda: with_bad_pixels(np.nan).astype(np.float32), "NaN"),
    "float16 Inf": (lambda: with_bad_pixels(np.inf).astype(np.float16), "Inf"),
    "0x0": (lambda: np.zeros((0, 0)), "0x0 pixels"),
    "0x32": (lambda: np.zeros((0, 32)), "32x0 pixels"),
    "32x0": (lambda: np.zeros((32, 0)), "0x32 pixels"),
    "0x0x3": (lambda: np.zeros((0, 0, 3)), "each side"),
    "1x1": (lambda: np.zeros((1, 1)), "each side needs at least 2"),
    "1xN": (lambda: np.zeros((1, 40)), "40x1 pixels"),
    "Nx1": (lambda: np.zeros((40, 1)), "1x40 pixels"),
    "1xN RGB": (lambda: np.zeros((1, 40, 3)), "each side"),
    "1-D": (lambda: np.zeros(40), "shape"),
    "scalar": (lambda: np.float64(0.5), "shape"),
    "4-D": (lambda: np.zeros((2, 19, 23, 3)), "shape"),
    "2 channels": (lambda: np.zeros((19, 23, 2)), "1 or 3 channels"),
    "4 channels": (lambda: np.zeros((19, 23, 4)), "1 or 3 channels"),
    "int64": (lambda: (GRAY * 255).astype(np.int64), "uint8"),
    "int32": (lambda: (GRAY * 255).astype(np.int32), "uint8"),
    "int16": (lambda: (GRAY * 255).astype(np.int16), "uint8"),
    "int8": (lambda: (GRAY * 127).astype(np.int8), "uint8"),
    "uint32": (lambda: (GRAY * 255).astype(np.uint32), "uint8"),
    "uint64": (lambda: (GRAY * 255).astype(np.uint64), "uint8"),
    "bool": (lambda: GRAY > 0.5, "dtype bool"),
    "complex": (lambda: GRAY.astype(np.complex64), "dtype complex64"),
    "object": (lambda: np.array([[object()] * 3] * 3), "dtype object"),
    "strings": (lambda: np.array([["a"] * 3] * 3), "dtype"),
}


@pytest.mark.parametrize("name", sorted(BAD_ARRAYS))
def test_a_bad_array_is_an_input_error(name):
    make, fragment = BAD_ARRAYS[name]
    with pytest.raises(InputError) as exc:
        fs.denoise(make(), model="nlm", sigma=0.1)
    assert fragment in one_line(exc)


def test_nan_pixels_are_counted_and_the_first_is_named_as_x_y():
    image = RNG.random((20, 30))
    image[7, 4] = np.nan  # row 7, column 4: (x, y) = (4, 7)
    image[9, 2] = np.inf
    with pytest.raises(InputError, match=r"2 pixel\(s\) .* \(x, y\) = \(4, 7\)"):
        fs.denoise(image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_unsigned_8_and_16_bit_arrays_are_scaled_by_their_maximum(dtype):
    """The integer types that are taken: the result is that of the float image."""
    top = np.iinfo(dtype).max
    image = np.round(GRAY * top).astype(dtype)
    model = fs.load_model("nlm")
    out = fs.denoise(image, model=model, sigma=0.1)
    expected = fs.denoise(image.astype(np.float64) / top, model=model, sigma=0.1)
    assert out.dtype == np.float64 and np.allclose(out, expected, atol=1e-6)


def test_a_list_is_an_array():
    out = fs.denoise(GRAY.tolist(), model="nlm", sigma=0.1)
    assert out.shape == GRAY.shape


# ----------------------------------------------------------------- sigma


BAD_SIGMAS = {
    "string": ("0.1", "one number"),
    "list": ([0.1], "one number"),
    "tuple": ((0.1,), "one number"),
    "complex": (0.1j, "one number"),
    "2-element array": (np.array([0.1, 0.2]), "one number"),
    "0-d array": (np.array(0.1), "one number"),
    "tensor": (torch.tensor([0.1, 0.2]), "one number"),
    "True": (True, "one number"),
    "False": (False, "one number"),
    "dict": ({"sigma": 0.1}, "one number"),
    "NaN": (float("nan"), "finite"),
    "+Inf": (float("inf"), "finite"),
    "-Inf": (float("-inf"), "finite"),
    "negative": (-0.1, ">= 0"),
    "tiny negative": (-1e-12, ">= 0"),
    "25 (0-255 scale)": (25, "did you mean 25/255"),
    "255": (255.0, "did you mean 255/255"),
    "1.5": (1.5, "image scale"),
    "1e6": (1e6, "image scale"),
    "numpy 25": (np.float64(25.0), "did you mean"),
}


@pytest.mark.parametrize("model", ["default", "nlm", "ntk", "bm3d"])
@pytest.mark.parametrize("name", sorted(BAD_SIGMAS))
def test_a_bad_sigma_is_an_input_error_before_any_work(name, model):
    sigma, fragment = BAD_SIGMAS[name]
    with pytest.raises(InputError) as exc:
        fs.denoise(GRAY, model=model, sigma=sigma)
    assert fragment in one_line(exc)


@pytest.mark.parametrize("sigma", [0, 0.0, 1, 1.0, np.float32(0.1), np.int64(0), 25 / 255])
def test_sigmas_on_the_image_scale_are_taken(sigma):
    out = fs.denoise(GRAY, model="nlm", sigma=sigma)
    assert out.shape == GRAY.shape and np.isfinite(out).all()


@pytest.mark.parametrize("sigma", [25, -1, "x", float("nan")])
def test_denoise_tensor_checks_sigma_the_same_way(sigma):
    with pytest.raises(InputError):
        denoise_tensor(fs.load_model("nlm"), torch.from_numpy(GRAY)[None, None], sigma=sigma)


# ----------------------------------------------------------------- channel_axis


@pytest.mark.parametrize(
    "axis, fragment",
    [(5, "-3 to 2"), (3, "-3 to 2"), (-4, "-3 to 2"), (100, "-3 to 2"), ("x", "integer"),
     (1.0, "integer"), (True, "integer"), ([0], "integer"), (0.5, "integer")],
)  # fmt: skip
def test_a_bad_channel_axis_is_an_input_error(axis, fragment):
    with pytest.raises(InputError) as exc:
        fs.denoise(np.moveaxis(RGB, -1, 0), channel_axis=axis)
    assert fragment in one_line(exc)


@pytest.mark.parametrize("axis", [0, -3, np.int64(0)])
def test_channels_first_with_channel_axis(axis):
    first = np.moveaxis(RGB, -1, 0)
    out = fs.denoise(first, model="nlm", sigma=0.1, channel_axis=axis)
    assert out.shape == first.shape


def test_channel_axis_on_a_2d_array():
    with pytest.raises(InputError, match="3 dimensions"):
        fs.denoise(GRAY, channel_axis=0)


# ----------------------------------------------------------------- models


BAD_MODELS = {
    "nn.Linear(3, 3)": (lambda: nn.Linear(3, 3), "Linear"),
    "nn.Linear(23, 5)": (lambda: nn.Linear(23, 5), "keeps the shape"),
    "nn.Conv2d(1, 2)": (lambda: nn.Conv2d(1, 2, 3, padding=1), "keeps the shape"),
    "nn.Conv2d(3, 3) on gray": (lambda: nn.Conv2d(3, 3, 3, padding=1), "Conv2d"),
    "nn.Flatten": (lambda: nn.Flatten(), "keeps the shape"),
    "nn.Embedding": (lambda: nn.Embedding(4, 4), "Embedding"),
    "unknown name": (lambda: "no-such-model", "unknown model"),
    "empty name": (lambda: "", "empty model name"),
    "number": (lambda: 42, "unknown model"),
    "missing checkpoint": (lambda: "/nonexistent/folder/m.pt", "no such checkpoint"),
    "unknown variant": (lambda: "bm3d:sometimes", "unknown variant"),
    "colour model on gray": (lambda: "bf-drunet-color", "RGB images"),
}


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_a_bad_model_is_a_filterscope_error(name):
    make, fragment = BAD_MODELS[name]
    with pytest.raises(FilterscopeError) as exc:
        fs.denoise(GRAY, model=make())
    assert fragment in one_line(exc)


BAD_OPTIONS = {
    "in_channels=2": ({"in_channels": 2}, "in_channels"),
    "in_channels='x'": ({"in_channels": "x"}, "in_channels"),
    "in_channels=0": ({"in_channels": 0}, "in_channels"),
    "in_channels=None": ({"in_channels": None}, "in_channels"),
    "in_channels=1.5": ({"in_channels": 1.5}, "in_channels"),
    "hidden='x'": ({"hidden": "x"}, "hidden"),
    "hidden=-1": ({"hidden": -1}, "hidden"),
    "hidden=2.5": ({"hidden": 2.5}, "hidden"),
    "num_layers=0": ({"num_layers": 0}, "num_layers"),
    "num_layers=True": ({"num_layers": True}, "num_layers"),
    "an unknown option": ({"colour": 1}, "colour"),
}


@pytest.mark.parametrize("arch", ["dncnn", "rcnn", "unet", "sdensenet", "drunet"])
@pytest.mark.parametrize("name", sorted(BAD_OPTIONS))
def test_bad_architecture_options_name_the_parameter(arch, name):
    options, fragment = BAD_OPTIONS[name]
    if fragment not in ("in_channels", "colour"):
        import inspect

        from filterscope.models.registry import architecture_class

        if fragment not in inspect.signature(architecture_class(arch)).parameters:
            options, fragment = {"no_such_option": 1}, "no_such_option"
    with pytest.raises(FilterscopeError) as exc:
        fs.load_model(arch, **options)
    assert fragment in one_line(exc)


# ----------------------------------------------------------------- the dtype promise


def _differentiable_models():
    for name in hub.list_models():
        info = hub.model_info(name)
        if info.kind in ("classical", "nonlocal", "dip"):
            continue  # NumPy or image-built filters: no torch weights to match
        yield name


@pytest.mark.parametrize("name", sorted(_differentiable_models()))
def test_a_float64_batch_gives_a_float64_estimate(name):
    """``model(x.double(), sigma)`` works for every registered network and keeps the
    dtype, with autograd through the casts (Jacobians are taken in float64)."""
    info = hub.model_info(name)
    options = {}
    if info.channels_option is not None:
        options[info.channels_option] = 1
    model = hub.load_model(name, **options)
    channels = model.in_channels or 1
    y = torch.rand(1, channels, 24, 24, dtype=torch.float64, requires_grad=True)
    out = model(y, 0.1)
    assert out.dtype == torch.float64 and out.shape == y.shape
    out.sum().backward()
    assert y.grad is not None and y.grad.dtype == torch.float64
    with torch.no_grad():
        same = model(y.detach().float(), 0.1)
    assert torch.allclose(out.detach().float(), same, atol=1e-4)


def test_the_fast_path_keeps_the_dtype_too():
    from filterscope.models.fast import optimize_for_inference

    model = optimize_for_inference(fs.load_model("dncnn", num_layers=3, hidden=4))
    y = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    assert model(y).dtype == torch.float64


# ----------------------------------------------------------------- DIP


def test_dip_runs_under_inference_mode():
    """Tiled inference runs under ``torch.inference_mode``; DIP fits with gradients on
    inside it ("element 0 of tensors does not require grad" before)."""
    model = fs.load_model("dip", iters=2, width=4)
    out = fs.denoise(GRAY[:12, :12], model=model)
    assert out.shape == (12, 12) and np.isfinite(out).all()
    with torch.inference_mode():
        assert model(torch.rand(1, 1, 12, 12)).shape == (1, 1, 12, 12)


def test_dip_in_an_evaluation_keeps_the_measured_psnr():
    """Evaluation runs DIP under no_grad, and DIP's own report (its "psnr" is None: no
    clean image) no longer replaces the measured PSNR (a TypeError in the mean)."""
    from filterscope.evaluation.sweep import evaluate

    model = fs.load_model("dip", iters=2, width=4)
    clean = torch.from_numpy(GRAY[:12, :12])[None, None]
    result = evaluate({"dip": model}, [("a", clean)], [25 / 255], progress=False)
    entry = result["results"][0]
    assert np.isfinite(entry["psnr"]) and entry["per_image"][0]["psnr"] == entry["psnr"]
