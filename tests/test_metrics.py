"""PSNR and SSIM against scikit-image, and the clipping convention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from filterscope.metrics import psnr, ssim

HEIGHT, WIDTH = 37, 31


def image_pair(channels: int, *, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, HEIGHT, WIDTH, generator=g, dtype=torch.float64)
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x_hat, x


def hwc(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor -> (H, W, C) float64 array."""
    return t.permute(1, 2, 0).numpy().astype(np.float64)


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_matches_skimage(channels):
    x_hat, x = image_pair(channels)
    ours = psnr(x_hat, x)
    assert ours.shape == (2,)
    assert ours.dtype == torch.float64
    for i in range(2):
        reference = peak_signal_noise_ratio(hwc(x[i]), hwc(x_hat[i]), data_range=1)
        assert abs(float(ours[i]) - reference) < 1e-10


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels):
    x_hat, x = image_pair(channels)
    ours = ssim(x_hat, x)
    assert ours.shape == (2,)
    for i in range(2):
        if channels == 1:
            reference = structural_similarity(
                hwc(x[i])[..., 0], hwc(x_hat[i])[..., 0], data_range=1
            )
        else:
            reference = structural_similarity(
                hwc(x[i]), hwc(x_hat[i]), data_range=1, channel_axis=-1
            )
        assert abs(float(ours[i]) - reference) < 1e-10


def test_metrics_accept_float32_and_compute_in_float64():
    x_hat, x = image_pair(1)
    assert torch.allclose(psnr(x_hat.float(), x.float()), psnr(x_hat, x), atol=1e-5)
    assert psnr(x_hat.float(), x.float()).dtype == torch.float64
    assert ssim(x_hat.float(), x.float()).dtype == torch.float64


def test_psnr_of_known_mse():
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x_hat = torch.full_like(x, 0.1)  # MSE 0.01 -> 20 dB at data range 1
    assert abs(float(psnr(x_hat, x)[0]) - 20.0) < 1e-12
    assert math.isinf(float(psnr(x, x)[0]))


def test_ssim_of_identical_images_is_one():
    _, x = image_pair(3)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64), atol=1e-12)


def test_estimates_are_clipped_to_unit_range():
    x_hat, x = image_pair(1)
    wild = x_hat.clone()
    wild[..., :5, :] = 1.7  # above the range
    wild[..., -5:, :] = -0.4  # below it
    clipped = wild.clamp(0, 1)
    assert torch.equal(psnr(wild, x), psnr(clipped, x))
    assert torch.equal(ssim(wild, x), ssim(clipped, x))
    # clip=False keeps the out-of-range error, which is larger.
    assert (psnr(wild, x, clip=False) < psnr(wild, x)).all()
    assert not torch.allclose(ssim(wild, x, clip=False), ssim(wild, x))


def test_values_are_per_image():
    x_hat, x = image_pair(3, batch=3)
    batched_psnr, batched_ssim = psnr(x_hat, x), ssim(x_hat, x)
    for i in range(3):
        assert torch.allclose(psnr(x_hat[i : i + 1], x[i : i + 1]), batched_psnr[i : i + 1])
        assert torch.allclose(ssim(x_hat[i : i + 1], x[i : i + 1]), batched_ssim[i : i + 1])


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_mismatch_raises(metric):
    x_hat, x = image_pair(1)
    with pytest.raises(ValueError, match="same shape"):
        metric(x_hat[:, :, :-1], x)
    with pytest.raises(ValueError):
        metric(x_hat[0], x[0])  # (C, H, W) is not a batch


def test_ssim_rejects_images_smaller_than_the_window():
    x = torch.rand(1, 1, 6, 40)
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(x, x)
