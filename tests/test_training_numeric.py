"""Training's numeric path: ``auto`` resolved per machine (faked CPUs), recorded in the run."""

import json
from pathlib import Path

import pytest

from conftest import make_image_folder, tiny_train_config
from filterscope import machine
from filterscope.errors import InputError
from filterscope.training import TrainConfig, load_recipe, train
from filterscope.training.config import config_from_dict

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))
AVX2_ONLY = frozenset({"sse2", "avx", "avx2"})
AVX512_BF16 = AVX2_ONLY | {"avx512f", "avx512_bf16", "avx512_vnni"}


@pytest.fixture(autouse=True)
def faked_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("FILTERSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(machine, "_channels_last_is_faster", lambda *, backward: False)
    machine.clear_memo()
    yield
    machine.clear_memo()


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_leaves_the_numeric_path_to_the_machine(path):
    config = load_recipe(path)
    assert config.precision == "auto" and config.channels_last == "auto"


def test_explicit_values_win_and_bad_ones_are_named(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: AVX2_ONLY)
    config = config_from_dict({"precision": "bfloat16", "channels_last": True})
    assert config.numeric_path("cpu") == {"precision": "bfloat16", "channels_last": True}
    assert TrainConfig().numeric_path("cpu") == {"precision": "float32", "channels_last": False}
    with pytest.raises(InputError, match="channels_last: must be true, false or auto"):
        config_from_dict({"channels_last": "yes"})
    with pytest.raises(InputError, match="precision: must be auto, float32 or bfloat16"):
        config_from_dict({"precision": "float16"})
    with pytest.raises(InputError, match="channels_last must be a str"):
        config_from_dict({"channels_last": 1})


@pytest.mark.parametrize(("flags", "expected"), [(AVX2_ONLY, "float32"), (AVX512_BF16, "bfloat16")])
def test_auto_run_records_the_path_taken(tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    data = make_image_folder(tmp_path / "data")
    train(
        tiny_train_config(data, steps=2, checkpoint_every=2, val_every=2, tensorboard=False),
        tmp_path / "run",
        progress=False,
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["precision"] == "auto"  # the recipe as asked
    path = config["numeric_path"]
    assert path["chosen"] == {"precision": expected, "channels_last": False}
    assert path["requested"] == {"precision": "auto", "channels_last": "auto"}
    assert path["capability"] == machine.cpu_capability()
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["training"]["numeric_path"]["chosen"]["precision"] == expected
    # a resume on another machine chooses again: the recipe keeps "auto"
    assert 'precision = "auto"' in (tmp_path / "run" / "recipe.toml").read_text()
