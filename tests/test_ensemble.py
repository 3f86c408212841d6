"""Self-ensemble: equivariance, homogeneity, and the identity for equivariant models."""

from __future__ import annotations

import pytest
import torch

import filterscope
from filterscope.ensemble import SYMMETRIES, SelfEnsemble, _apply, self_ensemble


def _small_drunet(in_channels: int = 1):
    torch.manual_seed(0)
    return filterscope.create_model(
        "drunet", in_channels=in_channels, widths=[4, 8, 8], blocks=1
    ).eval()


def test_the_eight_symmetries_are_distinct_and_undone():
    y = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    images = [_apply(y, turns, flip) for turns, flip in SYMMETRIES]
    assert len({tuple(image.flatten().tolist()) for image in images}) == 8
    torch.testing.assert_close(self_ensemble(lambda x, sigma: x, y), y, rtol=0, atol=1e-6)


def test_ensemble_is_equivariant_where_the_model_is_not():
    model = _small_drunet()
    y = torch.rand(1, 1, 37, 31, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        turned = torch.rot90(y, 1, dims=(-2, -1))
        raw_gap = (model(turned) - torch.rot90(model(y), 1, dims=(-2, -1))).abs().max()
        ensemble = SelfEnsemble(model)
        gap = (ensemble(turned) - torch.rot90(ensemble(y), 1, dims=(-2, -1))).abs().max()
    assert raw_gap > 1e-4  # the network alone is not rotation-equivariant
    assert gap < 1e-5


@pytest.mark.parametrize("alpha", [0.5, 3.0])
def test_ensemble_of_a_bias_free_model_is_homogeneous(alpha):
    model = SelfEnsemble(_small_drunet(3)).double()
    y = torch.rand(2, 3, 37, 31, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.0], dtype=torch.float64)
    with torch.no_grad():
        base = model(y, sigma)
        scaled = model(alpha * y, alpha * sigma)
    assert float((scaled - alpha * base).norm() / (alpha * base).norm()) < 1e-10


def test_wrapper_passes_the_model_attributes_through():
    model = _small_drunet()
    ensemble = SelfEnsemble(model)
    assert ensemble.receptive_radius == model.receptive_radius
    assert ensemble.in_channels == 1 and ensemble.bias is False
