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


def _mean_bsd68_psnr(card: dict) -> float | None:
    scores = card.get("metrics", {}).get("bsd68")
    if not scores:
        return None
    values = [row["psnr"] for row in scores["per_sigma"]]
    return sum(values) / len(values)


def test_default_gray_model_is_the_best_shipped_gray_model():
    default = zoo.DEFAULT_MODELS[1]
    scored = {
        name: _mean_bsd68_psnr(card)
        for name, card in SHIPPED.items()
        if card.get("in_channels", 1) == 1 or "gray" in name
    }
    scored = {name: value for name, value in scored.items() if value is not None}
    assert default in scored
    assert scored[default] == max(scored.values())


def test_default_for_rgb_is_the_color_model_when_installed():
    expected = zoo.DEFAULT_MODELS[3] if zoo.DEFAULT_MODELS[3] in SHIPPED else zoo.DEFAULT_MODELS[1]
    assert zoo.default_model_name(3) == expected
    assert zoo.default_model_name(1) == zoo.DEFAULT_MODELS[1]
