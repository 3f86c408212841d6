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


def _committed_quality() -> dict:
    """``benchmarks/results/denoiser_quality.json``; skips the test where it is absent."""
    import json
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "benchmarks/results/denoiser_quality.json"
    if not results.exists():
        pytest.skip("benchmarks/results/denoiser_quality.json not committed")
    return json.loads(results.read_text())


def test_default_gray_model_beats_the_old_default_side_by_side():
    """The committed side-by-side benchmark (same images, same noise) ranks the default
    above the previous default at every sigma it measured."""
    table = _committed_quality()["gray"]["BSD68"]
    rows = {row["method"]: row for row in table["rows"]}
    default = rows[f"{zoo.DEFAULT_MODELS[1]} (blind)"]
    old = rows["bf-dncnn-gray (old default)"]
    sigmas = [str(s) for s in table["sigmas_255"]]
    assert all(default[s] > old[s] for s in sigmas)


def test_default_color_model_beats_the_old_default_on_every_set():
    """The committed colour benchmark ranks the colour default above the previous colour
    default on every set and sigma it measured, on at least 6 images per set."""
    tables = _committed_quality()["color"]
    assert set(tables) == {"CBSD68", "Kodak24", "McMaster"}
    for table in tables.values():
        rows = {row["method"]: row for row in table["rows"]}
        default = rows[f"{zoo.DEFAULT_MODELS[3]} (blind)"]
        old = rows["bf-dncnn-color (old default)"]
        assert table["images"] >= 6
        assert all(default[str(s)] > old[str(s)] for s in table["sigmas_255"])


@pytest.mark.parametrize("channels", [1, 3])
def test_default_model_card_quotes_the_committed_side_by_side(channels):
    """The card's scores are the committed benchmark's, set by set (same image count,
    same numbers): a model scored again must have its card refreshed
    (``scripts/refresh_card_scores.py``)."""
    name = zoo.DEFAULT_MODELS[channels]
    part = _committed_quality()["gray" if channels == 1 else "color"]
    card_sets = SHIPPED[name]["metrics"]["side_by_side"]["sets"]
    assert set(card_sets) == set(part)
    for set_name, table in part.items():
        rows = {row["method"]: row for row in table["rows"]}
        card = card_sets[set_name]
        assert (card["images"], card["command"]) == (table["images"], table["command"])
        for mode, scores in card["psnr_by_sigma_255"].items():
            measured = {k: v for k, v in rows[f"{name} ({mode})"].items() if k != "method"}
            assert scores == measured, (set_name, mode)


def test_default_for_rgb_is_the_color_model_when_installed():
    expected = zoo.DEFAULT_MODELS[3] if zoo.DEFAULT_MODELS[3] in SHIPPED else zoo.DEFAULT_MODELS[1]
    assert zoo.default_model_name(3) == expected
    assert zoo.default_model_name(1) == zoo.DEFAULT_MODELS[1]


def test_load_checkpoint_takes_a_shipped_name(tmp_path, monkeypatch):
    import filterscope as fs
    from filterscope.errors import CheckpointError
    from filterscope.models.checkpoints import save_pickle

    name = "bf-dncnn-gray"
    if name not in SHIPPED:
        pytest.skip(f"{name} is not installed")
    by_name = fs.load_checkpoint(name)
    shipped = zoo.load_model(name)
    registry = fs.load_model(name)
    assert by_name.arch == shipped.arch and by_name.card == shipped.card
    for key, value in shipped.state_dict().items():
        assert torch.equal(by_name.state_dict()[key], value)
        assert torch.equal(registry.state_dict()[key], value)
    # A file of that name wins over the shipped model, as in fs.load_model.
    monkeypatch.chdir(tmp_path)
    own = fs.create_model("dncnn", num_layers=3, hidden=4, bias=False)
    save_pickle({"arch": "dncnn", "config": own.config, "state_dict": own.state_dict()}, name)
    assert fs.load_checkpoint(name).config == own.config != shipped.config
    # A misspelt name fails and lists what ships; a path is never a shipped name.
    with pytest.raises(CheckpointError, match=r"bf-dncnn-grey: .*shipped: .*bf-dncnn-gray"):
        fs.load_checkpoint("bf-dncnn-grey")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        fs.load_checkpoint(f"sub/{name}")
