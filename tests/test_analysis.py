"""Jacobian analysis: properties on tiny models (each test well under a second)."""

from __future__ import annotations

import math

import pytest
import torch

import filterscope
from filterscope.analysis import (
    adaptive_filters,
    decomposition_vs_sigma,
    dense_jacobian,
    estimate_effective_dim,
    first_order_decomposition,
    fit_inverse_sigma,
    jacobian_rows,
    jacobian_svd,
    nesting_fraction,
    patch_spectrum,
    spectrum_vs_sigma,
    top_singular_triplets,
)
from filterscope.errors import InputError


def tiny(bias: bool = False, seed: int = 0, in_channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = filterscope.create_model(
        "dncnn", bias=bias, in_channels=in_channels, num_layers=4, hidden=8
    ).eval()
    if bias:  # orthogonal_init zeroes biases: randomise them so b_y is really nonzero
        with torch.no_grad():
            for module in model.modules():
                if getattr(module, "bias", None) is not None and isinstance(
                    module.bias, torch.Tensor
                ):
                    module.bias.normal_(0.0, 0.2)
    return model


def image(h: int = 16, w: int = 16, seed: int = 1, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, channels, h, w, generator=g, dtype=torch.float64)


def test_euler_identity_bias_free():
    model, y = tiny(False), image(37, 31)
    dec = first_order_decomposition(model, y)
    assert torch.allclose(dec.linear, dec.output, atol=1e-12, rtol=0)
    assert float(dec.bias.abs().max()) < 1e-12
    # ...and J(y) y from the dense Jacobian agrees with the JVP.
    jac = dense_jacobian(model, y[..., :12, :12], radius=None, dtype=torch.float64)
    small = first_order_decomposition(model, y[..., :12, :12])
    assert torch.allclose(jac @ y[..., :12, :12].reshape(-1), small.output.reshape(-1), atol=1e-12)


def test_net_bias_nonzero_with_bias():
    model, y = tiny(True), image(16, 16)
    dec = first_order_decomposition(model, y)
    assert float(dec.bias.norm()) > 1e-3
    assert torch.allclose(dec.linear + dec.bias, dec.output, atol=1e-12)
    assert torch.allclose(dec.residual, y - dec.output)


def test_decomposition_vs_sigma_fields():
    x = image(20, 20).repeat(3, 1, 1, 1)
    rows = decomposition_vs_sigma(tiny(False), x, [10 / 255, 50 / 255], seed=3)
    assert [r["sigma"] for r in rows] == pytest.approx([10, 50])
    for r in rows:
        assert set(r) >= {"sigma", "noise_norm", "residual_norm", "linear_norm", "bias_norm"}
        assert r["bias_norm"] < 1e-9
        assert r["noise_norm"] == pytest.approx(r["sigma"], rel=0.2)


def test_decomposition_whole_images_of_different_sizes():
    # A list of (C, H, W) images of different sizes: each is one network input; the
    # norms are the per-image RMS values of the parts, averaged, and the first image's
    # parts come back for figures.
    model = tiny(True)
    images = [image(13, 17, seed=1)[0], image(11, 9, seed=2)[0]]
    rows, examples = decomposition_vs_sigma(
        model, images, [20 / 255, 60 / 255], seed=5, return_examples=True, per_image=True
    )
    assert len(examples) == 2 and examples[0].y.shape == (1, 1, 13, 17)
    generator = torch.Generator().manual_seed(5)
    noise = [torch.randn(im.shape, generator=generator, dtype=torch.float64) for im in images]
    for row, sigma in zip(rows, (20 / 255, 60 / 255), strict=True):
        expected = []
        for im, n in zip(images, noise, strict=True):
            dec = first_order_decomposition(model, (im + sigma * n)[None])
            expected.append(255 * float(dec.bias.norm()) / im.numel() ** 0.5)
        assert row["per_image"]["bias_norm"] == pytest.approx(expected, rel=1e-10)
        assert row["bias_norm"] == pytest.approx(sum(expected) / 2, rel=1e-10)
        assert row["images"] == 2
        assert row["noise_norm"] == pytest.approx(255 * sigma, rel=0.35)
    # the example at the second sigma is the first image with the second sigma's noise
    assert torch.allclose(examples[1].y[0], images[0] + 60 / 255 * noise[0], atol=1e-12)
    with pytest.raises(InputError, match="C, H, W"):
        decomposition_vs_sigma(model, [image(5, 5)], [0.1])


@pytest.mark.parametrize("bias", [False, True])
def test_crop_rows_equal_full_jacobian(bias):
    model, y = tiny(bias), image(16, 13)
    full = dense_jacobian(model, y, radius=None, dtype=torch.float64)
    pixels = [(0, 0), (12, 15), (6, 7), (2, 9), (11, 1)]
    rows = jacobian_rows(model, y, pixels, dtype=torch.float64)  # radius auto = 4
    assert all(r.weights.shape[-1] < 13 or r.weights.shape[-2] < 16 for r in rows)
    for (px, py), row in zip(pixels, rows, strict=True):
        expected = full[py * 13 + px].view(1, 16, 13)
        assert torch.allclose(row.full(16, 13), expected, atol=1e-10, rtol=0)
    # Tiled dense Jacobian (crops) equals the untiled one.
    tiled = dense_jacobian(model, y, tile=3, dtype=torch.float64)
    assert torch.allclose(tiled, full, atol=1e-10, rtol=0)


def test_dense_jacobian_float32_close_to_float64():
    model, y = tiny(False), image(12, 12)
    j64 = dense_jacobian(model, y, dtype=torch.float64)
    j32 = dense_jacobian(model, y, dtype=torch.float32)
    assert float((j32.double() - j64).norm() / j64.norm()) < 1e-5


def test_filters_sum_and_extent():
    model, y = tiny(False), image(16, 16)
    filters = adaptive_filters(model, y, [(8, 8), (0, 15)])
    for f in filters:
        assert f.sum == pytest.approx(float(f.row.weights.sum()))
        assert 0 <= f.extent_99 <= 4
        assert f.extent_rms >= 0
        d = f.to_dict()
        assert d["pixel"] == list(f.row.pixel) and len(d["filter"]) == f.row.weights.shape[1]
    # Euler per pixel: the filter applied to y gives the output pixel (bias-free).
    f = filters[0]
    t, b, lft, rgt = f.row.box
    assert float((f.row.weights * y[0, :, t:b, lft:rgt]).sum()) == pytest.approx(
        f.row.value, abs=1e-12
    )


def test_svd_reconstructs_and_spectrum_fields():
    model, x = tiny(False), image(10, 10)
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    jac = dense_jacobian(model, y, dtype=torch.float64)
    u, s, vh = jacobian_svd(jac)
    assert torch.allclose(u @ torch.diag(s) @ vh, jac, atol=1e-10)
    spec = patch_spectrum(model, y, x=x, dtype=torch.float64)
    assert spec.effective_dim == pytest.approx(float(jac.pow(2).sum()))
    assert 0 <= spec.clean_energy_fraction <= 1 + 1e-12
    assert spec.cosines.shape == (spec.signal_dim,)
    assert spec.cosines.abs().max() <= 1 + 1e-9
    assert spec.singular_vector_images([0, 1]).shape == (2, 1, 10, 10)


def test_spectrum_vs_sigma_nesting_and_fit():
    spectra, summary = spectrum_vs_sigma(
        tiny(False), image(8, 8), [10 / 255, 30 / 255, 60 / 255], dtype=torch.float64
    )
    assert [n["sigma"] for n in summary["nesting"]] == pytest.approx([30, 60])
    assert all(0 <= n["fraction"] <= 1 + 1e-9 for n in summary["nesting"])
    assert {"slope", "alpha"} <= set(summary["fit"])
    assert spectra[0].to_dict()["sigma"] == pytest.approx(10)


def test_nesting_and_fit_on_known_inputs():
    basis = torch.eye(6, dtype=torch.float64)
    assert nesting_fraction(basis[:, :2], basis[:, :4]) == pytest.approx(1.0)
    assert nesting_fraction(basis[:, 4:], basis[:, :4]) == pytest.approx(0.0)
    fit = fit_inverse_sigma([10, 20, 40], [300, 150, 75])
    assert fit["slope"] == pytest.approx(-1.0) and fit["alpha"] == pytest.approx(3000)


def test_probe_estimator_unbiased_12x12():
    model, y = tiny(False), image(12, 12)
    exact = float(dense_jacobian(model, y, dtype=torch.float64).pow(2).sum())
    for distribution in ("rademacher", "gaussian"):
        est = estimate_effective_dim(
            model, y, probes=300, batch=150, distribution=distribution, dtype=torch.float64
        )
        assert abs(est["effective_dim"] - exact) < 4 * est["std_error"]
        assert est["interval"][0] < est["effective_dim"] < est["interval"][1]
        assert est["probes"] == 300
    early = estimate_effective_dim(model, y, probes=400, batch=4, rtol=0.2)
    assert early["probes"] < 400


def test_randomized_svd_matches_dense():
    model, y = tiny(False), image(12, 12)
    s_dense = torch.linalg.svdvals(dense_jacobian(model, y, dtype=torch.float64))
    u, s, v = top_singular_triplets(model, y, 5, oversample=10, power_iters=4, dtype=torch.float64)
    assert torch.allclose(s, s_dense[:5], rtol=5e-3)  # a flat, hard spectrum
    assert u.shape == v.shape == (5, 1, 12, 12)
    # A v_1 = s_1 u_1
    double = model.double()
    dec = torch.func.jvp(double, (y,), (v[:1],))[1]
    assert torch.allclose(dec[0], s[0] * u[0], atol=1e-4 * float(s[0]))


def test_any_callable_and_color():
    def smooth(t: torch.Tensor) -> torch.Tensor:  # a linear, differentiable "denoiser"
        return torch.nn.functional.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=True)

    y = image(9, 9)
    jac = dense_jacobian(smooth, y, dtype=torch.float64)
    assert float(jac.sum(1)[40]) == pytest.approx(1.0)  # interior rows average 9 pixels
    assert first_order_decomposition(smooth, y).bias.abs().max() < 1e-14
    rows = jacobian_rows(tiny(False, in_channels=3), image(10, 10, channels=3), [(5, 5)], channel=2)
    assert rows[0].weights.shape[0] == 3


def test_bad_inputs_raise_input_error():
    model, y = tiny(False), image(16, 16)
    with pytest.raises(InputError, match="outside"):
        adaptive_filters(model, y, [(16, 3)])
    with pytest.raises(InputError, match="not differentiable"):
        dense_jacobian(lambda t: t.detach() * 0.5, y)
    with pytest.raises(InputError, match="matrix-free"):
        dense_jacobian(model, y, max_bytes=1000)
    with pytest.raises(InputError, match="failed"):
        dense_jacobian(lambda t: t.numpy(), y)
    with pytest.raises(InputError):
        estimate_effective_dim(model, y, probes=0)
    with pytest.raises(InputError, match="larger"):
        filterscope.analysis.random_patches([y[0]], patch=20, count=1, generator=torch.Generator())
    assert not math.isnan(estimate_effective_dim(model, y, probes=2)["effective_dim"])
