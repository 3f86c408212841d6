"""Single-image networks (deep image prior): networks, fitting, SURE, weights, theory, plots."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from filterscope.dip import (
    DIPDenoiser,
    EncoderDecoder,
    VanillaDIP,
    WeightTracker,
    build_network,
    fit_single_image,
    intermediate_layers,
    linearized_gd,
    loglog_slope,
    monte_carlo_sure,
    ntk_gap,
    ntk_max_eigenvalue,
    pad_to_multiple,
    patience_stop,
    preactivation_eigenvectors,
)
from filterscope.errors import InputError
from filterscope.metrics import psnr
from filterscope.noise import add_noise
from filterscope.ntk import VanillaCNN, kernel_matrix

SIGMA = 25 / 255


def _pair(c=3, h=32, w=32, seed=0):
    """A smooth clean image (so there is something to denoise) and its noisy version."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, c, max(2, h // 8), max(2, w // 8), generator=g, dtype=torch.float64)
    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    return x, add_noise(x, SIGMA, generator=seed + 1)


# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize("arch", ["vanilla", "unet", "autoencoder"])
def test_networks_keep_the_image_size_even_when_not_a_multiple_of_8(arch):
    net = build_network(arch, 3, 3, 4, kernel_size=5, generator=0)
    x = torch.rand(2, 3, 37, 31)
    assert net(x).shape == (2, 3, 37, 31)
    assert net.last_preactivation(x).shape == (2, 4, 37, 31)


def test_padding_reaches_a_multiple_of_8_and_crops_back():
    x = torch.rand(1, 2, 37, 31)
    padded = pad_to_multiple(x)
    assert padded.shape[-2:] == (40, 32)
    assert torch.equal(padded[..., :37, :31], x)
    assert pad_to_multiple(torch.rand(1, 1, 5, 3)).shape[-2:] == (16, 16)  # replicated
    already = x[..., :32, :24]
    assert pad_to_multiple(already) is already  # nothing to do


def test_autoencoder_ignores_the_skip_path_and_the_unet_uses_it():
    x = torch.rand(1, 3, 32, 32)
    for skip in (False, True):
        net = EncoderDecoder(3, 3, 4, skip=skip, generator=0)
        code, maps = net.encode(x)
        zeroed = [torch.zeros_like(m) for m in maps]
        same = torch.equal(net.decode(code, maps), net.decode(code, zeroed))
        assert same is (not skip)


def test_unet_has_eight_hidden_layers_and_3x3_kernels():
    net = EncoderDecoder(1, 1, 4, skip=True, generator=0)
    weights = net.effective_weights()
    assert len(weights) == 9  # 8 hidden + the 1x1 output layer
    assert all(w.shape[-1] == 3 for _, w in weights[:-1]) and weights[-1][1].shape[-1] == 1
    assert intermediate_layers([n for n, _ in weights]) == [n for n, _ in weights[1:-1]]


def test_vanilla_is_the_ntk_modules_network_for_one_output_channel():
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    ours = VanillaDIP(
        1, 1, 8, kernel_size=3, parameterization="ntk", generator=3, dtype=torch.float64
    )
    theirs = VanillaCNN(1, 8, kernel_size=3, output_kernel=1, generator=3)
    assert torch.allclose(ours(x), theirs(x), atol=1e-14)


@pytest.mark.parametrize("arch", ["vanilla", "unet"])
def test_both_parameterisations_are_the_same_function_at_initialisation(arch):
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    opts = dict(kernel_size=5, generator=1, dtype=torch.float64)
    standard = build_network(arch, 3, 3, 4, parameterization="standard", **opts)
    ntk = build_network(arch, 3, 3, 4, parameterization="ntk", **opts)
    assert torch.allclose(standard(x), ntk(x), atol=1e-12)
    for (_, a), (_, b) in zip(standard.effective_weights(), ntk.effective_weights(), strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_unknown_architecture_and_bad_width():
    with pytest.raises(InputError):
        build_network("resnet", 1, 1, 4)
    with pytest.raises(InputError):
        build_network("unet", 1, 1, 0)


# --------------------------------------------------------------------------- fitting


def test_image_input_starts_from_zero_exactly():
    x, y = _pair(3, 20, 24)
    outputs = {}
    result = fit_single_image(
        y,
        arch="unet",
        input="image",
        optimizer="adam",
        iters=2,
        width=4,
        callback=lambda t, rec, z: outputs.__setitem__(t, z.clone()),
    )
    assert torch.equal(outputs[0], torch.zeros_like(outputs[0]))
    assert result.trajectory["loss"][0] == pytest.approx(float(y.pow(2).mean()), rel=1e-5)
    assert not torch.equal(outputs[2], outputs[0])


def test_gd_with_zero_step_leaves_weights_and_output_unchanged():
    _, y = _pair(1, 16, 16)
    result = fit_single_image(
        y, arch="autoencoder", optimizer="gd", lr=0.0, iters=3, width=4, weight_log_every=1
    )
    assert [r["iteration"] for r in result.weights] == [0, 1, 2, 3]
    assert all(r["l2_total"] == 0.0 for r in result.weights)
    assert len(set(result.trajectory["loss"])) == 1


def test_weight_tracker_is_zero_at_start_and_grows_with_training():
    _, y = _pair(1, 16, 16)
    result = fit_single_image(
        y, arch="autoencoder", optimizer="adam", iters=4, width=4, weight_log_every=2
    )
    first, last = result.weights[0], result.weights[-1]
    assert first["iteration"] == 0 and first["l2_mean"] == 0.0 and first["linf_mean"] == 0.0
    assert last["iteration"] == 4 and last["l2_mean"] > 0
    # Adam moves every weight by about lr per step at first
    assert last["linf_mean"] == pytest.approx(4 * result.config["lr_effective"], rel=0.5)
    assert set(last["layers"]) == {"inc", "down1", "down2", "down3", "up1", "up2", "up3"} | {
        "last",
        "out",
    }


def test_tracker_measures_effective_weights():
    net = VanillaDIP(1, 1, 4, kernel_size=3, parameterization="ntk", generator=0)
    tracker = WeightTracker(net)
    with torch.no_grad():
        net.weights[1].add_(1.0)  # ω moves by 1, w by √(2 / fan_in) = √(2/4)
    record = tracker.measure(7)
    assert record["layers"]["layer1"]["l2"] == 0.0
    assert record["layers"]["layer2"]["linf"] == pytest.approx(math.sqrt(0.5), rel=1e-6)


def test_oracle_stop_keeps_the_best_iterate():
    x, y = _pair(3, 16, 16)
    result = fit_single_image(
        y,
        arch="vanilla",
        input="image",
        optimizer="gd",
        iters=15,
        width=8,
        kernel_size=5,
        clean=x,
        stop="oracle",
    )
    best = max(result.trajectory["psnr"])
    assert result.choices["oracle_psnr"] == best
    assert result.iteration == result.trajectory["iteration"][result.trajectory["psnr"].index(best)]
    assert float(psnr(result.x_hat[None].double(), x[None])) == pytest.approx(best, abs=1e-4)


def test_patience_ends_training_early():
    x, y = _pair(1, 16, 16)
    # a huge Adam step ruins the fit at once, so the PSNR never beats iteration 0
    result = fit_single_image(
        y,
        arch="vanilla",
        input="image",
        iters=20,
        width=4,
        kernel_size=3,
        lr=5.0,
        clean=x,
        stop="oracle",
        patience=3,
    )
    assert result.timing["iterations"] < 20
    assert result.trajectory["iteration"][-1] - result.iteration == 3


def test_patience_stop_read_from_a_full_trajectory_matches_runs_with_patience():
    x, y = _pair(3, 16, 16)
    # this run's PSNR stalls after 2 steps, then climbs again: short patiences stop on
    # the plateau, longer ones reach the cap
    options = dict(arch="vanilla", input="image", iters=40, width=4, kernel_size=3, lr=0.02)
    full = fit_single_image(y, clean=x, stop="oracle", **options)
    stops = []
    for patience in (1, 2, 4, 7):
        stopped = fit_single_image(y, clean=x, stop="oracle", patience=patience, **options)
        read = patience_stop(full.trajectory["iteration"], full.trajectory["psnr"], patience)
        assert read["best_iteration"] == stopped.iteration
        assert read["best"] == stopped.choices["oracle_psnr"]
        ran = stopped.trajectory["iteration"][-1]
        assert read["stopped_at"] == (ran if ran < options["iters"] else None)
        stops.append(read["stopped_at"])
    assert stops[0] is not None and stops[-1] is None


def test_patience_stop_rules():
    iterations = [0, 10, 20, 30, 40, 50]
    psnr_values = [10.0, 12.0, 12.0, 11.0, 13.0, 9.0]
    # a tie is no improvement: the best stays at 10
    assert patience_stop(iterations, psnr_values, 20) == {
        "stopped_at": 30,
        "best_iteration": 10,
        "best": 12.0,
    }
    assert patience_stop(iterations, psnr_values, 30)["stopped_at"] is None
    assert patience_stop(iterations, psnr_values, 30)["best"] == 13.0
    sure = [5.0, 4.0, 6.0, 7.0, 8.0, 1.0]
    assert patience_stop(iterations, sure, 30, mode="min")["stopped_at"] == 40
    with pytest.raises(InputError):
        patience_stop(iterations, psnr_values[:-1], 3)
    with pytest.raises(InputError):
        patience_stop(iterations, psnr_values, 0)


def test_divergence_ends_training_and_keeps_the_last_finite_iterate():
    _, y = _pair(1, 16, 16)
    # Adam moves every weight by ~lr: 1e10 sends the output past float32's range at once
    result = fit_single_image(
        y,
        arch="vanilla",
        input="image",
        optimizer="adam",
        lr=1e10,
        iters=20,
        width=4,
        kernel_size=3,
    )
    assert result.config["diverged_at"] is not None and result.config["diverged_at"] < 20
    assert torch.isfinite(result.x_hat).all() and torch.isfinite(result.last).all()
    assert all(math.isfinite(v) for v in result.trajectory["loss"])


def test_gd_automatic_step_is_the_closed_form_ntk_step_for_a_wide_network():
    _, y = _pair(1, 12, 12)
    width = 2048
    r = fit_single_image(
        y, arch="vanilla", input="image", optimizer="gd", iters=1, width=width, kernel_size=3
    )
    assert r.config["lr_effective"] == pytest.approx(y.numel() / (2 * r.config["ntk_lambda_max"]))
    # standard parameterisation: Θ ≈ (c / σ_w²) K, K the closed form without the first layer
    closed = float(torch.linalg.eigvalsh(kernel_matrix(y, kernel_size=3))[-1])
    assert r.config["ntk_lambda_max"] / width == pytest.approx(closed / 2.0, rel=0.1)


def test_power_iteration_matches_the_explicit_tangent_kernel():
    net = VanillaDIP(1, 1, 3, kernel_size=3, generator=0, dtype=torch.float64)
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    params = tuple(net.parameters())

    def f(*ws):
        return torch.func.functional_call(
            net, {"weights.0": ws[0], "weights.1": ws[1]}, (x,)
        ).reshape(-1)

    jac = torch.autograd.functional.jacobian(f, params)
    j = torch.cat([jj.reshape(36, -1) for jj in jac], 1)
    exact = float(torch.linalg.eigvalsh(j @ j.T)[-1])
    assert ntk_max_eigenvalue(net, x, iterations=200, tol=1e-10) == pytest.approx(exact, rel=1e-6)


def test_same_seed_same_result_and_denoiser_wrapper():
    _, y = _pair(3, 16, 16)
    opts = dict(arch="autoencoder", iters=3, width=4, seed=5)
    a = fit_single_image(y, **opts)
    b = fit_single_image(y, **opts)
    assert torch.equal(a.x_hat, b.x_hat)
    den = DIPDenoiser(**opts)
    out = den(y[None].float())
    assert out.shape == (1, 3, 16, 16) and den.blind
    assert torch.allclose(out[0], a.x_hat)


@pytest.mark.parametrize(
    "options",
    [
        dict(width=0),
        dict(iters=0),
        dict(lr=-1.0),
        dict(lr=float("nan")),
        dict(stop="sure"),  # no sigma
        dict(stop="oracle"),  # no clean image
        dict(clean=torch.zeros(3, 8, 8)),
        dict(arch="vanilla", kernel_size=11, noisy=torch.rand(3, 8, 8)),
        dict(sigma=0.0),
        dict(arch="resnet"),
        dict(optimizer="sgd"),
        dict(noisy=torch.rand(2, 8, 8)),
        dict(noise_std=1e30, arch="vanilla", kernel_size=3, width=8),  # output overflows
    ],
)
def test_bad_options_raise_input_error_before_training(options):
    options = dict(options)
    noisy = options.pop("noisy", torch.rand(3, 16, 16))
    with pytest.raises(InputError):
        fit_single_image(
            noisy, iters=options.pop("iters", 1), width=options.pop("width", 2), **options
        )


# --------------------------------------------------------------------------- SURE


def _box_blur(y: torch.Tensor) -> torch.Tensor:
    """3×3 circular box filter per channel: linear, divergence n/9."""
    padded = F.pad(y[None], (1, 1, 1, 1), mode="circular")
    c = y.shape[0]
    weight = torch.full((c, 1, 3, 3), 1 / 9, dtype=y.dtype)
    return F.conv2d(padded, weight, groups=c)[0]


def test_monte_carlo_sure_of_a_linear_denoiser_matches_the_analytic_divergence():
    x, y = _pair(3, 64, 64)
    out = monte_carlo_sure(_box_blur, y, sigma=SIGMA, epsilon=1e-2, generator=3)
    trace = y.numel() / 9
    # one probe: mean tr(A), standard deviation √(2 ‖A_sym‖_F²) ≈ 4% of tr(A) here
    assert out["divergence"] == pytest.approx(trace, rel=0.15)
    residual = float((y - out["x_hat"]).pow(2).mean())
    n = y.numel()
    assert out["sure"] == pytest.approx(residual - SIGMA**2 + 2 * SIGMA**2 * out["divergence"] / n)
    true_mse = float((out["x_hat"] - x).pow(2).mean())
    assert out["sure"] == pytest.approx(true_mse, rel=0.25)


def test_fit_sure_tracks_the_true_error_of_gradient_descent():
    x, y = _pair(3, 32, 32)
    errors = []
    result = fit_single_image(
        y,
        arch="vanilla",
        input="image",
        optimizer="gd",
        iters=20,
        width=16,
        kernel_size=5,
        sigma=SIGMA,
        clean=x,
        stop="sure",
        callback=lambda t, rec, z: errors.append(float((z[0].double() - x).pow(2).mean())),
    )
    sure = torch.tensor(result.trajectory["sure"])
    mse = torch.tensor(errors)
    assert torch.all((sure - mse).abs() <= 0.25 * mse)
    assert result.iteration == result.choices["sure_iteration"]
    assert result.trajectory["divergence"][0] == pytest.approx(0.0, abs=1e-6)  # z⁰ = 0


# --------------------------------------------------------------------------- weights, theory


def test_loglog_slope():
    widths = [4, 16, 64, 256]
    assert loglog_slope(widths, [3 * w**-0.5 for w in widths]) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        loglog_slope([8, 8], [1.0, 2.0])


def test_preactivation_eigenvectors_are_the_covariance_eigenvectors():
    net = EncoderDecoder(1, 1, 6, skip=False, generator=0, dtype=torch.float64)
    x = torch.rand(1, 1, 12, 10, dtype=torch.float64)
    vals, vecs = preactivation_eigenvectors(net, x, count=3)
    assert vecs.shape == (3, 12, 10)
    a = net.last_preactivation(x)[0].reshape(6, -1).detach()
    cov = a.T @ a / 6
    exact_vals, exact_vecs = torch.linalg.eigh(cov)
    assert torch.allclose(vals, exact_vals.flip(0)[:3], rtol=1e-8)
    flat = vecs.reshape(3, -1)
    assert torch.allclose(flat @ flat.T, torch.eye(3, dtype=torch.float64), atol=1e-10)
    lead = exact_vecs[:, -1]
    assert abs(float(lead @ flat[0])) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_wide_gradient_descent_follows_ntk_twicing(parameterization):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 12, 12, generator=g, dtype=torch.float64)
    y = add_noise(x, SIGMA, generator=1)
    result = ntk_gap(
        y, widths=(16, 512), iters=10, kernel_size=3, parameterization=parameterization
    )
    narrow, wide = result["gap"]
    assert wide < 0.5 * narrow
    assert wide < 0.1


@pytest.mark.parametrize("net_input", ["noise", "image"])
def test_linearized_gd_is_twicing_with_the_explicit_tangent_kernel(net_input):
    from torch.func import functional_call, jacrev

    x, y = _pair(1, 8, 8)
    options = dict(arch="vanilla", input=net_input, width=6, kernel_size=3, seed=3)
    options |= dict(gd_step=1.5, dtype=torch.float64)
    lazy = linearized_gd(y, iters=12, clean=x, **options)

    init = fit_single_image(y, optimizer="gd", iters=1, callback=lambda *_: True, **options)
    network, x_in = init.network, init.network_input
    params = {k: v.detach() for k, v in network.named_parameters()}
    jac = jacrev(lambda p: functional_call(network, p, (x_in,)).reshape(-1))(params)
    j = torch.cat([v.reshape(64, -1) for v in jac.values()], dim=1)
    theta = j @ j.T
    n = y.numel()
    step = torch.eye(n, dtype=torch.float64) - (2 * lazy["lr_effective"] / n) * theta
    # the rate puts the top eigenvalue of (2η/n)Θ at gd_step: contraction below 2
    top = float(torch.linalg.eigvalsh((2 * lazy["lr_effective"] / n) * theta)[-1])
    assert top == pytest.approx(1.5, rel=1e-2)
    with torch.no_grad():
        z0 = (
            network(x_in).reshape(-1)
            if net_input == "noise"
            else torch.zeros(n, dtype=torch.float64)
        )
    target = y.reshape(-1).double()
    z = z0
    for t in range(13):
        assert lazy["loss"][t] == pytest.approx(float((z - target).pow(2).mean()), rel=1e-9)
        z = target + step @ (z - target)
    z12 = target + torch.linalg.matrix_power(step, 12) @ (z0 - target)
    torch.testing.assert_close(lazy["last"].reshape(-1), z12, rtol=1e-9, atol=1e-9)
    assert lazy["best_psnr"] == max(lazy["psnr"])


def test_linearized_gd_departs_from_real_gd_at_second_order_in_the_step():
    x, y = _pair(3, 16, 16)
    gaps, decreases = [], []
    for gd_step in (0.05, 0.025):
        options = dict(arch="unet", input="noise", width=8, seed=1, gd_step=gd_step)
        options |= dict(iters=1, clean=x, dtype=torch.float64)
        real = fit_single_image(y, optimizer="gd", **options)
        lazy = linearized_gd(y, **options)
        assert lazy["lr_effective"] == pytest.approx(real.config["lr_effective"])
        assert lazy["loss"][0] == pytest.approx(real.trajectory["loss"][0], rel=1e-12)
        gaps.append(abs(lazy["loss"][1] - real.trajectory["loss"][1]))
        decreases.append(lazy["loss"][0] - lazy["loss"][1])
    # halving the step halves the first step's progress but quarters the departure
    assert decreases[0] / decreases[1] == pytest.approx(2.0, rel=0.05)
    assert gaps[0] / gaps[1] > 3.0
    with pytest.raises(InputError):
        linearized_gd(y, iters=2, optimizer="adam", arch="unet", width=8)


# --------------------------------------------------------------------------- plots


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from filterscope.plotting.dip import (
        plot_ntk_gap,
        plot_preactivation_eigenvectors,
        plot_trajectories,
        plot_weight_change,
    )

    rows = [
        {"optimizer": opt, "width": w, "l2": w**-0.5 * k, "linf": 0.1 / w, "psnr": 20 + k}
        for opt, k in (("gd", 1.0), ("adam", 3.0))
        for w in (8, 16, 32)
    ]
    assert plot_weight_change(rows, tmp_path / "f4.png").exists()
    panels = {"Adam, noise": torch.rand(3, 8, 8), "GD, image": torch.rand(2, 8, 8)}
    assert plot_preactivation_eigenvectors(panels, tmp_path / "f5.png").exists()
    traj = {"iteration": [0, 1, 2], "psnr": [5.0, 10.0, 12.0]}
    sure = {"iteration": [0, 1, 2], "sure": [0.1, 0.01, 0.02]}
    assert plot_trajectories({"a": traj, "b": sure}, tmp_path / "t.png").exists()
    levels = {"paper": 11.0}
    assert plot_trajectories({"a": traj}, tmp_path / "l.png", levels=levels).exists()
    gap = {"widths": [8, 32], "gap": [0.2, 0.1], "gap_per_iteration": [[0.1, 0.2], [0.05, 0.1]]}
    assert plot_ntk_gap({**gap, "slope": -0.5}, tmp_path / "g.png").exists()


def test_fit_config_object_gives_the_same_run_as_keyword_options():
    from filterscope.dip import FitConfig

    y = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(2))
    options = dict(arch="autoencoder", iters=3, width=4, sigma=0.1, stop="sure", seed=3)
    by_keywords = fit_single_image(y, **options)
    by_config = fit_single_image(y, FitConfig(**options))
    assert torch.equal(by_keywords.x_hat, by_config.x_hat)
    assert by_keywords.trajectory == by_config.trajectory
    with pytest.raises(InputError, match="not both"):
        fit_single_image(y, FitConfig(**options), iters=5)
    with pytest.raises(InputError, match="sigma"):
        FitConfig(stop="sure")  # refused when made, before any image is seen
