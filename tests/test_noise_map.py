"""Noise-level maps and the blind noise-map estimator (issue 33): shapes, joint
homogeneity with a map, the composed blind path's homogeneity and Euler identity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from filterscope.errors import InputError
from filterscope.models import create_model
from filterscope.models.checkpoints import load_checkpoint, save_model
from filterscope.models.noise_map import NoiseMapEstimator, noise_level_map, root_mean_square
from filterscope.training.config import config_from_dict
from filterscope.training.trainer import _build_model, _parameter_groups, optimizer_step

# float64 throughout: these identities hold to round-off (about 1e-15 relative); the
# tolerance leaves three orders of magnitude for ReLU-heavy sums.
TOL = 1e-11


def _tiny(in_channels: int = 3, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("drunet", in_channels=in_channels, widths=[4, 8, 8], blocks=1, **options)
    return model.double().eval()


def _image(channels: int = 3, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(2, channels, 37, 31, generator=generator, dtype=torch.float64)
    return clean + 0.1 * torch.randn(clean.shape, generator=generator, dtype=torch.float64)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max()).detach())


def test_noise_level_map_takes_a_scalar_one_per_image_or_a_map():
    y = torch.zeros(2, 3, 5, 7)
    assert torch.equal(noise_level_map(y, 0.1), torch.full((2, 1, 5, 7), 0.1))
    per_image = noise_level_map(y, torch.tensor([0.1, 0.2]), channels=3)
    assert per_image.shape == (2, 3, 5, 7) and float(per_image[1].min()) == pytest.approx(0.2)
    one = torch.rand(2, 1, 5, 7)
    assert torch.equal(noise_level_map(y, one), one)
    assert torch.equal(noise_level_map(y, one, channels=3), one.expand(2, 3, 5, 7))
    per_channel = torch.rand(2, 3, 5, 7)
    assert torch.equal(noise_level_map(y, per_channel, channels=3), per_channel)
    rms = noise_level_map(y, per_channel)  # a one-channel input reads the RMS over channels
    assert torch.allclose(rms, per_channel.square().mean(dim=1, keepdim=True).sqrt())


@pytest.mark.parametrize(
    "sigma",
    [torch.rand(2, 2, 5, 7), torch.rand(2, 1, 5, 6), torch.rand(3), -torch.rand(2, 1, 5, 7)],
    ids=["two channels", "wrong size", "three values for two images", "negative map"],
)
def test_noise_level_map_refuses_a_map_it_cannot_use(sigma):
    with pytest.raises(InputError, match="sigma"):
        noise_level_map(torch.zeros(2, 3, 5, 7), sigma)


@pytest.mark.parametrize("map_channels", [1, 3])
@pytest.mark.parametrize("given_channels", [1, 3])
def test_drunet_is_jointly_bias_free_in_the_image_and_a_noise_map(map_channels, given_channels):
    model = _tiny(noise_map_channels=map_channels)
    y = _image()
    sigma = 0.05 + 0.1 * torch.rand(2, given_channels, 37, 31, dtype=torch.float64)
    with torch.no_grad():
        for alpha in (0.3, 2.5):
            assert _relative(model(alpha * y, alpha * sigma), alpha * model(y, sigma)) < TOL
        # the map is read: another map gives another output
        assert _relative(model(y, 2 * sigma), model(y, sigma)) > 1e-4


def test_a_constant_map_is_the_same_as_one_sigma_per_image():
    model = _tiny()
    y = _image()
    levels = torch.tensor([0.05, 0.2], dtype=torch.float64)
    with torch.no_grad():
        as_map = model(y, levels.view(2, 1, 1, 1).expand(2, 1, 37, 31))
        assert torch.equal(as_map, model(y, levels))


def test_estimator_is_non_negative_and_positively_homogeneous():
    torch.manual_seed(0)
    estimator = NoiseMapEstimator(in_channels=3).double()
    y = _image()
    with torch.no_grad():
        level = estimator(y)
        assert level.shape == (2, 1, 37, 31) and float(level.min()) >= 0
        for alpha in (0.01, 0.7, 40.0):
            assert _relative(estimator(alpha * y), alpha * level) < TOL


def test_estimator_starts_calibrated_on_white_gaussian_noise():
    torch.manual_seed(3)
    estimator = NoiseMapEstimator(in_channels=3)
    noise = 0.1 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert 0.05 < float(estimator(noise).mean()) < 0.2


def test_estimator_with_a_bias_is_not_homogeneous():
    # The case that must fail: one additive constant and sigma(a y) != a sigma(y).
    torch.manual_seed(0)
    estimator = NoiseMapEstimator(in_channels=3, bias=True).double()
    with torch.no_grad():
        for conv in estimator.features:
            if isinstance(conv, torch.nn.Conv2d):
                conv.bias.fill_(0.05)
        y = _image()
        assert _relative(estimator(3.0 * y), 3.0 * estimator(y)) > 1e-3


def _blind_path(model: torch.nn.Module):
    return lambda y: model(y)


def test_blind_path_with_the_estimator_is_homogeneous_and_satisfies_euler():
    model = _tiny(noise_estimator=True)
    y = _image()
    f = _blind_path(model)
    with torch.no_grad():
        out = f(y)
        for alpha in (0.2, 5.0):
            assert _relative(f(alpha * y), alpha * out) < TOL
    # Euler's identity for a degree-1 homogeneous function: J(y) y = f(y).
    _, jacobian_times_y = torch.func.jvp(f, (y,), (y,))
    assert _relative(jacobian_times_y, out) < 1e-9


def test_blind_path_with_a_biased_estimator_breaks_euler():
    model = _tiny(noise_estimator=True)
    with torch.no_grad():
        model.estimator = NoiseMapEstimator(in_channels=3, bias=True).double()
        for conv in model.estimator.features:
            if isinstance(conv, torch.nn.Conv2d):
                conv.bias.fill_(0.05)
    y = _image()
    out = model(y)
    _, jacobian_times_y = torch.func.jvp(_blind_path(model), (y,), (y,))
    assert _relative(jacobian_times_y, out) > 1e-4


def test_the_blind_path_uses_the_estimated_map():
    """On sides of the stride grid (4 here); on others the blind path also estimates
    the map of the rows it pads, where a told map is replicated (next test)."""
    model = _tiny(noise_estimator=True)
    y = _image()[..., :36, :28]
    with torch.no_grad():
        assert torch.equal(model(y), model(y, model.estimate_noise_map(y)))
        assert model.image_noise_level(y) is None  # tiles estimate their own maps
        assert model.receptive_radius == _tiny().receptive_radius + model.estimator.radius


def test_a_local_map_model_gives_the_whole_image_result_in_tiles():
    """37×31 is off the stride grid: each tile and the whole image are extended past
    the border, and the local map is estimated on that extension in both."""
    from filterscope.inference import denoise_tensor

    model = _tiny(noise_estimator=True).float()
    y = _image().float()
    with torch.no_grad():
        whole = model(y)
        tiled = denoise_tensor(model, y, tile=model.receptive_radius)
        assert float((tiled - whole).abs().max()) < 1e-5
        # The map of the image alone differs near the border: told it, the output moves.
        alone = model.estimator(y)
        assert float((model(y, alone) - whole).abs().max()) > 1e-3


def test_estimator_and_map_channels_survive_a_save_and_load(tmp_path):
    model = _tiny(noise_estimator=True, noise_map_channels=3).float()
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.config["noise_estimator"] is True and loaded.estimator is not None
    y = _image().float()
    with torch.no_grad():
        assert torch.equal(loaded(y), model(y))


def test_old_configs_keep_the_trained_blind_mode_and_one_map_channel():
    model = _tiny()
    assert "noise_estimator" not in model.config and "noise_map_channels" not in model.config
    assert model.estimator is None and model.head.in_channels == 3 + 1


def test_init_from_a_model_without_estimator_adds_one(tmp_path):
    source = _tiny().float()
    path = save_model(source, tmp_path / "plain.safetensors")
    options = {"widths": [4, 8, 8], "blocks": 1, "noise_map": True, "noise_estimator": True}
    config = config_from_dict(
        {"arch": "drunet", "in_channels": 3, "arch_options": options, "init_from": str(path)}
    )
    model = _build_model(config)
    assert torch.equal(model.head.weight, source.head.weight) and model.estimator is not None
    wider = {**options, "widths": [4, 8, 16]}
    with pytest.raises(Exception, match="init_from"):
        _build_model(config_from_dict({**config.to_dict(), "arch_options": wider}))


def test_denoiser_lr_scale_0_trains_the_estimator_alone():
    options = {"widths": [4, 8, 8], "blocks": 1, "noise_map": True, "noise_estimator": True}
    config = config_from_dict(
        {"arch": "drunet", "in_channels": 3, "arch_options": options, "denoiser_lr_scale": 0.0}
    )
    model = _tiny(noise_estimator=True, pooled_noise_map=True).float().train()
    optimizer = torch.optim.Adam(_parameter_groups(model, config), lr=1e-3)
    for group in optimizer.param_groups:  # as the trainer sets each step's rate
        group["lr"] = 1e-3 * group.get("lr_scale", 1.0)
    estimator = {id(p) for p in model.estimator.parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    clean = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    for _ in range(3):  # blind patches: only the denoising loss reaches the estimator
        optimizer_step(model, optimizer, noisy, clean, sigma=torch.zeros(4))
    for name, p in model.named_parameters():
        if id(p) in estimator:
            continue
        assert torch.equal(p, before[name]), name  # exactly the init_from weights
    assert any(
        not torch.equal(p, before[name])
        for name, p in model.named_parameters()
        if id(p) in estimator
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"denoiser_lr_scale": -1.0}, "must be >= 0"),
        ({"denoiser_lr_scale": 0.0, "arch_options": {"noise_map": True}}, "noise-map estimator"),
    ],
)
def test_a_bad_denoiser_lr_scale_is_refused(fields, message):
    with pytest.raises(InputError, match=f"denoiser_lr_scale: .*{message}"):
        config_from_dict({"arch": "drunet", "in_channels": 3, **fields})


def test_a_training_step_trains_the_estimator_through_blind_patches_and_supervision():
    model = _tiny(noise_estimator=True).float().train()
    clean = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    std = torch.full((4, 1, 1, 1), 0.1)
    noisy = clean + std * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    before = [p.detach().clone() for p in model.estimator.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    told = torch.full((4,), 0.1)  # every patch told its sigma: the estimator learns only
    optimizer_step(model, optimizer, noisy, clean, sigma=told, noise_std=std)  # if supervised
    assert all(torch.equal(a, b) for a, b in zip(before, model.estimator.parameters(), strict=True))
    optimizer_step(model, optimizer, noisy, clean, sigma=told, noise_std=std, noise_map_loss=1.0)
    assert not all(
        torch.equal(a, b) for a, b in zip(before, model.estimator.parameters(), strict=True)
    )
    before = [p.detach().clone() for p in model.estimator.parameters()]
    optimizer_step(model, optimizer, noisy, clean, sigma=torch.zeros(4))  # blind patches
    assert not all(
        torch.equal(a, b) for a, b in zip(before, model.estimator.parameters(), strict=True)
    )


# ------------------------------------------------------------------- pooled noise map


@pytest.mark.parametrize("strip_rows", [1, 5, 36, 1000])
def test_image_level_in_strips_is_the_rms_of_the_whole_map(strip_rows):
    estimator = _tiny(noise_estimator=True).estimator
    y = _image()
    with torch.no_grad():
        whole = root_mean_square(estimator(y))
        assert whole.shape == (2,) and bool((whole > 0).all())
        assert _relative(estimator.image_level(y, strip_rows=strip_rows), whole) < TOL
    with pytest.raises(ValueError, match="strip_rows"):
        estimator.image_level(y, strip_rows=0)


@pytest.mark.parametrize("size", [(37, 31), (5, 4), (1, 12)])
def test_box_mean_is_the_two_dimensional_box_average(size):
    """The separable box mean against avg_pool2d's square box, on images larger and
    smaller than the box; its border weights give the sum of the pooled map."""
    from filterscope.models.noise_map import _box_mean, _box_mean_weights

    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = torch.nn.functional.avg_pool2d(x, 9, stride=1, padding=4, count_include_pad=False)
    assert _relative(_box_mean(x, 9), reference) < TOL
    weights = _box_mean_weights(size[0], 9, x)[:, None] * _box_mean_weights(size[1], 9, x)
    assert _relative((x * weights).sum(dim=(2, 3)), reference.sum(dim=(2, 3))) < TOL
    # A square box that counts the padding (avg_pool2d's default) is another average.
    padded = torch.nn.functional.avg_pool2d(x, 9, stride=1, padding=4)
    assert _relative(_box_mean(x, 9), padded) > 1e-3


def test_image_level_of_an_image_smaller_than_the_box():
    estimator = _tiny(noise_estimator=True).estimator
    y = _image()[..., :5, :4]
    with torch.no_grad():
        assert _relative(estimator.image_level(y), root_mean_square(estimator(y))) < TOL


def test_pooled_blind_path_feeds_one_level_per_image_and_stays_bias_free():
    model = _tiny(noise_estimator=True, pooled_noise_map=True)
    local = _tiny(noise_estimator=True)  # same weights (same seed), local map
    y = _image()
    with torch.no_grad():
        level = model.image_noise_level(y)
        assert _relative(level, root_mean_square(model.estimator(y))) < TOL
        assert torch.equal(model(y), model(y, level))
        assert torch.equal(model.estimate_noise_map(y), noise_level_map(y, level))
        assert _relative(model(y), local(y)) > 1e-6  # pooling changes what the network sees
        for alpha in (0.2, 5.0):
            assert _relative(model(alpha * y), alpha * model(y)) < TOL
    _, jacobian_times_y = torch.func.jvp(_blind_path(model), (y,), (y,))
    assert _relative(jacobian_times_y, model(y)) < 1e-9
    # The level reads the whole image, so it is not part of the local receptive radius.
    assert model.receptive_radius == _tiny().receptive_radius


def test_pooled_noise_map_needs_an_estimator():
    with pytest.raises(ValueError, match="pooled_noise_map needs noise_estimator"):
        _tiny(pooled_noise_map=True)


def test_a_pooled_training_step_feeds_blind_patches_their_map_rms():
    model = _tiny(noise_estimator=True, pooled_noise_map=True).float().train()
    clean = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    fed = []
    model.register_forward_pre_hook(lambda module, args: fed.append(args[1].detach()))
    told = torch.tensor([0.0, 0.07, 0.0])  # the first and last patches are blind
    optimizer_step(model, torch.optim.SGD(model.parameters(), lr=0.0), noisy, clean, sigma=told)
    with torch.no_grad():
        rms = root_mean_square(model.estimator(noisy))
    (level,) = fed
    assert level.shape == (3, 1, 24, 24)
    for index, expected in ((0, rms[0]), (1, 0.07), (2, rms[2])):
        assert torch.allclose(level[index], torch.full_like(level[index], float(expected)))


def test_init_from_a_local_map_model_into_a_pooled_recipe(tmp_path):
    source = _tiny(noise_estimator=True).float()
    path = save_model(source, tmp_path / "local.safetensors")
    options = {"widths": [4, 8, 8], "blocks": 1, "noise_map": True, "noise_estimator": True}
    pooled = {**options, "pooled_noise_map": True}
    config = config_from_dict(
        {"arch": "drunet", "in_channels": 3, "arch_options": pooled, "init_from": str(path)}
    )
    model = _build_model(config)
    assert model.config["pooled_noise_map"] is True
    theirs = source.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in model.state_dict().items())


def test_the_noise_map_shown_is_the_pooled_level_that_ran():
    from filterscope.inference import estimated_noise_map

    model = _tiny(noise_estimator=True, pooled_noise_map=True).float()
    y = _image().float().clamp(0, 1)
    with torch.no_grad():
        shown = estimated_noise_map(model, y)
        assert torch.allclose(shown, model.estimate_noise_map(y), rtol=1e-6, atol=0)
        local = estimated_noise_map(model, y, per_pixel=True)
        assert torch.allclose(local, model.estimator(y), atol=1e-6)
        assert float(local.std()) > 1e-4  # the local map varies; the one shown does not
        assert float((shown.amax(dim=(1, 2, 3)) - shown.amin(dim=(1, 2, 3))).max()) == 0.0


# ------------------------------------------------------- denoise --json / --save-noise-map


def _run_cli(capsys, *argv) -> tuple[int, str, str]:
    from filterscope.cli import main as cli_main

    code = cli_main.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rgb_png(path):
    from filterscope.io import write_image

    image = np.random.default_rng(0).random((37, 31, 3), dtype=np.float32)
    write_image(path, image)
    return path


@pytest.fixture
def estimator_model_path(tmp_path):
    return save_model(_tiny(noise_estimator=True).float(), tmp_path / "est.safetensors")


def test_denoise_reports_and_saves_the_estimated_noise_map(tmp_path, estimator_model_path, capsys):
    from filterscope.inference import estimated_noise_map
    from filterscope.io import read_image

    source = _rgb_png(tmp_path / "noisy.png")
    out, report, saved = tmp_path / "out.png", tmp_path / "r.json", tmp_path / "map.png"
    code, _, err = _run_cli(
        capsys, "denoise", source, "-o", out, "--model", estimator_model_path,
        "--json", report, "--save-noise-map", saved, "--precision", "float32", "-q",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(report.read_text())["files"][0]["noise_map_255"]
    model = load_checkpoint(estimator_model_path)
    image, _ = read_image(source)
    y = torch.from_numpy(image).permute(2, 0, 1)[None]
    level = estimated_noise_map(model, y)
    with torch.no_grad():
        assert torch.allclose(level, model.estimate_noise_map(y), atol=1e-6)
        # tiles give the whole-image map: the estimator's radius is their overlap
        assert torch.allclose(estimated_noise_map(model, y, tile=16), level, atol=1e-6)
    assert summary["mean"] == pytest.approx(255 * float(level.mean()), rel=1e-5)
    assert summary["min"] <= summary["mean"] <= summary["max"]
    stored, _ = read_image(saved)
    assert stored.shape == (37, 31, 1)
    assert np.abs(stored[..., 0] - level[0, 0].clamp(0, 1).numpy()).max() < 1e-4


@pytest.mark.parametrize("target", ["noisy.png", "out.png", "r.json"])
def test_save_noise_map_refuses_an_input_or_another_output(
    tmp_path, estimator_model_path, capsys, target
):
    source = _rgb_png(tmp_path / "noisy.png")
    code, _, err = _run_cli(
        capsys, "denoise", source, "-o", tmp_path / "out.png", "--model", estimator_model_path,
        "--json", tmp_path / "r.json", "--save-noise-map", tmp_path / target, "-q",
    )  # fmt: skip
    assert code == 2 and err.startswith("filterscope: error:") and err.count("\n") == 1
    assert not (tmp_path / "out.png").exists()


def test_save_noise_map_needs_one_input_and_a_model_with_an_estimator(
    tmp_path, estimator_model_path, capsys
):
    first, second = _rgb_png(tmp_path / "a.png"), _rgb_png(tmp_path / "b.png")
    code, _, err = _run_cli(
        capsys, "denoise", first, second, "-o", tmp_path / "out",
        "--model", estimator_model_path, "--save-noise-map", tmp_path / "m.png", "-q",
    )  # fmt: skip
    assert code == 2 and "one input image" in err
    plain = save_model(_tiny().float(), tmp_path / "plain.safetensors")
    code, _, err = _run_cli(
        capsys, "denoise", first, "-o", tmp_path / "o.png", "--model", plain,
        "--save-noise-map", tmp_path / "m.png", "-q",
    )  # fmt: skip
    assert code == 2 and "estimates no noise map" in err and not (tmp_path / "m.png").exists()
    assert not (tmp_path / "o.png").exists()  # refused before any work


@pytest.mark.parametrize("bad", ["x", b"1", [0.1, "a"], object()])
def test_noise_level_map_refuses_what_is_not_a_number(bad):
    from filterscope.errors import InputError

    with pytest.raises(InputError, match="sigma: expected a number"):
        noise_level_map(torch.zeros(1, 1, 5, 7), bad)


def test_noise_level_map_takes_numpy_numbers():
    import numpy as np

    y = torch.zeros(1, 1, 5, 7)
    assert torch.equal(noise_level_map(y, np.float32(0.25)), torch.full((1, 1, 5, 7), 0.25))
    assert torch.equal(noise_level_map(y, np.array([0.25])), torch.full((1, 1, 5, 7), 0.25))


# ------------------------------------------------------------------- analyze noise-map


def test_analyze_noise_map_shows_the_level_fed_and_the_local_map():
    from filterscope.analysis import analyze_noise_map

    model = _tiny(noise_estimator=True, pooled_noise_map=True).float()
    x = torch.rand(1, 3, 37, 31, generator=torch.Generator().manual_seed(3))
    report = analyze_noise_map(model, x, sigma=0.0)
    assert torch.equal(report.y, x)  # σ = 0: the image is taken as it is
    with torch.no_grad():
        level = float(model.image_noise_level(x)[0])
        assert torch.allclose(report.local, model.estimator(x), atol=1e-6)
    assert float(report.fed.amin()) == pytest.approx(level, rel=1e-6)
    assert float(report.fed.amax()) == pytest.approx(level, rel=1e-6)
    payload = report.to_json()
    assert payload["noise_map_255"]["mean"] == pytest.approx(255 * level, rel=1e-5)
    assert payload["local_map_255"]["min"] < payload["local_map_255"]["max"]
    assert len(report.summary()) == 2
    noisy = analyze_noise_map(model, x, sigma=10 / 255, seed=4)
    assert float((noisy.y - x).std()) == pytest.approx(10 / 255, rel=0.1)


def test_analyze_noise_map_refuses_a_model_without_an_estimator():
    from filterscope.analysis import analyze_noise_map

    with pytest.raises(InputError, match="no noise-map estimator"):
        analyze_noise_map(_tiny().float(), torch.rand(1, 3, 9, 9), sigma=0.0)


def test_analyze_noise_map_command(tmp_path, estimator_model_path, capsys):
    image = _rgb_png(tmp_path / "photo.png")
    report = tmp_path / "map.json"
    code, out, err = _run_cli(
        capsys, "analyze", "noise-map", "--model", estimator_model_path, "--image", image,
        "--sigma", "0", "--json", report,
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(report.read_text())
    assert payload["command"] == "analyze noise-map" and "noise_map_255" in payload
    assert "noise map fed to the network" in out
    # An existing output is refused without --force, in one line, and kept.
    before = report.read_text()
    code, _, err = _run_cli(
        capsys, "analyze", "noise-map", "--model", estimator_model_path, "--image", image,
        "--sigma", "0", "--json", report,
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and report.read_text() == before


def test_analyze_noise_map_plot(tmp_path, estimator_model_path, capsys):
    pytest.importorskip("matplotlib")
    image = _rgb_png(tmp_path / "photo.png")
    code, _, err = _run_cli(
        capsys, "analyze", "noise-map", "--model", estimator_model_path, "--image", image,
        "--sigma", "15", "--json", tmp_path / "map.json", "--plot",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "map.png").stat().st_size > 1000


# ------------------------------------------------------- the map that ran


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("pooled", [False, True])
def test_the_run_gives_back_the_noise_map_its_network_read(precision, pooled):
    """Told the map a blind run gives back, the prepared network repeats its output bit
    for bit; the float32 estimate of the same map does not do that for bfloat16.
    36×28: sides on the network's stride grid, so one tile is the whole image and the
    whole-image call below sees what the tiled run saw."""
    from filterscope.inference import _run_tiled, estimated_noise_map, prepare_model

    model = _tiny(noise_estimator=True, pooled_noise_map=pooled).float()
    y = _image()[..., :36, :28].float().clamp(0, 1)
    prepared = prepare_model(model, precision=precision)
    options = {"in_channels": 3, "tile": 64, "overlap": 8, "batch_pixels": 1 << 20}
    run = _run_tiled(prepared, y, progress=False, keep_noise_map=True, **options)
    assert run.noise_map.shape == (2, 1, 36, 28) and run.tiles == 1
    with torch.inference_mode():
        assert torch.equal(prepared(y, run.noise_map), run.estimate)
        float32_map = estimated_noise_map(model, y)
        assert torch.allclose(run.noise_map, float32_map, rtol=2e-2, atol=0)
        if precision == "bfloat16" and not pooled:
            assert not torch.equal(run.noise_map, float32_map)
            assert not torch.equal(prepared(y, float32_map), run.estimate)
    if pooled:  # one level per image
        spread = run.noise_map.amax(dim=(1, 2, 3)) - run.noise_map.amin(dim=(1, 2, 3))
        assert float(spread.max()) == 0
    assert _run_tiled(prepared, y, progress=False, **options).noise_map is None


def test_the_map_of_a_tiled_ensembled_run_is_the_untransformed_pass_map():
    from filterscope.ensemble import SelfEnsemble
    from filterscope.inference import _run_tiled, estimated_noise_map

    model = _tiny(noise_estimator=True).float()
    y = torch.rand(1, 3, 181, 163, generator=torch.Generator().manual_seed(2))
    options = {"in_channels": 3, "overlap": model.receptive_radius, "batch_pixels": 1 << 20}
    whole = _run_tiled(model, y, tile=256, progress=False, keep_noise_map=True, **options)
    tiled = _run_tiled(
        SelfEnsemble(model), y, tile=40, progress=False, keep_noise_map=True, **options
    )
    assert tiled.tiles > 1
    assert torch.allclose(tiled.noise_map, whole.noise_map, atol=1e-6)
    assert torch.allclose(whole.noise_map, estimated_noise_map(model, y), atol=1e-6)


def test_denoise_told_sigma_reports_the_level_it_was_told(tmp_path, estimator_model_path, capsys):
    source = _rgb_png(tmp_path / "noisy.png")
    report = tmp_path / "r.json"
    code, _, err = _run_cli(
        capsys, "denoise", source, "-o", tmp_path / "out.png", "--model", estimator_model_path,
        "--sigma", "12", "--json", report, "-q",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(report.read_text())["files"][0]["noise_map_255"]
    assert summary == pytest.approx({"mean": 12.0, "min": 12.0, "max": 12.0}, rel=1e-6)
