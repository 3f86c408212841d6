"""Noise beyond i.i.d. Gaussian: Poisson–Gaussian, camera pipeline, correlated noise,
quantisation, the per-patch mixture; statistics with stated tolerances."""

from __future__ import annotations

import math

import pytest
import torch

from filterscope.camera_noise import (
    NoiseOptions,
    bayer_masks,
    camera_noise,
    correlated_noise,
    demosaic_bilinear,
    linear_to_srgb,
    poisson_gaussian_noise,
    quantize,
    sample_sensor_noise,
    srgb_to_linear,
)
from filterscope.errors import InputError
from filterscope.noise import NOISE_MODELS, add_noise, apply_noise, mixed_noise

NO_STORAGE = NoiseOptions(jpeg_probability=0.0, bits=0)  # the camera's noise alone


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _on_8bit_grid(y: torch.Tensor) -> bool:
    return bool(torch.allclose(y * 255, torch.round(y * 255), atol=1e-4))


# ------------------------------------------------------------------ Poisson–Gaussian


@pytest.mark.parametrize("level", [0.05, 0.5, 0.9])
def test_poisson_gaussian_variance_is_a_x_plus_b_on_a_flat_image(level):
    shot, read = 4e-3, 2e-4
    x = torch.full((4, 1, 200, 250), level, dtype=torch.float64)
    noisy, std_map = poisson_gaussian_noise(x, shot=shot, read=read, generator=_gen(0))
    expected = shot * level + read
    torch.testing.assert_close(std_map, torch.full_like(x, math.sqrt(expected)))
    residual = noisy - x
    # 200k samples: the variance is within ~1% (3 standard errors, Poisson's excess
    # kurtosis included); 3% leaves room.
    assert float(residual.var()) == pytest.approx(expected, rel=0.03)
    assert abs(float(residual.mean())) < 0.01 * math.sqrt(expected)


def test_poisson_gaussian_draws_sensor_parameters_from_the_documented_ranges():
    options = NoiseOptions()
    shot, read = sample_sensor_noise(4000, options=options, generator=_gen(1))
    lo, hi = options.shot_range
    assert float(shot.min()) >= lo and float(shot.max()) <= hi
    # log-uniform: the median is the geometric mean of the ends (within 3%, 4000 draws)
    assert float(shot.median()) == pytest.approx(math.sqrt(lo * hi), rel=0.1)
    spread = read.log() - (options.read_slope * shot.log() + options.read_intercept)
    assert abs(float(spread.mean())) < 0.02
    assert float(spread.std()) == pytest.approx(options.read_spread, rel=0.05)


def test_poisson_gaussian_per_image_parameters_and_refusals():
    x = torch.full((2, 3, 37, 31), 0.5)
    _, std_map = poisson_gaussian_noise(
        x, shot=torch.tensor([1e-3, 4e-3]), read=torch.tensor([0.0, 1e-4]), generator=_gen(2)
    )
    assert std_map.shape == x.shape
    torch.testing.assert_close(std_map[:, 0, 0, 0], torch.tensor([0.5e-3, 2e-3 + 1e-4]).sqrt())
    with pytest.raises(InputError, match="shot, read"):
        poisson_gaussian_noise(x, shot=1e-3)
    with pytest.raises(InputError, match="shot, read"):
        poisson_gaussian_noise(x, shot=-1e-3, read=0.0)


# ------------------------------------------------------------------ correlated noise


def _neighbour_correlation(noise: torch.Tensor) -> float:
    a, b = noise[..., :, :-1].flatten(), noise[..., :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_correlated_noise_has_the_marginal_std_and_the_kernels_correlation():
    width = 1.0
    options = NoiseOptions(correlation_width_range=(width, width))
    x = torch.zeros(8, 1, 150, 170, dtype=torch.float64)
    noisy, std_map = correlated_noise(x, 0.1, options=options, generator=_gen(3))
    torch.testing.assert_close(std_map, torch.full_like(x, 0.1))
    # 200k strongly correlated samples (~10k independent): std within 3%.
    assert float(noisy.std()) == pytest.approx(0.1, rel=0.03)
    # A Gaussian kernel of std w correlates neighbours by exp(-1 / (4 w²)) = 0.78.
    assert _neighbour_correlation(noisy) == pytest.approx(math.exp(-1 / (4 * width**2)), abs=0.03)


def test_correlated_noise_mixes_colour_channels_and_keeps_their_std():
    options = NoiseOptions(correlation_width_range=(0.5, 0.5), channel_mixing_range=(0.6, 0.6))
    x = torch.zeros(4, 3, 100, 90, dtype=torch.float64)
    noisy, _ = correlated_noise(
        x, torch.tensor([0.05, 0.1, 0.2, 0.3]), options=options, generator=_gen(4)
    )
    for index, sigma in enumerate((0.05, 0.1, 0.2, 0.3)):
        for channel in range(3):
            assert float(noisy[index, channel].std()) == pytest.approx(sigma, rel=0.05)
    red, green = noisy[:, 0].flatten(), noisy[:, 1].flatten()
    assert float(torch.corrcoef(torch.stack([red, green]))[0, 1]) > 0.3
    white = correlated_noise(
        x, 0.1, options=NoiseOptions(channel_mixing_range=(0.0, 0.0)), generator=_gen(4)
    )[0]
    assert (
        abs(
            float(torch.corrcoef(torch.stack([white[:, 0].flatten(), white[:, 1].flatten()]))[0, 1])
        )
        < 0.05
    )


# ------------------------------------------------------------------ camera pipeline


def test_tone_curve_and_its_inverse_round_trip():
    x = torch.linspace(0, 1, 257, dtype=torch.float64)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-6, rtol=0)
    assert bool((srgb_to_linear(x).diff() >= 0).all())  # monotone


@pytest.mark.parametrize("shape", [(37, 31), (8, 9), (2, 3)])
def test_bayer_masks_cover_every_pixel_once_and_demosaic_keeps_constants(shape):
    masks = bayer_masks(*shape)
    torch.testing.assert_close(masks.sum(dim=0), torch.ones(shape))
    assert float(masks[0, 0, 0]) == 1.0  # RGGB: red at the top left
    planes = torch.tensor([0.2, 0.5, 0.7]).view(1, 3, 1, 1) * masks[None]
    torch.testing.assert_close(
        demosaic_bilinear(planes, masks),
        torch.tensor([0.2, 0.5, 0.7]).view(1, 3, 1, 1).expand(1, 3, *shape),
    )


@pytest.mark.parametrize("channels", [3, 1])
def test_camera_noise_std_is_within_the_approximate_map_on_a_flat_gray_patch(channels):
    x = torch.full((6, channels, 72, 68), 0.5, dtype=torch.float64)
    noisy, std_map = camera_noise(x, sigma=5 / 255, options=NO_STORAGE, generator=_gen(5))
    assert noisy.shape == std_map.shape == x.shape
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    residual, expected = (noisy - x)[inner], std_map[inner]
    measured = residual.std(dim=(2, 3))
    predicted = expected.square().mean(dim=(2, 3)).sqrt()
    # Documented: the map is a linearisation, within about 10% on mid-gray patches
    # (per image and channel: ~4000 correlated samples, a few % of sampling error).
    assert float((measured / predicted - 1).abs().max()) < 0.12
    assert abs(float(residual.mean())) < 0.1 * float(predicted.mean())
    # The noise is correlated by the demosaicking, as a camera's is.
    assert _neighbour_correlation(residual) > 0.1


def _chroma(residual: torch.Tensor) -> torch.Tensor:
    """The blue-difference chroma of a colour residual, (B, 1, H, W)."""
    return residual[:, 2:] - residual.mean(dim=1, keepdim=True)


@pytest.mark.parametrize("channels", [3, 1])
def test_in_camera_smoothing_makes_blotchy_chroma_and_keeps_the_std_map(channels):
    x = torch.full((6, channels, 72, 68), 0.5, dtype=torch.float64)
    smoothing = NoiseOptions(
        jpeg_probability=0.0,
        bits=0,
        luma_smoothing_range=(1.0, 1.0),
        chroma_smoothing_range=(3.0, 3.0),
    )
    plain, _ = camera_noise(x, sigma=5 / 255, options=NO_STORAGE, generator=_gen(5))
    noisy, std_map = camera_noise(x, sigma=5 / 255, options=smoothing, generator=_gen(5))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    residual = (noisy - x)[inner]
    # The map is rescaled by the realised variance change over the image, so on the
    # whole image it matches as the unsmoothed map does (root mean square, not std:
    # blotches over 3 pixels give each image a noise mean).
    power = (noisy - x).square().mean(dim=(2, 3)) / std_map.square().mean(dim=(2, 3))
    assert float((power.sqrt() - 1).abs().max()) < 0.12
    # Luma correlation rises with a 1-pixel kernel (exp(-1/4) = 0.78 for white noise).
    assert _neighbour_correlation(residual) > _neighbour_correlation((plain - x)[inner]) + 0.1
    if channels == 3:  # chroma over 3 pixels: neighbours nearly equal, blotches
        assert _neighbour_correlation(_chroma(residual)) > 0.9
        assert _neighbour_correlation(_chroma((plain - x)[inner])) < 0.8


def test_in_camera_smoothing_is_a_low_pass_that_keeps_the_blotches():
    # Noise reduction removes the fine grain and keeps the low frequencies: the
    # per-pixel std falls, the means over 16x16 blocks stay (unit-sum kernels; a
    # unit-norm kernel would multiply them by about 2·sqrt(pi)·width).
    x = torch.full((4, 3, 96, 96), 0.5, dtype=torch.float64)
    smoothing = NoiseOptions(
        jpeg_probability=0.0,
        bits=0,
        luma_smoothing_range=(2.0, 2.0),
        chroma_smoothing_range=(2.0, 2.0),
    )
    plain, _ = camera_noise(x, sigma=10 / 255, options=NO_STORAGE, generator=_gen(8))
    smoothed, std_map = camera_noise(x, sigma=10 / 255, options=smoothing, generator=_gen(8))
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))
    before, after = (plain - x)[inner], (smoothed - x)[inner]
    assert float(after.std() / before.std()) < 0.5
    blocks_before = torch.nn.functional.avg_pool2d(before, 16)
    blocks_after = torch.nn.functional.avg_pool2d(after, 16)
    # Block means agree within 35% of their spread (the kernel's tails cross block
    # edges; 0.25 measured) and keep their size (a unit-norm kernel: about 7 times).
    assert float((blocks_after - blocks_before).std() / blocks_before.std()) < 0.35
    assert 0.8 < float(blocks_after.std() / blocks_before.std()) < 1.2
    assert float(std_map.mean()) < 0.5 * 10 / 255 * 1.5  # the map follows the fall


def test_in_camera_smoothing_residual_keeps_that_fraction_of_the_grain():
    x = torch.full((2, 3, 41, 37), 0.4, dtype=torch.float64)
    base = {"jpeg_probability": 0.0, "bits": 0, "chroma_smoothing_range": (3.0, 3.0)}
    plain, _ = camera_noise(x, sigma=8 / 255, options=NO_STORAGE, generator=_gen(12))
    kept_all = NoiseOptions(**base, smoothing_residual_range=(1.0, 1.0))
    unsmoothed, _ = camera_noise(x, sigma=8 / 255, options=kept_all, generator=_gen(12))
    torch.testing.assert_close(unsmoothed, plain, atol=1e-9, rtol=0)  # r = 1: a unit impulse
    half = NoiseOptions(**base, smoothing_residual_range=(0.5, 0.5))
    none = NoiseOptions(**base)
    blended, _ = camera_noise(x, sigma=8 / 255, options=half, generator=_gen(12))
    smoothed, _ = camera_noise(x, sigma=8 / 255, options=none, generator=_gen(12))
    torch.testing.assert_close(blended - x, 0.5 * (plain - x) + 0.5 * (smoothed - x))


def test_sensor_map_level_reports_the_std_before_in_camera_smoothing():
    x = torch.full((3, 3, 45, 39), 0.5, dtype=torch.float64)
    base = {"jpeg_probability": 0.0, "bits": 0, "chroma_smoothing_range": (3.0, 3.0)}
    plain, plain_std = camera_noise(x, sigma=8 / 255, options=NO_STORAGE, generator=_gen(6))
    options = {level: NoiseOptions(**base, map_level=level) for level in ("pixel", "sensor")}
    noisy, pixel_std = camera_noise(x, sigma=8 / 255, options=options["pixel"], generator=_gen(6))
    same, sensor_std = camera_noise(x, sigma=8 / 255, options=options["sensor"], generator=_gen(6))
    assert torch.equal(noisy, same)  # only the map differs, not the noise stream
    torch.testing.assert_close(sensor_std, plain_std)  # the level before the smoothing
    assert float(pixel_std.mean()) < 0.8 * float(sensor_std.mean())  # chroma blotches
    assert not torch.equal(noisy, plain)


def test_in_camera_smoothing_off_by_default_draws_nothing():
    x = torch.rand(2, 3, 37, 31, generator=_gen(4))
    explicit = NoiseOptions(luma_smoothing_range=(0.0, 0.0), chroma_smoothing_range=(0.0, 0.0))
    a, _ = camera_noise(x, generator=_gen(9))
    b, _ = camera_noise(x, options=explicit, generator=_gen(9))
    assert torch.equal(a, b)  # a recipe without smoothing keeps its noise stream


def test_camera_noise_is_the_image_without_noise_and_stores_8_bit_values():
    x = torch.rand(2, 3, 37, 31, generator=_gen(6), dtype=torch.float64)
    clean, _ = camera_noise(x, sigma=0.0, options=NO_STORAGE, generator=_gen(7))
    torch.testing.assert_close(clean, x, atol=1e-6, rtol=0)
    stored, std_map = camera_noise(
        x.float(), options=NoiseOptions(jpeg_probability=0.0), generator=_gen(7)
    )
    assert float(stored.min()) >= 0 and float(stored.max()) <= 1
    assert _on_8bit_grid(stored)
    # quantisation adds 1/255/sqrt(12) in quadrature: the map never falls below it
    assert float(std_map.min()) >= 1 / 255 / math.sqrt(12) - 1e-7


def test_camera_noise_jpeg_removes_some_noise_and_stays_on_the_8_bit_grid():
    rows = torch.linspace(0.2, 0.8, 37).view(1, 1, -1, 1)
    x = (rows * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)).expand(3, 3, 37, 31)
    plain, _ = camera_noise(
        x, sigma=3 / 255, options=NoiseOptions(jpeg_probability=0.0), generator=_gen(9)
    )
    jpeg, _ = camera_noise(
        x,
        sigma=3 / 255,
        options=NoiseOptions(jpeg_probability=1.0, jpeg_quality_range=(90, 90)),
        generator=_gen(9),
    )
    assert _on_8bit_grid(jpeg)
    assert not torch.equal(plain, jpeg)
    # Same noise draw (JPEG's own draws come after it): JPEG changes it by less than
    # the noise itself and smooths part of it away.
    assert float((jpeg - plain).std()) < float((plain - x).std())
    assert float((jpeg - x).std()) < float((plain - x).std())


def test_camera_noise_on_gray_images_and_odd_sizes():
    x = torch.full((2, 1, 37, 31), 0.4)
    noisy, std_map = camera_noise(x, generator=_gen(10))
    assert noisy.shape == std_map.shape == (2, 1, 37, 31)
    assert float(std_map.min()) > 0
    with pytest.raises(InputError, match="H, W >= 2"):
        camera_noise(torch.zeros(1, 3, 1, 9))


# ------------------------------------------------------------------ quantisation


def test_quantize_clips_and_rounds_to_the_asked_bits():
    y = torch.tensor([-0.2, 0.0, 0.3001, 0.5, 1.0, 1.7])
    q8 = quantize(y, 8)
    assert float(q8.min()) == 0.0 and float(q8.max()) == 1.0
    assert _on_8bit_grid(q8)
    assert float((q8 - y.clamp(0, 1)).abs().max()) <= 0.5 / 255 + 1e-7
    q16 = quantize(y, 16)
    assert float((q16 - y.clamp(0, 1)).abs().max()) <= 0.5 / 65535 + 1e-7
    assert not torch.equal(q16, q8)
    torch.testing.assert_close(quantize(y, 0), y.clamp(0, 1))
    with pytest.raises(InputError, match="bits"):
        quantize(y, 7)


# ------------------------------------------------------------------ options, determinism


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ({"shot_range": (0.01, 0.001)}, "shot_range"),
        ({"shot_range": (0.0, 0.01)}, "shot_range"),
        ({"jpeg_probability": 1.5}, "jpeg_probability"),
        ({"jpeg_quality_range": (50, 101)}, "jpeg_quality_range"),
        ({"channel_mixing_range": (0.2, 1.2)}, "channel_mixing_range"),
        ({"correlation_width_range": (-1.0, 1.0)}, "correlation_width_range"),
        ({"bits": 12}, "bits"),
        ({"read_spread": -0.1}, "read_spread"),
        ({"chroma_smoothing_range": (0.0, 9.0)}, "chroma_smoothing_range"),
        ({"luma_smoothing_range": (-0.5, 1.0)}, "luma_smoothing_range"),
        ({"smoothing_residual_range": (0.5, 1.5)}, "smoothing_residual_range"),
        ({"map_level": "white"}, "map_level"),
    ],
)
def test_bad_noise_options_are_refused_by_name(values, name):
    with pytest.raises(InputError, match=name):
        NoiseOptions(**values)


def test_noise_options_from_a_recipe_table():
    options = NoiseOptions.from_dict({"shot_range": [1e-3, 1e-2], "bits": 16})
    assert options.shot_range == (1e-3, 1e-2) and options.bits == 16
    assert NoiseOptions.from_dict(options.to_dict()) == options
    with pytest.raises(InputError, match="noise_options: unknown key 'shot'"):
        NoiseOptions.from_dict({"shot": 1.0})


@pytest.mark.parametrize("kind", NOISE_MODELS)
def test_every_kind_is_reproducible_by_seed(kind):
    x = torch.rand(2, 3, 37, 31, generator=_gen(11))
    a = apply_noise(x, 10 / 255, kind=kind, generator=3)
    b = apply_noise(x, 10 / 255, kind=kind, generator=3)
    c = apply_noise(x, 10 / 255, kind=kind, generator=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(add_noise(x, 10 / 255, kind=kind, generator=3), a[0])


def test_apply_noise_needs_sigma_for_gaussian_kinds_and_knows_its_kinds():
    x = torch.zeros(1, 1, 9, 9)
    with pytest.raises(InputError, match="sigma"):
        apply_noise(x, None, kind="correlated")
    with pytest.raises(ValueError, match="unknown noise kind"):
        apply_noise(x, 0.1, kind="poisson")


def test_mixed_noise_draws_a_kind_per_patch_reproducibly():
    x = torch.full((64, 1, 16, 16), 0.5)
    sigmas = torch.full((64,), 0.1)
    kinds = ["gaussian", "poisson-gaussian"]
    noisy, std_map = mixed_noise(x, sigmas, kinds=kinds, weights=[1, 1], generator=_gen(12))
    again = mixed_noise(x, sigmas, kinds=kinds, weights=[1, 1], generator=_gen(12))
    assert torch.equal(noisy, again[0]) and torch.equal(std_map, again[1])
    gaussian = torch.isclose(std_map[:, 0, 0, 0], torch.tensor(0.1))
    # Both kinds occur (64 fair draws: missing one has probability 2^-63).
    assert 0 < int(gaussian.sum()) < 64
    only_gaussian = mixed_noise(x, sigmas, kinds=kinds, weights=[1, 0], generator=_gen(12))[1]
    torch.testing.assert_close(only_gaussian, torch.full_like(x, 0.1))
    with pytest.raises(InputError, match="noise_weights"):
        mixed_noise(x, sigmas, kinds=kinds, weights=[1], generator=_gen(12))
    with pytest.raises(InputError, match="distinct"):
        mixed_noise(x, sigmas, kinds=["camera", "camera"], generator=_gen(12))


# ------------------------------------------------------------------ evaluation


def _identity(y: torch.Tensor, sigma=None) -> torch.Tensor:
    return y


@pytest.mark.parametrize("kind", ["correlated", "poisson-gaussian", "camera"])
def test_evaluation_sweeps_draw_the_other_noise_models_by_seed(kind):
    from filterscope.evaluation import evaluate

    images = [("flat", torch.full((1, 3, 37, 31), 0.4)), ("rand", torch.rand(1, 3, 37, 31))]
    first = evaluate({"id": _identity}, images, [10 / 255], noise=kind, progress=False)
    again = evaluate({"id": _identity}, images, [10 / 255], noise=kind, progress=False)
    assert first["results"][0]["per_image"] == again["results"][0]["per_image"]
    assert first["protocol"]["noise"] == kind
    assert first["protocol"]["noisy_input_clipped"] == (kind == "camera")
    other_seed = evaluate({"id": _identity}, images, [10 / 255], noise=kind, seed=1, progress=False)
    assert first["results"][0]["psnr"] != other_seed["results"][0]["psnr"]


def test_the_command_line_offers_every_noise_model():
    from filterscope.cli.evaluate import NOISE_CHOICES

    assert NOISE_CHOICES == NOISE_MODELS
