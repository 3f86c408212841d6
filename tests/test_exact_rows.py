"""The filter shown is the filter that ran: exact Jacobian rows for every registered network.

Every row :func:`filterscope.analysis.jacobian_rows` gives (and the explorer and
``analyze filters`` show) is compared with autograd on the whole image, through the
model called as ``denoise`` calls it (blind: the shipped DRUNet estimates σ from the
whole image, so its rows reach far from the pixel). Declared receptive radii are checked
against the structural receptive field, and tiled ``denoise`` against the whole image.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import filterscope
from filterscope.analysis import jacobian_rows
from filterscope.analysis.jacobian import Cancelled, ExactRows
from filterscope.hub import model_info
from filterscope.inference import denoise_tensor

#: Largest difference allowed between a row and autograd on the whole image (float64).
TOLERANCE = 1e-5
#: Registry kinds whose models are torch networks with a Jacobian.
NETWORK_KINDS = ("architecture", "shipped")


def differentiable_models() -> list[str]:
    """Every registered network, and the variants of each (``bf-drunet-gray:blind``)."""
    names = []
    for name in filterscope.list_models():
        info = model_info(name)
        if info.kind in NETWORK_KINDS:
            names.append(name)
            names += [f"{name}:{variant}" for variant in info.variants]
    return names


def noisy_image(height: int, width: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(1, channels, height, width, generator=g, dtype=torch.float64)
    clean = torch.nn.functional.avg_pool2d(clean, 5, stride=1, padding=2)  # some structure
    return clean + 0.1 * torch.randn(clean.shape, generator=g, dtype=torch.float64)


def autograd_rows(model: nn.Module, y: torch.Tensor, pixels, channel: int = 0) -> list:
    """Rows of the Jacobian of ``model(y)`` (blind, as ``denoise`` calls it) in float64,
    by autograd on the whole image; and the outputs."""
    net = copy.deepcopy(model).double().eval()
    probe = y.clone().requires_grad_(True)
    out = net(probe)
    rows = []
    for px, py in pixels:
        (grad,) = torch.autograd.grad(out[0, channel, py, px], probe, retain_graph=True)
        rows.append(grad[0])
    return rows, out.detach()


def assert_rows_exact(model, y, pixels, channel=0):
    height, width = y.shape[-2:]
    rows = jacobian_rows(model, y, pixels, channel=channel)
    expected, out = autograd_rows(model, y, pixels, channel)
    for (px, py), row, want in zip(pixels, rows, expected, strict=True):
        diff = float((row.full(height, width) - want).abs().max())
        assert diff <= TOLERANCE, f"pixel {(px, py)}: row differs by {diff:.3g}"
        assert row.value == pytest.approx(float(out[0, channel, py, px]), abs=TOLERANCE)
    return rows


def small_drunet(*, blind_estimate: bool, in_channels: int = 1) -> nn.Module:
    torch.manual_seed(3)
    return filterscope.create_model(
        "drunet", widths=[4, 6, 8], blocks=1, blind_estimate=blind_estimate, in_channels=in_channels
    ).eval()


@pytest.mark.parametrize("name", differentiable_models())
def test_every_registered_network_rows_equal_autograd(name):
    model = filterscope.load_model(name)
    channels = getattr(model, "in_channels", 1) or 1
    y = noisy_image(47, 43, channels)
    # Corners, edges and the middle; the last channel for colour models.
    pixels = [(0, 0), (42, 46), (21, 23), (3, 40), (40, 2)]
    assert_rows_exact(model, y, pixels, channel=channels - 1)


def test_small_drunet_crops_on_stride_grid_and_estimate_term():
    """Crops (receptive radius 31, stride 4) are exercised: the image is far larger."""
    model = small_drunet(blind_estimate=True)
    assert model.receptive_radius * 2 + 1 < 81
    y = noisy_image(89, 81)
    pixels = [(40, 44), (0, 0), (80, 88), (1, 86), (79, 3), (37, 5)]
    rows = assert_rows_exact(model, y, pixels)
    # The estimate's gradient makes rows reach outside the receptive field somewhere.
    assert all(r.estimate_weight is not None for r in rows)
    assert any(r.box != ExactRows(model, y).box(*r.pixel) for r in rows)


def test_crops_off_the_stride_grid_are_wrong():
    """What the grid alignment prevents: a crop starting off the grid gives another row
    (so the comparison above can fail)."""
    model = small_drunet(blind_estimate=False)
    y = noisy_image(89, 81)
    exact = ExactRows(model, y)
    exact.align = 1  # as if the network were translation-equivariant
    (row,) = exact.rows([(41, 45)])
    (want,), _ = autograd_rows(model, y, [(41, 45)])
    assert float((row.full(89, 81) - want).abs().max()) > 1e-3


def test_radius_too_small_is_caught_by_the_comparison():
    model = filterscope.load_model("bf-dncnn-gray")
    y = noisy_image(61, 57)
    (row,) = jacobian_rows(model, y, [(30, 30)], radius=5)
    (want,), _ = autograd_rows(model, y, [(30, 30)])
    assert float((row.full(61, 57) - want).abs().max()) > 1e-4


def test_colour_small_drunet_with_estimate():
    model = small_drunet(blind_estimate=True, in_channels=3)
    y = noisy_image(75, 69, channels=3, seed=4)
    assert_rows_exact(model, y, [(34, 37), (0, 74), (68, 0)], channel=1)


def pooled_drunet(in_channels: int = 1) -> nn.Module:
    torch.manual_seed(3)
    return filterscope.create_model(
        "drunet",
        widths=[4, 6, 8],
        blocks=1,
        in_channels=in_channels,
        noise_estimator=True,
        pooled_noise_map=True,
    ).eval()


def test_pooled_noise_map_rows_carry_the_level_term():
    """One level per image (the RMS of the estimated map) reaches every pixel: the rows
    are exact only with its gradient, as with the wavelet estimate."""
    model = pooled_drunet(in_channels=3)
    y = noisy_image(75, 69, channels=3, seed=4)
    rows = assert_rows_exact(model, y, [(34, 37), (0, 74), (68, 0)], channel=2)
    assert all(r.estimate_weight is not None for r in rows)


def test_tiled_denoise_with_a_pooled_noise_map_equals_the_whole_image():
    model = pooled_drunet()
    y = noisy_image(157, 149).float()
    whole = denoise_tensor(model, y, tile=4096)
    assert float((whole - denoise_tensor(model, y, tile=32)).abs().max()) < 1e-5
    # Each tile pooling its own map gives another result (the check can fail).
    first = model(y[..., :64, :64]).detach()
    assert float((first - whole[..., :64, :64]).abs()[..., :32, :32].max()) > 1e-4


@pytest.mark.slow
def test_default_model_rows_equal_autograd_on_a_large_image():
    """The shipped default on an image larger than its receptive field (crops used)."""
    model = filterscope.load_model("bf-drunet-gray")
    y = noisy_image(245, 239)
    assert_rows_exact(model, y, [(120, 123), (0, 0), (238, 244), (5, 200)])


def test_cancellation_stops_between_layers():
    model = small_drunet(blind_estimate=True)
    exact = ExactRows(model, noisy_image(89, 81))
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3  # a few layers in

    with pytest.raises(Cancelled):
        exact.rows([(40, 40)], should_stop=stop)
    assert len(calls) == 4
    (row,) = exact.rows([(40, 40)])  # usable again afterwards
    assert row.value == row.value


# ----------------------------------------------------------------------------- receptive field


def structural_radius(model: nn.Module, *, length: int, offsets: int) -> int:
    """Largest distance (pixels) from an output pixel to an input pixel it depends on,
    along rows and columns, with every weight made positive (no path can cancel) and σ
    given (the estimate's global term aside), over ``offsets`` positions on the grid."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.fill_(1.0 / module.weight[0].numel())
            elif isinstance(getattr(module, "running_var", None), torch.Tensor):
                module.running_var.fill_(1.0)
                if getattr(module, "weight", None) is not None:
                    module.weight.fill_(1.0)
            for name in ("bias", "running_mean"):
                value = getattr(module, name, None)
                if isinstance(value, torch.Tensor):
                    value.zero_()
    channels = model.in_channels
    radius = 0
    for transpose in (False, True):
        shape = (
            (offsets, channels, 16, length) if not transpose else (offsets, channels, length, 16)
        )
        probe = (torch.rand(shape, dtype=torch.float64) + 1.0).requires_grad_(True)
        out = net(probe, torch.full((offsets,), 0.1, dtype=torch.float64))
        centre = length // 2
        picked = sum(
            out[k, 0, 8, centre + k] if not transpose else out[k, 0, centre + k, 8]
            for k in range(offsets)
        )
        (grad,) = torch.autograd.grad(picked, probe)
        for k in range(offsets):
            mass = grad[k].abs().sum(0)
            line = mass.sum(0) if not transpose else mass.sum(1)
            where = line.nonzero().flatten()
            radius = max(radius, int((where - (centre + k)).abs().max()))
    return radius


@pytest.mark.parametrize("name", ["bf-dncnn-gray", "bf-drunet-gray", "bf-drunet-color"])
def test_declared_receptive_radius_covers_the_structural_one(name):
    model = filterscope.load_model(name)
    declared = model.receptive_radius
    align = model.tile_alignment
    found = structural_radius(model, length=2 * declared + 4 * align + 8, offsets=align)
    assert found <= declared
    assert found >= declared // 2  # the probe does see the field (it can fail)


def test_structural_radius_sees_a_larger_field():
    """The probe finds a radius larger than a wrong declaration (a case that must fail)."""
    model = small_drunet(blind_estimate=False)
    found = structural_radius(model, length=120, offsets=4)
    assert 0 < found <= model.receptive_radius
    assert found > model.receptive_radius - 8


# ----------------------------------------------------------------------------- tiled denoise


def test_tiled_denoise_equals_the_whole_image_with_the_estimate():
    model = small_drunet(blind_estimate=True)
    y = noisy_image(157, 149).float()
    whole = denoise_tensor(model, y, tile=4096)
    tiled = denoise_tensor(model, y, tile=32)
    assert float((whole - tiled).abs().max()) < 1e-5
    # With a halo below the true receptive field the tiles differ (the check can fail).
    short = denoise_tensor(model, y, tile=32, overlap=4)
    assert float((whole - short).abs().max()) > 1e-4


@pytest.mark.slow
def test_tiled_denoise_of_the_default_equals_the_whole_image():
    model = filterscope.load_model("bf-drunet-gray")
    y = noisy_image(400, 392).float()
    whole = denoise_tensor(model, y, tile=4096)
    tiled = denoise_tensor(model, y, tile=128)  # 2x2 tiles of 360x360
    assert float((whole - tiled).abs().max()) < 1e-4


# ----------------------------------------------------------------------------- patch spectra


def test_patch_block_in_image_equals_autograd_and_tiny_image_inside():
    """The block is the full-image Jacobian's; for DnCNN (radius 4 here) its rows at least
    the radius from the patch's borders equal those of the patch denoised alone."""
    from filterscope.analysis import dense_jacobian

    torch.manual_seed(0)
    model = filterscope.create_model("dncnn", bias=False, num_layers=4, hidden=8).eval()
    y = noisy_image(41, 37)
    top, left, h, w = 10, 12, 14, 13
    block = ExactRows(model, y).block(top, left, h, w)
    net = copy.deepcopy(model).double()
    full = torch.autograd.functional.jacobian(lambda v: net(v).reshape(-1), y).reshape(41 * 37, -1)
    index = torch.arange(41 * 37).view(41, 37)[top : top + h, left : left + w].reshape(-1)
    assert float((block - full[index][:, index]).abs().max()) <= 1e-10
    alone = dense_jacobian(model, y[..., top : top + h, left : left + w], dtype=torch.float64)
    inner = torch.arange(h * w).view(h, w)[4:-4, 4:-4].reshape(-1)
    assert float((block[inner] - alone[inner]).abs().max()) <= 1e-10
    assert float((block - alone).abs().max()) > 1e-4  # near the borders they differ


@pytest.mark.slow  # 1-2 minutes each on two shared cores
@pytest.mark.parametrize("name", ["bf-dncnn-gray", "bf-drunet-gray"])
def test_effective_dimension_in_image_stays_below_the_patch_dimension(name):
    from filterscope.analysis import patch_spectrum_in_image

    model = filterscope.load_model(name)
    g = torch.Generator().manual_seed(1)
    rows = torch.linspace(0, 1, 64, dtype=torch.float64)[:, None]
    clean = (0.3 + 0.4 * (rows > 0.5) + 0.1 * torch.linspace(0, 1, 72, dtype=torch.float64))[
        None, None
    ]
    y = clean + 25 / 255 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    found = patch_spectrum_in_image(model, y, (26, 30, 12, 12), sigma=25 / 255).to_dict()
    assert 0 < found["effective_dim"] <= found["patch_dim"] == 144
    assert found["top_singular_value"] == pytest.approx(found["singular_values"][0])
    assert found["contraction"] == (found["top_singular_value"] <= 1.0)


def test_analyze_spectrum_is_the_block_inside_the_image():
    from filterscope.analysis import patch_spectrum_in_image
    from filterscope.analysis.reports import analyze_spectrum
    from filterscope.noise import add_noise

    torch.manual_seed(0)
    model = filterscope.create_model("dncnn", bias=False, num_layers=4, hidden=8).eval()
    clean = noisy_image(37, 31, seed=2).clamp(0, 1)
    report = analyze_spectrum(model, clean, [25 / 255], patch=6, at=(10, 12), seed=4)
    y = add_noise(clean, 25 / 255, generator=4)
    expected = patch_spectrum_in_image(model, y, (12, 10, 6, 6))
    got = report.spectra[0].singular_values
    assert torch.allclose(got, expected.singular_values, atol=1e-5)
