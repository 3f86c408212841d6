"""The σ sweep: protocol, shared noise, JSON shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import filterscope
from filterscope.errors import InputError
from filterscope.evaluation import evaluate, load_image_folder, noise_seed, results_table
from filterscope.metrics import psnr
from filterscope.noise import add_noise

SIGMAS = [10 / 255, 50 / 255]  # image scale; results say 10 and 50 (0-255)


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    smooth = torch.linspace(0.1, 0.9, 24).view(1, 1, 1, 24).expand(1, 1, 20, 24).clone()
    return [("smooth", smooth), ("random", torch.rand(1, 1, 20, 24, generator=g))]


class Recorder(nn.Module):
    """Identity denoiser that remembers every input it saw."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, y, sigma=None):
        self.seen.append(y.clone())
        return y


def test_identity_denoiser_scores_its_input(images):
    result = evaluate({"identity": lambda y, sigma: y}, images, SIGMAS, progress=False)
    assert [r["sigma"] for r in result["results"]] == [10.0, 50.0]
    for entry in result["results"]:
        assert entry["psnr"] == pytest.approx(entry["psnr_in"], abs=1e-12)
        assert entry["ssim"] == pytest.approx(entry["ssim_in"], abs=1e-12)
        assert [p["image"] for p in entry["per_image"]] == ["smooth", "random"]
        # the summary is the mean of the per-image values
        assert entry["psnr"] == pytest.approx(np.mean([p["psnr"] for p in entry["per_image"]]))
    low, high = result["results"]
    assert low["psnr_in"] > high["psnr_in"]


def test_every_model_sees_the_same_unclipped_noise(images):
    first, second = Recorder(), Recorder()
    evaluate({"a": first, "b": second}, images, SIGMAS, progress=False, seed=3)
    assert len(first.seen) == len(second.seen) == len(images) * len(SIGMAS)
    for y_a, y_b in zip(first.seen, second.seen, strict=True):
        assert torch.equal(y_a, y_b)
    # The first input is image 0 at σ = 10 with the documented seed, not clipped.
    expected = add_noise(images[0][1], 10 / 255, generator=noise_seed(3, 0, 10 / 255))
    assert torch.equal(first.seen[0], expected)
    assert any(float(y.max()) > 1 or float(y.min()) < 0 for y in first.seen)


def test_noise_depends_on_seed_and_not_on_the_rest_of_the_sweep(images):
    full, alone, other_seed = Recorder(), Recorder(), Recorder()
    evaluate({"m": full}, images, SIGMAS, progress=False)
    evaluate({"m": alone}, images, [50 / 255], progress=False)
    evaluate({"m": other_seed}, images, [50 / 255], progress=False, seed=1)
    assert torch.equal(full.seen[2], alone.seen[0])  # image 0 at σ = 50
    assert not torch.equal(alone.seen[0], other_seed.seen[0])


def test_input_quality_is_measured_on_the_clipped_noisy_image(images):
    sigma = 100 / 255
    result = evaluate({"id": lambda y, sigma: y}, images, [sigma], progress=False)
    x = images[1][1]
    y = add_noise(x, sigma, generator=noise_seed(0, 1, sigma))
    per_image = result["results"][0]["per_image"][1]
    assert per_image["psnr_in"] == pytest.approx(float(psnr(y.clamp(0, 1), x)[0]), abs=1e-12)
    assert per_image["psnr_in"] > float(psnr(y, x, clip=False)[0]) + 0.5


def test_tiny_model_json_shape_and_serialisable(images):
    torch.manual_seed(0)
    model = filterscope.create_model("dncnn", num_layers=3, hidden=4)
    result = evaluate(
        {"tiny": model, "identity": lambda y, sigma: y},
        images,
        SIGMAS,
        progress=False,
        batch_size=2,
    )
    text = json.dumps(result)
    assert json.loads(text) == result
    assert not model.training
    assert set(result) == {"protocol", "results"}
    assert result["protocol"]["sigmas_255"] == [10.0, 50.0]
    assert result["protocol"]["images"] == ["smooth", "random"]
    assert result["protocol"]["noisy_input_clipped"] is False
    assert [(r["model"], r["sigma"]) for r in result["results"]] == [
        ("tiny", 10.0),
        ("tiny", 50.0),
        ("identity", 10.0),
        ("identity", 50.0),
    ]
    for entry in result["results"]:
        assert {
            "model",
            "noise",
            "sigma",
            "psnr_in",
            "ssim_in",
            "psnr",
            "ssim",
            "per_image",
        } <= set(entry)
        assert entry["noise"] == "gaussian"
        assert all(np.isfinite([entry["psnr"], entry["ssim"], entry["psnr_in"]]))
    assert all("per_image" not in row for row in results_table(result))


def test_batching_does_not_change_the_results(images):
    torch.manual_seed(0)
    model = filterscope.create_model("dncnn", num_layers=3, hidden=4)
    one = evaluate({"m": model}, images, [25 / 255], progress=False, batch_size=1)
    two = evaluate({"m": model}, images, [25 / 255], progress=False, batch_size=2)
    assert one["results"][0]["psnr"] == pytest.approx(two["results"][0]["psnr"], abs=1e-5)


def test_every_denoiser_gets_sigma_on_the_image_scale(images):
    class NonBlind(nn.Module):
        def __init__(self):
            super().__init__()
            self.sigmas = []

        def forward(self, y, sigma=None):
            self.sigmas.append(sigma)
            return y

    model = NonBlind()
    evaluate({"nb": model}, images[:1], [25 / 255], progress=False)
    assert model.sigmas == [pytest.approx(25 / 255)]


def test_uniform_noise_and_callback(images):
    seen = []
    result = evaluate(
        {"id": lambda y, sigma: y},
        images,
        [30 / 255],
        noise="uniform",
        progress=False,
        on_result=seen.append,
    )
    assert result["results"][0]["noise"] == "uniform"
    assert seen == result["results"]


def test_folder_input(tmp_path, images):
    for name, image in images:
        filterscope.write_image(tmp_path / f"{name}.png", image[0].permute(1, 2, 0).numpy())
    loaded = load_image_folder(tmp_path)
    assert [name for name, _ in loaded] == ["random.png", "smooth.png"]
    result = evaluate({"id": lambda y, sigma: y}, tmp_path, [25 / 255], progress=False)
    assert result["protocol"]["images"] == ["random.png", "smooth.png"]


def test_progress_bar_goes_to_stderr(images, capsys):
    evaluate({"id": lambda y, sigma: y}, images, [25 / 255], progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "evaluate" in captured.err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise": "poisson"}, "unknown noise"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_raise(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate({"id": lambda y, sigma: y}, images, [25 / 255], progress=False, **kwargs)


def test_bad_inputs_raise(images):
    with pytest.raises(ValueError, match="no denoisers"):
        evaluate({}, images, [25 / 255], progress=False)
    with pytest.raises(ValueError, match="sigma"):
        evaluate({"id": lambda y, sigma: y}, images, [], progress=False)
    with pytest.raises(ValueError, match=r"\(1, C, H, W\)"):
        evaluate(
            {"id": lambda y, sigma: y}, [("x", torch.rand(1, 20, 24))], [25 / 255], progress=False
        )


def test_noise_seed_is_stable_and_distinct():
    # The documented derivation, fixed since the first sweeps: SeedSequence of
    # (seed, image index, round(1000 * sigma on the 0-255 scale)).
    state = np.random.SeedSequence([0, 0, 25000]).generate_state(1, dtype=np.uint64)[0]
    assert noise_seed(0, 0, 25 / 255) == int(state) & ((1 << 63) - 1)
    seeds = {
        noise_seed(s, i, sigma / 255) for s in (0, 1) for i in range(5) for sigma in (10, 20, 25)
    }
    assert len(seeds) == 2 * 5 * 3
    assert 0 <= noise_seed(0, 0, 25 / 255) < 2**63


def test_sigmas_on_the_0_255_scale_are_refused(images):
    with pytest.raises(InputError, match="image scale"):
        evaluate({"id": lambda y, sigma: y}, images, [25], progress=False)
    result = evaluate({"id": lambda y, sigma: y}, images, [25 / 255], progress=False)
    assert result["results"][0]["sigma"] == 25.0  # results and JSON on the 0-255 scale
    assert result["protocol"]["sigmas_255"] == [25.0]


def test_precision_float32_uses_the_fast_copy(images):
    pytest.importorskip("filterscope.models.fast")
    torch.manual_seed(0)
    model = filterscope.create_model("dncnn", num_layers=3, hidden=4)
    plain = evaluate({"m": model}, images, [25 / 255], progress=False)
    fast = evaluate({"m": model}, images, [25 / 255], progress=False, precision="float32")
    assert fast["protocol"]["precision"] == "float32"
    assert fast["results"][0]["psnr"] == pytest.approx(plain["results"][0]["psnr"], abs=1e-4)
