"""Plug-and-play deblurring (half-quadratic splitting with DPIR's schedule)."""

from __future__ import annotations

import math

import pytest
import torch

import filterscope
from filterscope.errors import InputError
from filterscope.metrics import psnr
from filterscope.restoration import (
    circular_blur,
    data_step,
    dpir_schedule,
    gaussian_blur_kernel,
    hqs_deblur,
)


def _reference_circular_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Direct circular convolution, kernel centre at the origin: sum of shifted copies."""
    out = torch.zeros_like(x)
    ch, cw = kernel.shape[0] // 2, kernel.shape[1] // 2
    for a in range(kernel.shape[0]):
        for b in range(kernel.shape[1]):
            out += kernel[a, b] * torch.roll(x, shifts=(a - ch, b - cw), dims=(-2, -1))
    return out


def _image(seed: int = 0) -> torch.Tensor:
    """A smooth-ish 37x31 gray test image in [0, 1] (rows x columns), float64."""
    generator = torch.Generator().manual_seed(seed)
    rough = torch.rand(1, 1, 37, 31, generator=generator, dtype=torch.float64)
    return circular_blur(rough, gaussian_blur_kernel(1.0))


def test_circular_blur_matches_the_direct_sum_and_keeps_the_mean():
    x = torch.rand(2, 3, 37, 31, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kernel = torch.rand(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    kernel /= kernel.sum()
    blurred = circular_blur(x, kernel)
    assert torch.allclose(blurred, _reference_circular_conv(x, kernel), atol=1e-12)
    assert torch.allclose(blurred.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), atol=1e-12)
    # A delta at (x, y) = (3, 4) becomes the kernel centred there: no shift.
    delta = torch.zeros(1, 1, 37, 31, dtype=torch.float64)
    delta[..., 4, 3] = 1.0
    assert torch.allclose(circular_blur(delta, kernel)[0, 0, 2:7, 2:5], kernel, atol=1e-12)


def test_data_step_solves_its_normal_equations_exactly():
    generator = torch.Generator().manual_seed(3)
    y = torch.rand(1, 1, 37, 31, dtype=torch.float64, generator=generator)
    z = torch.rand(1, 1, 37, 31, dtype=torch.float64, generator=generator)
    kernel = gaussian_blur_kernel(1.6)
    mu = 0.05
    x = data_step(y, z, kernel, mu)
    # K^T is the convolution with the flipped kernel: K^T (K x - y) + mu (x - z) = 0.
    flipped = kernel.flip(0, 1)
    residual = _reference_circular_conv(_reference_circular_conv(x, kernel) - y, flipped) + mu * (
        x - z
    )
    assert float(residual.abs().max()) < 1e-10
    # A larger mu pulls the solution towards z.
    far = data_step(y, z, kernel, 1e6)
    assert float((far - z).abs().max()) < 1e-5


def test_dpir_schedule_is_log_spaced_with_matching_weights():
    sigmas, mus = dpir_schedule(0.02)
    assert len(sigmas) == 8
    assert sigmas[0] == pytest.approx(49 / 255) and sigmas[-1] == pytest.approx(0.02)
    ratios = [b / a for a, b in zip(sigmas, sigmas[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))
    assert mus == pytest.approx([0.23 * 0.02**2 / s**2 for s in sigmas])
    assert dpir_schedule(0.05, iterations=1) == ([0.05], [pytest.approx(0.23)])


def test_hqs_calls_the_denoiser_with_the_schedule_and_returns_its_output():
    x = _image()
    kernel = gaussian_blur_kernel(1.6)
    y = circular_blur(x, kernel)
    calls = []

    def identity(image, sigma):
        calls.append(sigma)
        return image

    one = hqs_deblur(identity, y, kernel, 0.02, iterations=1)
    assert torch.allclose(one, data_step(y, y, kernel, 0.23), atol=1e-14)
    calls.clear()
    hqs_deblur(identity, y, kernel, 0.02)
    assert calls == pytest.approx(dpir_schedule(0.02)[0])


def test_a_good_prior_raises_psnr_over_the_blurred_input():
    x = _image(4)
    kernel = gaussian_blur_kernel(1.6)
    noise = 0.02 * torch.randn(
        x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5)
    )
    y = circular_blur(x, kernel) + noise

    def half_oracle(image, sigma):  # halfway to the truth: a prior that knows a lot
        return 0.5 * (image + x)

    before = float(psnr(y, x)[0])
    after = float(psnr(hqs_deblur(half_oracle, y, kernel, 0.02), x)[0])
    assert after > before + 3.0
    perfect = hqs_deblur(lambda image, sigma: x, y, kernel, 0.02)
    assert torch.equal(perfect, x)


def test_a_network_is_a_prior_through_the_common_interface():
    torch.manual_seed(0)
    model = filterscope.create_model("drunet", widths=[4, 8], blocks=1).eval()
    y = torch.rand(1, 1, 37, 31)
    out = hqs_deblur(model, y, gaussian_blur_kernel(1.6), 0.02, iterations=2)
    assert out.shape == y.shape and out.dtype == torch.float32
    assert math.isfinite(float(out.sum()))


def test_impossible_inputs_are_refused_by_name():
    y = torch.rand(1, 1, 9, 9)
    with pytest.raises(InputError, match="noise_sigma"):
        hqs_deblur(lambda image, sigma: image, y, gaussian_blur_kernel(1.0), 0.0)
    with pytest.raises(InputError, match="kernel"):
        hqs_deblur(lambda image, sigma: image, y, gaussian_blur_kernel(1.6), 0.02)  # 13x13
    with pytest.raises(InputError, match="kernel"):
        hqs_deblur(lambda image, sigma: image, y, torch.ones(2, 2) / 4, 0.02)
