"""Noise models: reproducibility by seed, standard deviation, σ sampling."""

from __future__ import annotations

import math

import pytest
import torch

from filterscope.noise import (
    add_noise,
    estimate_noise_level,
    gaussian_noise,
    sample_sigmas,
    uniform_noise,
)

BIG = (4, 1, 200, 250)  # 200k samples: the std estimate is within ~0.5% at 3 standard errors


@pytest.mark.parametrize("draw", [gaussian_noise, uniform_noise])
def test_noise_is_reproducible_by_seed(draw):
    a = draw((2, 1, 37, 31), 0.1, generator=5)
    b = draw((2, 1, 37, 31), 0.1, generator=5)
    c = draw((2, 1, 37, 31), 0.1, generator=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(draw((2, 1, 37, 31), 0.1, generator=g1), a)
    # A generator object advances, so a second draw from it is new noise.
    assert torch.equal(draw((2, 1, 37, 31), 0.1, generator=g2), a)
    assert not torch.equal(draw((2, 1, 37, 31), 0.1, generator=g2), a)


@pytest.mark.parametrize("draw", [gaussian_noise, uniform_noise])
@pytest.mark.parametrize("sigma", [25 / 255, 0.5])
def test_noise_has_the_requested_std(draw, sigma):
    noise = draw(BIG, sigma, generator=0, dtype=torch.float64)
    assert noise.shape == BIG
    assert noise.dtype == torch.float64
    assert abs(float(noise.std()) / sigma - 1) < 0.01
    assert abs(float(noise.mean())) < 0.01 * sigma


def test_uniform_noise_is_bounded_by_sqrt3_sigma():
    sigma = 0.2
    noise = uniform_noise(BIG, sigma, generator=1, dtype=torch.float64)
    half_width = sigma * math.sqrt(3.0)
    assert float(noise.abs().max()) <= half_width
    assert float(noise.abs().max()) > 0.99 * half_width


def test_per_image_sigma_tensor():
    sigmas = torch.tensor([0.05, 0.4]).view(2, 1, 1, 1)
    noise = gaussian_noise((2, 1, 200, 200), sigmas, generator=3, dtype=torch.float64)
    for i, s in enumerate((0.05, 0.4)):
        assert abs(float(noise[i].std()) / s - 1) < 0.02


def test_add_noise_does_not_clip_and_keeps_dtype():
    x = torch.full((1, 1, 64, 64), 0.95)
    y = add_noise(x, 0.3, generator=0)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert float(y.max()) > 1.0 and float(y.min()) < 0.0
    # The same seed gives the same noise as drawing it alone.
    assert torch.allclose(y - x, gaussian_noise(tuple(x.shape), 0.3, generator=0), atol=1e-6)


def test_add_noise_uniform_kind_and_unknown_kind():
    x = torch.zeros(1, 1, 100, 100, dtype=torch.float64)
    y = add_noise(x, 0.1, kind="uniform", generator=0)
    assert float(y.abs().max()) <= 0.1 * math.sqrt(3.0)
    with pytest.raises(ValueError, match="unknown noise kind"):
        add_noise(x, 0.1, kind="poisson")


def test_sample_sigmas_range_and_shape():
    sigmas = sample_sigmas(1000, (0.0, 55 / 255), generator=torch.Generator().manual_seed(0))
    assert sigmas.shape == (1000, 1, 1, 1)
    assert float(sigmas.min()) >= 0.0 and float(sigmas.max()) <= 55 / 255
    # Uniform on the range: the mean is near the midpoint and both ends are reached.
    assert abs(float(sigmas.mean()) - 27.5 / 255) < 0.02 * 55 / 255
    assert float(sigmas.min()) < 0.02 * 55 / 255 and float(sigmas.max()) > 0.98 * 55 / 255


def test_sample_sigmas_is_reproducible_and_degenerate_range():
    a = sample_sigmas(8, (0.1, 0.2), generator=torch.Generator().manual_seed(4))
    b = sample_sigmas(8, (0.1, 0.2), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    fixed = sample_sigmas(3, (0.1, 0.1))
    assert torch.allclose(fixed, torch.full((3, 1, 1, 1), 0.1))


@pytest.mark.parametrize("bad", [(-0.1, 0.2), (0.3, 0.2)])
def test_sample_sigmas_rejects_bad_ranges(bad):
    with pytest.raises(ValueError, match="sigma_range"):
        sample_sigmas(4, bad)


# --------------------------------------------------------------------------- estimation


def _smooth_image(channels: int = 1, height: int = 67, width: int = 59) -> torch.Tensor:
    rows = torch.linspace(0, 1, height).view(-1, 1)
    cols = torch.linspace(0, 1, width).view(1, -1)
    plane = 0.3 + 0.4 * torch.sin(3 * rows) * torch.cos(2 * cols)
    return plane.expand(1, channels, height, width).to(torch.float64)


@pytest.mark.parametrize("channels", [1, 3])
def test_estimated_noise_level_is_near_the_truth_on_a_smooth_image(channels):
    x = _smooth_image(channels, 131, 117)
    sigmas = torch.tensor([5.0, 25.0, 60.0], dtype=torch.float64) / 255
    y = x + gaussian_noise((3, channels, *x.shape[-2:]), sigmas.view(-1, 1, 1, 1), generator=4)
    estimate = estimate_noise_level(y)
    assert estimate.shape == (3,)
    # MAD over a quarter of ~3700 coefficients per channel: about 4% standard error.
    torch.testing.assert_close(estimate, sigmas, rtol=0.12, atol=0)


def test_estimated_noise_level_is_positively_homogeneous_and_differentiable():
    y = torch.randn(2, 1, 23, 19, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for alpha in (0.5, 3.0):
        torch.testing.assert_close(
            estimate_noise_level(alpha * y), alpha * estimate_noise_level(y), rtol=1e-12, atol=0
        )
    y.requires_grad_(True)
    (grad,) = torch.autograd.grad(estimate_noise_level(y).sum(), y)
    # Euler's identity for a degree-1 homogeneous function: <grad, y> = estimate.
    torch.testing.assert_close((grad * y).sum(), estimate_noise_level(y).sum().detach())


def test_estimated_noise_level_tracks_scikit_image():
    skimage_restoration = pytest.importorskip("skimage.restoration")
    x = _smooth_image(1, 96, 80)
    y = x + gaussian_noise(x.shape, 0.1, generator=7, dtype=torch.float64)
    ours = float(estimate_noise_level(y, flat_fraction=1.0))
    theirs = float(skimage_restoration.estimate_sigma(y[0, 0].numpy()))
    assert ours == pytest.approx(theirs, rel=0.05)


@pytest.mark.parametrize("shape", [(1, 1, 7, 40), (1, 40, 40), (1, 1, 40, 3)])
def test_estimated_noise_level_refuses_tiny_or_unbatched_images(shape):
    with pytest.raises(ValueError, match="H, W >= 8"):
        estimate_noise_level(torch.rand(shape))


def test_flat_parts_keep_texture_out_of_the_estimate_and_stay_unbiased_on_noise():
    x = _smooth_image(1, 96, 80)
    # Fine texture (periods of 3-4 pixels) over the right half of the image.
    rows = torch.arange(96).view(-1, 1)
    cols = torch.arange(80).view(1, -1)
    texture = 0.2 * torch.sin(rows * 1.9) * torch.sin(cols * 1.6) * (cols >= 40)
    y = x + texture + gaussian_noise(x.shape, 5 / 255, generator=2, dtype=torch.float64)
    plain = float(estimate_noise_level(y, flat_fraction=1.0))
    flat = float(estimate_noise_level(y))
    assert plain > 1.5 * 5 / 255  # the texture counts as noise
    assert flat == pytest.approx(5 / 255, rel=0.15)
    noise = gaussian_noise((2, 1, 200, 200), 1.0, generator=5, dtype=torch.float64)
    torch.testing.assert_close(
        estimate_noise_level(noise), torch.ones(2, dtype=torch.float64), rtol=0.05, atol=0
    )


def test_clipped_sky_is_left_out_of_the_estimate(monkeypatch):
    # A bright flat sky (0.95) over a textured ground, noise σ = 25 clipped and stored
    # as 8 bits, as every photograph is: the sky is the flattest part, and clipped.
    x = _smooth_image(1, 96, 80)
    rows = torch.arange(96).view(-1, 1)
    x = torch.where(rows < 48, torch.full_like(x, 0.95), x + 0.05 * torch.sin(rows * 0.7))
    y = x + gaussian_noise(x.shape, 25 / 255, generator=3, dtype=torch.float64)
    stored = (y.clamp(0, 1) * 255).round() / 255
    estimate = float(estimate_noise_level(stored))
    assert estimate == pytest.approx(25 / 255, rel=0.12)
    # Mask by the plane's own extremes: scaling the stored image changes nothing else.
    assert float(estimate_noise_level(0.5 * stored)) == pytest.approx(0.5 * estimate, rel=1e-12)
    # Without the mask the flattest quarter is the clipped sky, which reads much less.
    from filterscope import noise

    monkeypatch.setattr(
        noise, "_clipped_windows", lambda plane, size: torch.zeros(size, dtype=torch.bool)
    )
    monkeypatch.setattr(noise, "CLIPPED_FRACTION", 1.1)  # nor the truncation correction
    assert float(estimate_noise_level(stored)) < 0.8 * 25 / 255


@pytest.mark.parametrize(
    ("sigma_255", "bypass", "bypassed_below"),
    [(75, "CLIPPED_FRACTION", 0.88), (100, "HEAVY_CLIPPING", 0.7)],
    ids=["truncated", "censored"],
)
def test_heavy_clipped_noise_is_read_through_its_correction(
    monkeypatch, sigma_255, bypass, bypassed_below
):
    # Noise around mid-grays, clipped and stored as 8 bits. At σ = 75 the windows without
    # a clipped pixel hold noise truncated to the range, whose median absolute value is
    # smaller; at σ = 100 almost every window holds a clipped pixel, the few that do not
    # are those whose noise stayed small, and every window is read as censored noise.
    # Either way the estimate undoes the shrinkage.
    x = 0.35 + 0.3 * _smooth_image(1, 128, 112)
    y = x + gaussian_noise(x.shape, sigma_255 / 255, generator=4, dtype=torch.float64)
    stored = (y.clamp(0, 1) * 255).round() / 255
    estimate = float(estimate_noise_level(stored))
    assert estimate == pytest.approx(sigma_255 / 255, rel=0.1)
    assert float(estimate_noise_level(0.5 * stored)) == pytest.approx(0.5 * estimate, rel=1e-9)
    # Euler's identity: the correction is homogeneous of degree 0 (a constant factor).
    leaf = stored.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(estimate_noise_level(leaf).sum(), leaf)
    assert float((grad * stored).sum()) == pytest.approx(estimate, rel=1e-9)
    from filterscope import noise

    # Without the correction (never taken as clipped / never as censored) it reads low.
    monkeypatch.setattr(noise, bypass, 1.1)
    assert float(estimate_noise_level(stored)) < bypassed_below * sigma_255 / 255


def test_unclipped_noise_skips_the_truncation_correction(monkeypatch):
    from filterscope import noise

    y = _smooth_image(2, 64, 48) + gaussian_noise((2, 1, 64, 48), 0.1, generator=5)
    plain = estimate_noise_level(y)
    monkeypatch.setattr(noise, "_truncation_mad_factor", lambda *args: 1 / 0)
    torch.testing.assert_close(estimate_noise_level(y), plain, rtol=0, atol=0)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_estimated_noise_level_refuses_a_bad_flat_fraction(fraction):
    with pytest.raises(ValueError, match="flat_fraction"):
        estimate_noise_level(torch.rand(1, 1, 20, 20), flat_fraction=fraction)


def test_censored_reading_takes_the_noise_out_of_the_window_means(monkeypatch):
    """At σ = 100 (8-bit) the window means carry noise of about σ/2, which spreads them
    towards the clip levels; read as they are, the correction over-shoots (about 4%
    high on these three noises), deconvolved it does not (within 2% on average)."""
    from filterscope import noise

    x = 0.35 + 0.3 * _smooth_image(1, 128, 112)
    stored = []
    for seed in (4, 5, 6):
        y = x + gaussian_noise(x.shape, 100 / 255, generator=seed, dtype=torch.float64)
        stored.append((y.clamp(0, 1) * 255).round() / 255)

    def mean_ratio() -> float:
        return sum(float(estimate_noise_level(s)) for s in stored) / 3 / (100 / 255)

    assert mean_ratio() == pytest.approx(1.0, abs=0.02)
    plain = noise._shrinkage_at_fixed_point
    monkeypatch.setattr(
        noise,
        "_shrinkage_at_fixed_point",
        lambda *args, noisy_means=False: plain(*args, noisy_means=False),
    )
    assert mean_ratio() > 1.03
