"""Training loop: recipes, patch sampling, exact resume, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from filterscope import load_checkpoint
from filterscope.errors import CheckpointError, InputError
from filterscope.training import PatchSampler, TrainConfig, load_recipe, train
from filterscope.training.trainer import learning_rate


def _image_folder(folder: Path, count: int = 3, size: tuple[int, int] = (41, 37)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = (rng.random(size) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder


def _tiny_config(data: Path, **changes) -> TrainConfig:
    values = dict(
        arch="dncnn",
        arch_options={"num_layers": 3, "hidden": 4},
        data_dir=str(data),
        patch_size=16,
        batch_size=4,
        steps=6,
        checkpoint_every=3,
        val_dir=str(data),
        val_images=1,
        val_sigmas=[25.0],
        val_every=3,
        seed=3,
    )
    values.update(changes)
    return TrainConfig(**values)


def test_patch_sampler_is_reproducible_and_bounded(tmp_path):
    data = _image_folder(tmp_path / "data")
    sampler = PatchSampler(data, patch_size=16, channels=1)
    first = sampler.sample(5, torch.Generator().manual_seed(1))
    second = sampler.sample(5, torch.Generator().manual_seed(1))
    assert first.shape == (5, 1, 16, 16)
    assert torch.equal(first, second)
    assert 0.0 <= float(first.min()) and float(first.max()) <= 1.0


def test_learning_rate_schedule_steps_at_milestones():
    config = TrainConfig(steps=100, lr=1e-3, lr_milestones=[0.5, 0.75], lr_gamma=0.5)
    assert learning_rate(config, 0) == pytest.approx(1e-3)
    assert learning_rate(config, 50) == pytest.approx(5e-4)
    assert learning_rate(config, 99) == pytest.approx(2.5e-4)


def test_train_writes_model_card_and_loadable_weights(tmp_path):
    data = _image_folder(tmp_path / "data")
    result = train(_tiny_config(data), tmp_path / "run", progress=False)
    assert result["step"] == 6
    model = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert model.arch == "dncnn" and model.bias is False
    assert model.card["training"]["sigma_range_255"] == [0.0, 55.0]
    assert "val_psnr_25" in model.card["metrics"]["validation"]
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss,lr")


def test_resume_continues_exactly_where_a_killed_run_stopped(tmp_path):
    data = _image_folder(tmp_path / "data")
    config = _tiny_config(data)
    train(config, tmp_path / "straight", progress=False)

    def kill_after_step_4(step: int, loss: float) -> None:
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "killed", progress=False, callback=kill_after_step_4)
    train(config, tmp_path / "killed", resume=True, progress=False)

    straight = load_checkpoint(tmp_path / "straight" / "model.safetensors").state_dict()
    resumed = load_checkpoint(tmp_path / "killed" / "model.safetensors").state_dict()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    data = _image_folder(tmp_path / "data")
    train(_tiny_config(data, steps=3), tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(InputError, match="resume"):
        train(_tiny_config(data, steps=3), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_resume_with_another_architecture_is_refused(tmp_path):
    data = _image_folder(tmp_path / "data")
    train(_tiny_config(data, steps=3), tmp_path / "run", progress=False)
    other = _tiny_config(data, steps=3, bias=True)
    with pytest.raises(CheckpointError, match="bias"):
        train(other, tmp_path / "run", resume=True, progress=False)


def test_recipe_unknown_key_is_named(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('arch = "dncnn"\nlearning_rat = 0.1\n')
    with pytest.raises(InputError, match="learning_rat"):
        load_recipe(recipe)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sigma_range = [-5.0, 10.0]", "sigma_range"),
        ("batch_size = 0", "batch_size"),
        ('arch = "resnet"', "arch"),
        ("lr = -1.0", "lr"),
    ],
)
def test_recipe_impossible_values_are_named(tmp_path, text, key):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text + "\n")
    with pytest.raises(InputError, match=key):
        load_recipe(recipe)


def test_patch_larger_than_every_image_fails_before_training(tmp_path):
    data = _image_folder(tmp_path / "data")
    with pytest.raises(InputError, match="patch_size"):
        train(_tiny_config(data, patch_size=64), tmp_path / "run", progress=False)


def test_empty_data_folder_fails_before_training(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        train(_tiny_config(tmp_path / "empty"), tmp_path / "run", progress=False)


def test_corrupt_training_image_is_reported_and_skipped(tmp_path, capsys):
    data = _image_folder(tmp_path / "data")
    (data / "broken.png").write_bytes(b"not a png at all")
    sampler = PatchSampler(data, patch_size=16, channels=1, scales=(1.0,))
    assert len(sampler.images) == 3
    assert "broken.png" in capsys.readouterr().err
