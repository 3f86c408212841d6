"""``fs.make_bias_free`` and ``fs.check_homogeneous`` (Mohan et al. 2020's recipe)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import filterscope as fs
from filterscope.errors import UnsupportedLayerError
from filterscope.nn import BFBatchNorm2d

ALPHAS = (0.5, 3.0)


class ConvBNNet(nn.Module):
    """A small residual denoiser with conv biases, batch norms and a linear layer."""

    def __init__(self, channels: int = 1, hidden: int = 6):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(hidden, channels, 3, padding=1),
        )
        self.gate = nn.Linear(31, 31)  # along the width, to cover linear layers

    def forward(self, y, sigma=None):
        return y - self.gate(self.body(y))


def trained_looking(net: nn.Module) -> nn.Module:
    """Non-trivial norm statistics and biases, as after training."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.5, 0.5, generator=generator)
            elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and (
                module.bias is not None
            ):
                module.bias.uniform_(-0.5, 0.5, generator=generator)
    return net.eval()


def test_make_bias_free_gives_a_homogeneous_network_in_float64():
    original = trained_looking(ConvBNNet())
    before = fs.check_homogeneous(original, alphas=ALPHAS)
    assert not before.passed and before.max_error > 1e-2  # the original is not homogeneous
    converted = fs.make_bias_free(original)
    after = fs.check_homogeneous(converted, alphas=ALPHAS)
    assert after.passed and after.max_error < 1e-5, after.to_json()
    assert after.alphas == ALPHAS and len(after.errors) == 2


def test_the_copy_keeps_scales_and_drops_only_constants():
    original = trained_looking(ConvBNNet())
    converted = fs.make_bias_free(original)
    assert all(m.bias is not None for m in original.modules() if isinstance(m, nn.Conv2d))
    assert all(m.bias is None for m in converted.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    norms = [m for m in converted.modules() if isinstance(m, BFBatchNorm2d)]
    assert len(norms) == 2 and not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    source = original.body[1]
    assert torch.equal(norms[0].weight, source.weight)
    assert torch.equal(norms[0].running_var, source.running_var)
    assert torch.equal(converted.body[0].weight, original.body[0].weight)
    # the copy is trainable like the original: one step runs and changes the weights
    converted.train()
    y = torch.rand(4, 1, 37, 31)
    loss = (converted(y) - y).pow(2).mean()
    loss.backward()
    assert converted.body[0].weight.grad is not None


def test_a_registered_architecture_with_bias_becomes_its_bias_free_variant(tmp_path):
    net = trained_looking(fs.create_model("dncnn", bias=True, num_layers=4, hidden=8))
    assert not fs.check_homogeneous(net).passed
    converted = fs.make_bias_free(net)
    assert fs.check_homogeneous(converted).passed
    assert converted.bias is False and converted.config["bias"] is False
    # it saves and reloads as a bias-free DnCNN (the layout the trainer builds)
    path = fs.save_model(converted, tmp_path / "bf.safetensors")
    reloaded = fs.load_checkpoint(path)
    y = torch.rand(1, 1, 37, 31)
    with torch.no_grad():
        assert torch.allclose(reloaded(y), converted(y), atol=1e-6)


@pytest.mark.parametrize(
    "layer, message",
    [
        (nn.GroupNorm(2, 6), "body.1 .GroupNorm. subtracts a mean"),
        (nn.Sigmoid(), "body.1 .Sigmoid. is not positively homogeneous"),
        (nn.GELU(), "body.1 .GELU."),
        (nn.InstanceNorm2d(6, affine=True), "body.1 .InstanceNorm2d."),
    ],
)
def test_layers_that_add_constants_are_refused_by_name(layer, message):
    net = nn.Module()
    net.body = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), layer, nn.Conv2d(6, 1, 3, padding=1))
    with pytest.raises(UnsupportedLayerError, match=message):
        fs.make_bias_free(net)


def test_unknown_layers_with_their_own_parameters_are_refused():
    class Shift(nn.Module):
        def __init__(self):
            super().__init__()
            self.offset = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x + self.offset

    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), Shift())
    with pytest.raises(UnsupportedLayerError, match=r"layer 1 \(Shift\) has parameters \(offset\)"):
        fs.make_bias_free(net)


def test_check_homogeneous_sees_constants_written_in_forward():
    class AddsOne(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)

        def forward(self, y, sigma=None):
            return self.conv(y) + 1.0

    converted = fs.make_bias_free(AddsOne())  # nothing to convert in the layers...
    assert not fs.check_homogeneous(converted).passed  # ...but the check measures it


def test_original_module_is_not_modified():
    original = trained_looking(ConvBNNet())
    state = {k: v.clone() for k, v in original.state_dict().items()}
    fs.make_bias_free(original)
    assert original.state_dict().keys() == state.keys()
    assert all(torch.equal(original.state_dict()[k], v) for k, v in state.items())


def test_plain_sequential_networks_are_checked_and_converted():
    net = trained_looking(
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
    )
    assert not fs.check_homogeneous(net).passed  # called as net(y): no sigma argument
    assert fs.check_homogeneous(fs.make_bias_free(net)).passed
