"""Tests of the fast inference path (norm folding, channels-last, bfloat16)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from filterscope import create_model
from filterscope.models import list_models
from filterscope.models.fast import fold_norm_into_conv, optimize_for_inference
from filterscope.nn import BFBatchNorm2d

ARCHS = list_models()
SMALL = {
    "dncnn": {"num_layers": 8, "hidden": 16},
    "rcnn": {"hidden": 16},
    "sdensenet": {"hidden": 16},
}

# bfloat16 keeps 8 significant bits: about 0.4% per rounding, and the rounding errors of
# the layers partly add up (measured: 3e-4 to 1e-2 here). Relative L2 error allowed.
BF16_TOLERANCE = 3e-2


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm and bias non-trivial values, so folding is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (BFBatchNorm2d, nn.BatchNorm2d)):
                module.running_var.copy_(0.5 + 1.5 * torch.rand(module.num_features, generator=gen))
                module.weight.copy_(0.5 + torch.rand(module.num_features, generator=gen))
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.num_features, generator=gen))
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.bias is not None:
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=gen))
    return model.eval()


def make(arch: str, bias: bool, in_channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, bias=bias, in_channels=in_channels, **SMALL.get(arch, {}))
    return randomize(model)


def noisy(channels: int = 1, batch: int = 2, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, 37, 31, generator=gen)
    return x + 0.1 * torch.randn(x.shape, generator=gen)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("arch", ARCHS)
def test_float32_equals_original(arch, bias):
    model = make(arch, bias)
    fast = optimize_for_inference(model, precision="float32")
    y = noisy()
    with torch.no_grad():
        expected = model(y)
        out = fast(y)
    assert out.shape == y.shape and out.dtype == torch.float32 and out.is_contiguous()
    assert relative_error(out, expected) < 1e-5


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("arch", ARCHS)
def test_bfloat16_close_to_float32(arch, bias):
    model = make(arch, bias)
    fast = optimize_for_inference(model)
    y = noisy()
    with torch.no_grad():
        out = fast(y)
        expected = model(y)
    assert out.shape == y.shape and out.dtype == torch.float32
    assert relative_error(out, expected) < BF16_TOLERANCE


@pytest.mark.parametrize("arch", ARCHS)
def test_bias_free_stays_bias_free(arch):
    fast = optimize_for_inference(make(arch, bias=False), precision="float32")
    for module in fast.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            assert module.bias is None
    y = noisy()
    with torch.no_grad():
        assert relative_error(fast(3.7 * y), 3.7 * fast(y)) < 1e-5


def test_dncnn_norms_are_folded_away():
    fast = optimize_for_inference(make("dncnn", bias=False))
    assert not any(isinstance(m, (BFBatchNorm2d, nn.BatchNorm2d)) for m in fast.modules())
    # the first layer sees the image itself and stays float32
    assert fast.first.weight.dtype == torch.float32
    assert all(p.dtype == torch.bfloat16 for p in fast.chain.parameters())
    assert not any(p.requires_grad for p in fast.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_original_is_not_modified(arch):
    model = make(arch, bias=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    strides = {k: v.stride() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)
    assert model.training and not fast.training
    for key, value in model.state_dict().items():
        assert value.dtype == before[key].dtype
        assert value.stride() == strides[key]
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in model.parameters())


def test_rgb_and_attributes():
    model = make("dncnn", bias=False, in_channels=3)
    fast = optimize_for_inference(model)
    assert fast.in_channels == 3 and fast.arch == "dncnn" and fast.bias is False
    assert fast.receptive_radius == model.receptive_radius
    y = noisy(channels=3, batch=1)
    with torch.no_grad():
        assert relative_error(fast(y), model(y)) < BF16_TOLERANCE
    with pytest.raises(ValueError):
        fast(noisy(channels=1))


def test_fold_batchnorm_into_conv_without_bias():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    norm = randomize(nn.Sequential(nn.BatchNorm2d(6)))[0]
    folded = fold_norm_into_conv(conv, norm)
    assert conv.bias is None and folded.bias is not None
    x = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        assert relative_error(folded(x), norm(conv(x))) < 1e-6


def test_invalid_precision():
    model = make("dncnn", bias=False)
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(model, precision="float16")
    with pytest.raises(TypeError):
        optimize_for_inference(optimize_for_inference(model))


def test_gradients_flow_through_fast_model():
    # Analysis code differentiates denoisers; the fused (forward-only) path must step aside.
    fast = optimize_for_inference(make("dncnn", bias=False), precision="float32")
    y = noisy(batch=1).requires_grad_(True)
    fast(y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
