"""The one SURE implementation (filterscope.sure) shared by NTK twicing and DIP."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from filterscope import sure
from filterscope.errors import InputError

fit = importlib.import_module("filterscope.dip.fit")
twicing = importlib.import_module("filterscope.ntk.twicing")


def test_ntk_and_dip_use_the_shared_functions():
    for name in ("PROBE_SEED", "check_sigma", "draw_probe", "sure_estimate"):
        assert getattr(twicing, name) is getattr(sure, name)
    for name in ("PROBE_SEED", "check_sigma", "draw_probe", "default_epsilon", "sure_estimate"):
        assert getattr(fit, name) is getattr(sure, name)


def test_identity_denoiser_has_sure_sigma_squared():
    # f(y) = y: residual 0, divergence ||b||^2 ~ n, so SURE ~ sigma^2, its true MSE
    y = torch.rand(1, 1, 37, 31, generator=torch.Generator().manual_seed(0))
    out = sure.monte_carlo_sure(lambda v: v, y, sigma=0.1, generator=4)
    n = y.numel()
    assert out["divergence"] == pytest.approx(n, rel=5 * math.sqrt(2 / n))
    assert out["sure"] == pytest.approx(0.01, rel=10 * math.sqrt(2 / n))


def test_probe_is_reproducible_and_not_the_default_noise_stream():
    a = sure.draw_probe((3, 5))
    assert torch.equal(a, sure.draw_probe((3, 5), generator=sure.PROBE_SEED))
    assert not torch.equal(a, sure.draw_probe((3, 5), generator=0))
    assert a.dtype == torch.float64


@pytest.mark.parametrize("sigma", [None, 0.0, -0.1, float("nan"), "0.1", True])
def test_bad_sigma_is_refused(sigma):
    with pytest.raises(InputError, match="sigma"):
        sure.check_sigma(sigma)


def test_zero_sigma_allowed_where_asked():
    sure.check_sigma(0.0, allow_zero=True)
    with pytest.raises(InputError, match=">= 0"):
        sure.check_sigma(-1.0, allow_zero=True)
