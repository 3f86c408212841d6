"""Classical baselines (BM3D, NLM) as denoisers, with the true or an estimated σ."""

from __future__ import annotations

import math

import pytest
import torch

from filterscope.evaluation import evaluate
from filterscope.evaluation.baselines import (
    BM3DDenoiser,
    NLMDenoiser,
    create_baseline,
    estimate_noise_sigma,
)
from filterscope.evaluation.specs import resolve_model
from filterscope.metrics import psnr
from filterscope.noise import add_noise

SIGMA = 25 / 255
HEIGHT, WIDTH = 37, 31


def smooth_image(channels: int = 1) -> torch.Tensor:
    """A smooth (1, C, 37, 31) test image in [0.2, 0.8]: gradients and a slow wave."""
    rows = torch.linspace(0, 1, HEIGHT).view(HEIGHT, 1)
    cols = torch.linspace(0, 1, WIDTH).view(1, WIDTH)
    planes = [
        0.5
        + 0.2 * torch.sin(3 * cols + 2 * rows + c) * torch.cos(2 * rows - c)
        + 0.1 * (cols - rows)
        for c in range(channels)
    ]
    return torch.stack(planes)[None].clamp(0, 1).float()


def noisy(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return add_noise(x, SIGMA, generator=seed)


def needs_bm3d():
    pytest.importorskip("bm3d")


@pytest.mark.parametrize("method", ["nlm", "bm3d"])
def test_denoises_gray_with_the_true_sigma(method):
    if method == "bm3d":
        needs_bm3d()
    x = smooth_image()
    y = noisy(x)
    denoiser = create_baseline(method)
    assert denoiser.blind is False and denoiser.sigma_source == "true"
    x_hat = denoiser(y, SIGMA)
    assert x_hat.shape == y.shape and x_hat.dtype == torch.float32
    gain = float(psnr(x_hat, x)[0] - psnr(y, x)[0])
    assert gain > 3.0, f"{method} gained only {gain:.2f} dB at sigma 25"


def test_bm3d_handles_rgb():
    needs_bm3d()
    x = smooth_image(3)
    y = noisy(x, seed=1)
    x_hat = BM3DDenoiser()(y, SIGMA)
    assert x_hat.shape == (1, 3, HEIGHT, WIDTH) and x_hat.dtype == torch.float32
    assert float(psnr(x_hat, x)[0]) > float(psnr(y, x)[0]) + 3.0


def test_nlm_handles_rgb_and_batches_with_one_sigma_per_image():
    x = torch.cat([smooth_image(3), smooth_image(3).flip(-1)])
    sigmas = torch.tensor([SIGMA, 2 * SIGMA])
    y = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(2)) * sigmas.view(
        2, 1, 1, 1
    )
    x_hat = NLMDenoiser()(y, sigmas)
    assert x_hat.shape == x.shape
    assert torch.all(psnr(x_hat, x) > psnr(y, x) + 2.0)
    # each image is denoised with its own σ: the same as one at a time
    alone = NLMDenoiser()(y[1:], float(sigmas[1]))
    assert torch.allclose(x_hat[1:], alone, atol=1e-6)


def test_estimated_sigma_is_close_to_the_truth_on_a_smooth_image():
    x = smooth_image()
    y = noisy(x, seed=3)
    estimate = estimate_noise_sigma(y[0].permute(1, 2, 0).double().numpy())
    assert estimate == pytest.approx(SIGMA, rel=0.2)
    color = noisy(smooth_image(3), seed=4)
    assert estimate_noise_sigma(color[0].permute(1, 2, 0).double().numpy()) == pytest.approx(
        SIGMA, rel=0.2
    )


def test_estimate_mode_is_blind_ignores_the_given_sigma_and_returns_its_estimates():
    x = smooth_image()
    y = noisy(x, seed=5)
    denoiser = NLMDenoiser(sigma_source="estimated")
    assert denoiser.blind is True
    without = denoiser(y)
    with_wrong_sigma = denoiser(y, 10 * SIGMA)
    assert torch.equal(without, with_wrong_sigma)
    out = denoiser.denoise_with_info(y)
    assert torch.equal(out.x_hat, without)
    ((info,),) = [out.per_image]
    assert info["sigma"] == pytest.approx(SIGMA, rel=0.2)
    assert not hasattr(denoiser, "last_sigma_estimates")  # nothing left behind
    assert float(psnr(without, x)[0]) > float(psnr(y, x)[0]) + 3.0


def test_zero_sigma_returns_the_input_and_true_mode_needs_sigma():
    y = noisy(smooth_image())
    assert torch.equal(NLMDenoiser()(y, 0.0), y)
    with pytest.raises(ValueError, match="not blind"):
        NLMDenoiser()(y)
    with pytest.raises(ValueError, match="sigma_source"):
        NLMDenoiser(sigma_source="guess")
    with pytest.raises(ValueError, match="C = 1 or 3"):
        NLMDenoiser()(torch.rand(1, 2, 9, 9), SIGMA)


def test_sweep_records_sigma_source_and_per_image_estimates():
    images = [("smooth", smooth_image()), ("flipped", smooth_image().flip(-2))]
    denoisers = {
        "nlm": create_baseline("nlm"),
        "nlm:estimate": resolve_model("nlm:estimate").denoiser,
    }
    # a precision only converts networks: the baselines still get their σ
    result = evaluate(denoisers, images, [25 / 255], progress=False, precision="float32")
    true_entry, estimated_entry = result["results"]
    assert true_entry["sigma_source"] == "true"
    assert estimated_entry["sigma_source"] == "estimated"
    assert "sigma_estimated" not in true_entry["per_image"][0]
    for item in estimated_entry["per_image"]:
        assert item["sigma_estimated"] == pytest.approx(25, rel=0.2)
    for entry in result["results"]:
        assert entry["psnr"] > entry["psnr_in"] + 3.0
        assert math.isfinite(entry["ssim"])


def test_baseline_specs():
    spec = resolve_model("nlm")
    assert isinstance(spec.denoiser, NLMDenoiser) and spec.info["sigma_source"] == "true"
    assert spec.info["kind"] == "classical" and spec.in_channels is None
    assert spec.info["blind"] is False and resolve_model("nlm:estimate").info["blind"] is True
    assert resolve_model("nlm:true").info["sigma_source"] == "true"
    assert resolve_model("NLM:estimate").denoiser.sigma_source == "estimated"
