"""The shipped model zoo: every model loads, its card is complete, the defaults are the best."""

from __future__ import annotations

import pytest
import torch

from filterscope.models import zoo

SHIPPED = zoo.list_shipped()


def test_a_gray_default_ships():
    assert zoo.DEFAULT_MODELS[1] in SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_loads_and_its_card_says_how_it_was_made(name):
    model = zoo.load_model(name)
    card = SHIPPED[name]
    training = card["training"]
    assert training["recipe_file"].startswith("recipes/")
    assert training["command"].startswith("filterscope train --recipe")
    assert len(training["sigma_range_255"]) == 2
    assert card["metrics"], "a shipped model reports what it scores"
    # The card's bias flag is the network's: a bias-free model has no additive constant.
    x = torch.rand(1, model.in_channels, 23, 19)
    with torch.inference_mode():
        scaled = model(3.0 * x)
        plain = model(x)
    if not model.bias:
        torch.testing.assert_close(scaled, 3.0 * plain, rtol=1e-4, atol=1e-5)


def test_default_gray_model_beats_the_old_default_side_by_side():
    """The committed side-by-side benchmark (same images, same noise) ranks the default
    above the previous default at every sigma it measured."""
    import json
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "benchmarks/results/denoiser_quality.json"
    if not results.exists():
        pytest.skip("benchmarks/results/denoiser_quality.json not committed")
    table = json.loads(results.read_text())["gray"]["BSD68"]
    rows = {row["method"]: row for row in table["rows"]}
    default = rows[f"{zoo.DEFAULT_MODELS[1]} (blind)"]
    old = rows["bf-dncnn-gray (old default)"]
    sigmas = [str(s) for s in table["sigmas_255"]]
    assert all(default[s] > old[s] for s in sigmas)


def test_default_for_rgb_is_the_color_model_when_installed():
    expected = zoo.DEFAULT_MODELS[3] if zoo.DEFAULT_MODELS[3] in SHIPPED else zoo.DEFAULT_MODELS[1]
    assert zoo.default_model_name(3) == expected
    assert zoo.default_model_name(1) == zoo.DEFAULT_MODELS[1]
