"""Every registered architecture: shapes, gradients, bias-freeness, RCNN stages, UNet sizes, I/O."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import filterscope
from filterscope.models import RecurrentCNN, UNet
from filterscope.models.checkpoints import load_checkpoint, save_model
from filterscope.nn import BFBatchNorm2d

MODELS = filterscope.list_models(kind="architecture")
BIAS = [False, True]
CHANNELS = [1, 3]
HEIGHT, WIDTH = 37, 31  # both odd, and different, to catch transposed or dropped rows

# Smallest options each constructor allows that still exercise every kind of layer;
# an architecture registered later without an entry here is tested at its defaults.
SMALL_OPTIONS = {
    "dncnn": {"num_layers": 4, "hidden": 8},
    "drunet": {"widths": [4, 8, 8], "blocks": 1},
    "rcnn": {"num_hidden": 1, "hidden": 8},
    "sdensenet": {"num_blocks": 2, "layers_per_block": 3, "hidden": 8},
    "unet": {},
}

all_variants = pytest.mark.parametrize(
    "name, bias, in_channels",
    [(n, b, c) for n in MODELS for b in BIAS for c in CHANNELS],
    ids=lambda v: str(v),
)


def small_model(name: str, *, bias: bool, in_channels: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # weight initialisation draws from the global generator
    return filterscope.create_model(
        name, bias=bias, in_channels=in_channels, **SMALL_OPTIONS.get(name, {})
    )


def noisy_batch(in_channels: int, *, dtype=torch.float32, batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, in_channels, HEIGHT, WIDTH, generator=g, dtype=dtype)
    return x + 0.1 * torch.randn(x.shape, generator=g, dtype=dtype)


def randomise_additive_terms(model: nn.Module, *, seed: int = 2) -> int:
    """Give every bias and batch-norm shift/mean a non-zero random value.

    Fresh models have zero biases (and BatchNorm running means of 0), which makes even
    a ``bias=True`` network homogeneous; the checks below must be shown to fail once the
    additive terms are live. Bias-free norms get random variances (scales only). Returns
    how many modules received additive terms.
    """
    g = torch.Generator().manual_seed(seed)
    changed = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.bias is not None:
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=g))
                changed += 1
            elif isinstance(module, nn.BatchNorm2d):
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=g))
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=g))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=g))
                changed += 1
            elif isinstance(module, BFBatchNorm2d):
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=g))
    return changed


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm() / b.norm()).detach())


# --------------------------------------------------------------------------- shapes, gradients


@all_variants
def test_forward_shape_and_finite(name, bias, in_channels):
    model = small_model(name, bias=bias, in_channels=in_channels).eval()
    y = noisy_batch(in_channels)
    with torch.no_grad():
        x_hat = model(y)
    assert x_hat.shape == y.shape
    assert x_hat.dtype == torch.float32
    assert torch.isfinite(x_hat).all()


@pytest.mark.parametrize("name", MODELS)
def test_default_size_forward_shape(name):
    model = filterscope.create_model(name).eval()
    y = noisy_batch(1, batch=1)
    with torch.no_grad():
        x_hat = model(y)
    assert x_hat.shape == y.shape
    assert torch.isfinite(x_hat).all()


@all_variants
def test_gradients_reach_every_parameter(name, bias, in_channels):
    model = small_model(name, bias=bias, in_channels=in_channels).train()
    y = noisy_batch(in_channels)
    loss = (model(y) - y.clamp(0, 1)).pow(2).mean()
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"


@pytest.mark.parametrize("name", MODELS)
def test_wrong_channel_count_is_rejected(name):
    model = small_model(name, bias=False, in_channels=1).eval()
    with pytest.raises(ValueError, match="expects"):
        model(noisy_batch(3))


def test_create_model_unknown_name_raises():
    with pytest.raises(KeyError, match="unknown architecture"):
        filterscope.create_model("no-such-net")


def test_create_model_rejects_bad_channel_count():
    with pytest.raises(ValueError, match="in_channels"):
        filterscope.create_model("dncnn", in_channels=2)


def test_every_model_has_a_bias_option_and_records_config():
    for name in MODELS:
        for bias in BIAS:
            model = small_model(name, bias=bias, in_channels=1)
            assert model.arch == name
            assert model.config["bias"] is bias
            assert model.config["in_channels"] == 1


# --------------------------------------------------------------------------- bias-freeness


def _homogeneity_errors(model: nn.Module, y: torch.Tensor) -> list[float]:
    with torch.no_grad():
        out = model(y)
        return [relative_error(model(alpha * y), alpha * out) for alpha in (0.5, 3.0)]


def _euler_error(model: nn.Module, y: torch.Tensor) -> float:
    # Euler's theorem for a degree-1 homogeneous map: J(y) y = f(y); one jvp gives both.
    out, jy = torch.func.jvp(model, (y,), (y,))
    return relative_error(jy, out)


# torch's first forward-mode AD call scripts its decompositions with the deprecated
# torch.jit.script; that warning is torch's own business.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@all_variants
def test_homogeneity_and_euler_identity(name, bias, in_channels):
    """Bias-free: f(ay) = a f(y) and J(y) y = f(y); with live additive terms both fail."""
    model = small_model(name, bias=bias, in_channels=in_channels).double().eval()
    # For bias-free models this only changes scales (there is nothing additive).
    changed = randomise_additive_terms(model)
    y = noisy_batch(in_channels, dtype=torch.float64, batch=1)
    homogeneity = _homogeneity_errors(model, y)
    euler = _euler_error(model, y)
    if bias:
        assert changed > 0
        assert min(homogeneity) > 1e-3, homogeneity
        assert euler > 1e-3, euler
    else:
        assert changed == 0
        assert max(homogeneity) < 1e-6, homogeneity
        assert euler < 1e-6, euler


@all_variants
def test_bias_free_models_have_no_additive_parameters(name, bias, in_channels):
    model = small_model(name, bias=bias, in_channels=in_channels)
    additive = [n for n, _ in model.named_parameters() if n.endswith(".bias")]
    additive += [n for n, _ in model.named_buffers() if n.endswith("running_mean")]
    if bias:
        assert additive
    else:
        assert additive == []


def test_freshly_initialised_biases_are_zero():
    # Why the test above randomises them: at initialisation the additive terms vanish.
    model = small_model("dncnn", bias=True, in_channels=1).double().eval()
    y = noisy_batch(1, dtype=torch.float64)
    assert max(_homogeneity_errors(model, y)) < 1e-6


# --------------------------------------------------------------------------- RCNN stages


def _stage_counts(model: RecurrentCNN, y: torch.Tensor, calls: int) -> list[int]:
    counter = {"n": 0}

    def hook(*_):
        counter["n"] += 1

    handle = model.cnn.register_forward_hook(hook)
    counts = []
    try:
        with torch.no_grad():
            for _ in range(calls):
                counter["n"] = 0
                model(y)
                counts.append(counter["n"])
    finally:
        handle.remove()
    return counts


def test_rcnn_train_mode_draws_stages_from_its_generator():
    options = SMALL_OPTIONS["rcnn"]
    first = RecurrentCNN(seed=7, **options).train()
    second = RecurrentCNN(seed=7, **options).train()
    second.load_state_dict(first.state_dict())
    y = noisy_batch(1, batch=1)
    with torch.no_grad():
        for _ in range(6):
            assert torch.equal(first(y), second(y))

    counts = _stage_counts(RecurrentCNN(seed=7, **options).train(), y, calls=24)
    assert set(counts) <= {1, 2, 3, 4}
    assert len(set(counts)) > 1, "train mode always ran the same number of stages"
    assert counts == _stage_counts(RecurrentCNN(seed=7, **options).train(), y, calls=24)


def test_rcnn_eval_mode_runs_four_stages_deterministically():
    model = RecurrentCNN(seed=3, **SMALL_OPTIONS["rcnn"]).eval()
    y = noisy_batch(1, batch=1)
    assert _stage_counts(model, y, calls=5) == [4] * 5
    with torch.no_grad():
        assert torch.equal(model(y), model(y))
        assert torch.equal(model(y), model(y, stages=4))


# --------------------------------------------------------------------------- UNet sizes


@pytest.mark.parametrize("size", [(37, 31), (36, 31), (37, 30), (2, 2), (3, 5)])
def test_unet_keeps_odd_sizes(size):
    model = UNet().eval()
    y = torch.rand(1, 1, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model(y).shape == y.shape


def test_unet_does_not_drop_the_last_row_or_column():
    model = UNet().eval()
    y = noisy_batch(1, batch=1).requires_grad_(True)
    out = model(y)
    # The bottom-right output pixel must depend on the bottom-right input pixel, i.e.
    # the odd row/column is processed (padded), not thrown away.
    (grad,) = torch.autograd.grad(out[0, 0, -1, -1], y)
    assert grad[0, 0, -1, -1] != 0
    assert grad[0, 0, -1, :].abs().sum() > 0 and grad[0, 0, :, -1].abs().sum() > 0


# --------------------------------------------------------------------------- save / load


@all_variants
def test_save_load_round_trip_is_exact(name, bias, in_channels, tmp_path):
    model = small_model(name, bias=bias, in_channels=in_channels).eval()
    randomise_additive_terms(model)
    path = save_model(model, tmp_path / "model.safetensors", card={"description": "test"})
    assert path.exists() and path.with_suffix(".json").exists()

    loaded = load_checkpoint(path)
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert not loaded.training
    assert loaded.card["description"] == "test"
    y = noisy_batch(in_channels)
    with torch.no_grad():
        assert torch.equal(loaded(y), model(y))


def test_save_model_refuses_to_overwrite(tmp_path):
    model = small_model("dncnn", bias=False, in_channels=1)
    path = save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(FileExistsError):
        save_model(model, path)
    save_model(model, path, overwrite=True)


# --------------------------------------------------------------------------- blind estimate


def _drunet_with_blind_estimate(in_channels: int = 1) -> nn.Module:
    torch.manual_seed(3)
    return filterscope.create_model(
        "drunet", in_channels=in_channels, widths=[4, 8, 8], blocks=1, blind_estimate=True
    ).double()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("in_channels", [1, 3])
def test_drunet_blind_estimate_is_non_blind_with_the_estimate_and_stays_bias_free(in_channels):
    model = _drunet_with_blind_estimate(in_channels).eval()
    y = noisy_batch(in_channels, dtype=torch.float64, batch=2)
    estimate = model.image_noise_level(y)
    assert estimate.shape == (2,) and bool((estimate > 0).all())
    with torch.no_grad():
        torch.testing.assert_close(model(y), model(y, estimate), rtol=0, atol=0)
        # The trained blind mode (σ = 0) is another function: the option matters.
        assert relative_error(model(y), model(y, 0.0)) > 1e-3
    assert max(_homogeneity_errors(model, y[:1])) < 1e-6
    assert _euler_error(model, y[:1]) < 1e-6


def test_drunet_without_blind_estimate_runs_its_trained_blind_mode():
    model = small_model("drunet", bias=False, in_channels=1).double().eval()
    assert model.image_noise_level(noisy_batch(1, dtype=torch.float64)) is None
    y = noisy_batch(1, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(y), model(y, 0.0), rtol=0, atol=0)


def test_drunet_blind_estimate_runs_the_trained_blind_mode_on_images_too_small_to_estimate():
    model = _drunet_with_blind_estimate().eval()
    y = noisy_batch(1, dtype=torch.float64)[..., :5, :7]
    assert model.image_noise_level(y) is None
    with torch.no_grad():
        torch.testing.assert_close(model(y), model(y, 0.0), rtol=0, atol=0)
