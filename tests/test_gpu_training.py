"""Timed on-device training (filterscope.training.gpu), run here on the CPU for a few steps."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_image_folder
from filterscope import load_checkpoint
from filterscope.cli.main import main
from filterscope.errors import CheckpointError, InputError
from filterscope.training import PatchSampler, TrainConfig, train
from filterscope.training.gpu import (
    DevicePatchBank,
    budget_learning_rate,
    make_device_batch,
    train_on_device,
)

_image_folder = functools.partial(make_image_folder, count=2, size=(37, 31))


def _tiny_config(data: Path, **changes) -> TrainConfig:
    values = dict(
        arch="drunet",
        arch_options={"widths": [4, 8], "blocks": 1, "noise_map": True},
        data_dir=str(data),
        patch_size=16,
        scales=[1.0, 0.7],
        batch_size=4,
        steps=4,
        sigma_range=[0.0, 100.0],
        sigma_known_fraction=0.5,
        lr_milestones=[],
        checkpoint_every=2,
        val_dir=str(data),
        val_images=1,
        val_sigmas=[25.0],
        val_every=2,
        seed=3,
        device="cpu",
        precision="bfloat16",
        channels_last=True,
        tensorboard=False,
    )
    values.update(changes)
    return TrainConfig(**values)


def _dihedral(patch: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips/rotations of a (C, p, p) patch."""
    turns = [torch.rot90(patch, k, dims=(1, 2)) for k in range(4)]
    return turns + [t.flip(2) for t in turns]


def test_bank_patches_are_flipped_crops_of_the_images_and_reproducible():
    # An image with all-distinct pixel values: a patch is a transformed crop of it or not.
    image = torch.arange(3 * 9 * 7, dtype=torch.float32).reshape(3, 9, 7) / 200.0

    class OneImage:
        patch_size, channels, entries = 4, 3, [(0, 1.0, 3, 9, 7)]

        def image(self, entry):
            return image

    bank = DevicePatchBank(OneImage(), "cpu")
    patches = bank.sample(200, torch.Generator().manual_seed(0))
    assert patches.shape == (200, 3, 4, 4)
    assert torch.equal(patches, bank.sample(200, torch.Generator().manual_seed(0)))
    crops = {}
    for top in range(9 - 4 + 1):
        for left in range(7 - 4 + 1):
            for mode, view in enumerate(_dihedral(image[:, top : top + 4, left : left + 4])):
                crops[tuple(view.flatten().tolist())] = (top, left, mode)
    found = [crops.get(tuple(p.flatten().tolist())) for p in patches]
    assert None not in found  # every patch is a flipped/rotated crop
    assert {mode for *_, mode in found} == set(range(8))  # and every flip/rotation occurs
    assert {(top, left) for top, left, _ in found} >= {(0, 0), (5, 3)}  # corners reached


def test_bank_holds_every_scale_of_the_sampler(tmp_path):
    data = _image_folder(tmp_path / "data", count=2)
    sampler = PatchSampler(data, patch_size=16, channels=1, scales=(1.0, 0.7))
    bank = DevicePatchBank(sampler, "cpu")
    areas = sum(h * w for *_, h, w in sampler.entries)
    assert bank.pixels.numel() == areas
    assert float(bank.weights.sum()) == pytest.approx(1.0)
    batch = bank.sample(7, torch.Generator().manual_seed(1))
    assert batch.shape == (7, 1, 16, 16) and 0.0 <= float(batch.min()) <= float(batch.max()) <= 1


def test_device_batch_noise_and_sigma_given(tmp_path):
    data = _image_folder(tmp_path / "data")
    bank = DevicePatchBank(PatchSampler(data, patch_size=16, channels=1), "cpu")
    config = _tiny_config(data, sigma_range=[20.0, 60.0], sigma_known_fraction=0.5)
    noisy, clean, given = make_device_batch(bank, config, 64, torch.Generator().manual_seed(2))
    assert noisy.shape == clean.shape == (64, 1, 16, 16) and given.shape == (64,)
    noise_std = (noisy - clean).flatten(1).std(dim=1)
    told = given > 0
    assert 10 < int(told.sum()) < 54  # about half told their sigma (binomial, p = 0.5)
    # Told patches get their own sigma: the noise std matches it within sampling error.
    assert torch.allclose(noise_std[told], given[told], rtol=0.3)
    assert float(noise_std.min()) > 15 / 255 and float(noise_std.max()) < 70 / 255
    blind = _tiny_config(data, sigma_known_fraction=0.0)
    assert not make_device_batch(bank, blind, 8, torch.Generator().manual_seed(2))[2].any()


def test_device_batch_changes_colors_as_the_cpu_batch_does(tmp_path):
    data = _image_folder(tmp_path / "rgb", channels=3)
    bank = DevicePatchBank(PatchSampler(data, patch_size=16, channels=3), "cpu")
    plain = _tiny_config(data, in_channels=3, sigma_range=[0.0, 0.0])
    shuffled = _tiny_config(data, in_channels=3, sigma_range=[0.0, 0.0], channel_shuffle=True)
    before = make_device_batch(bank, plain, 16, torch.Generator().manual_seed(2))[1]
    after = make_device_batch(bank, shuffled, 16, torch.Generator().manual_seed(2))[1]
    torch.testing.assert_close(after.sort(dim=1).values, before.sort(dim=1).values)
    assert not torch.equal(after, before)


def test_learning_rate_follows_the_budget():
    config = TrainConfig(lr=1e-3, lr_milestones=[0.5, 0.75], lr_gamma=0.5, warmup_steps=10)
    assert budget_learning_rate(config, 0, 0.0) == pytest.approx(1e-4)
    assert budget_learning_rate(config, 100, 0.49) == pytest.approx(1e-3)
    assert budget_learning_rate(config, 100, 0.5) == pytest.approx(5e-4)
    assert budget_learning_rate(config, 100, 0.8) == pytest.approx(2.5e-4)


def test_cpu_run_writes_a_loadable_model_and_resumes_exactly(tmp_path):
    data = _image_folder(tmp_path / "data")
    straight = train_on_device(_tiny_config(data), tmp_path / "straight", minutes=60)
    assert straight["step"] == 4 and np.isfinite(straight["loss"])
    assert set(straight["validation"]) == {"val_psnr_25"}

    train_on_device(_tiny_config(data, steps=2), tmp_path / "split", minutes=60)
    resumed = train_on_device(_tiny_config(data), tmp_path / "split", minutes=60, resume=True)
    assert resumed["step"] == 4

    one = load_checkpoint(tmp_path / "straight" / "model.safetensors")
    two = load_checkpoint(tmp_path / "split" / "model.safetensors")
    for key, value in one.state_dict().items():
        assert torch.equal(value, two.state_dict()[key]), key
    card = json.loads((tmp_path / "straight" / "model.json").read_text())
    assert card["arch"] == "drunet" and card["training"]["steps"] == 4
    assert card["training"]["device"] == "cpu"
    # The resumable checkpoint loads as a model too, and the model takes sigma.
    from_checkpoint = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    y = torch.rand(1, 1, 37, 31)
    assert torch.equal(from_checkpoint(y, 0.1), two(y, 0.1))
    log = (tmp_path / "straight" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and len(log) >= 3


def test_time_budget_ends_the_run(tmp_path):
    data = _image_folder(tmp_path / "data")
    config = _tiny_config(data, steps=100000, val_every=100000, checkpoint_every=100000)
    result = train_on_device(config, tmp_path / "run", minutes=0.005, log_every=1000)
    assert 1 <= result["step"] < 100000
    assert result["train_seconds"] >= 0.3


def test_refusals(tmp_path):
    data = _image_folder(tmp_path / "data")
    with pytest.raises(InputError, match="blur_range"):
        train_on_device(_tiny_config(data, blur_range=[0.0, 2.0]), tmp_path / "b", minutes=1)
    with pytest.raises(InputError, match="ema_decay: GPU training keeps no moving average"):
        train_on_device(_tiny_config(data, ema_decay=0.99), tmp_path / "e", minutes=1)
    # What the CPU trainer does with a noise-map estimator, this one would silently skip.
    with pytest.raises(InputError, match="estimator_lr_scale: GPU training"):
        train_on_device(_tiny_config(data, estimator_lr_scale=10.0), tmp_path / "s", minutes=1)
    with pytest.raises(InputError, match="noise_map_loss: GPU training has no map loss"):
        train_on_device(_tiny_config(data, noise_map_loss=1.0), tmp_path / "n", minutes=1)
    with pytest.raises(InputError, match="minutes"):
        train_on_device(_tiny_config(data), tmp_path / "m", minutes=0)
    train_on_device(_tiny_config(data, steps=1), tmp_path / "run", minutes=1)
    with pytest.raises(InputError, match="holds a run already; pass resume=True"):
        train_on_device(_tiny_config(data, steps=1), tmp_path / "run", minutes=1)
    with pytest.raises(InputError, match="nothing to resume"):
        train_on_device(_tiny_config(data), tmp_path / "none", minutes=1, resume=True)
    # A run of the CPU trainer is not continued here (its generators live elsewhere).
    cpu_config = _tiny_config(data, steps=1, precision="float32", channels_last=False)
    train(cpu_config, tmp_path / "cpu", progress=False)
    with pytest.raises(CheckpointError, match="filterscope train"):
        train_on_device(_tiny_config(data, steps=2), tmp_path / "cpu", minutes=1, resume=True)


def test_cli_trains_each_recipe_into_its_folder(tmp_path, capsys):
    data = _image_folder(tmp_path / "data")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        f'arch = "drunet"\narch_options = {{ widths = [4, 8], blocks = 1 }}\n'
        f'data_dir = "{data}"\nval_dir = "{data}"\npatch_size = 16\nbatch_size = 2\n'
        "val_images = 1\ntensorboard = false\n"
    )
    argv = ["train-gpu", "--recipe", str(recipe), "--out", str(tmp_path / "out")]
    assert main([*argv, "--device", "cpu", "--steps", "2", "--quiet"]) == 0
    assert (tmp_path / "out" / "tiny" / "model.safetensors").exists()
    assert "tiny: 2 steps" in capsys.readouterr().out
    # A second start into the same folder is refused with one line, nothing overwritten.
    assert main([*argv, "--device", "cpu", "--steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err  # the library's advice in the command's own flags
    assert "holds a run already; use --resume" in err and "resume=True" not in err


def test_device_batch_draws_a_noise_mixture_and_tells_its_std_map(tmp_path):
    data = _image_folder(tmp_path / "data")
    bank = DevicePatchBank(PatchSampler(data, patch_size=16, channels=1), "cpu")
    config = _tiny_config(data, noise=["gaussian", "camera"], sigma_known_fraction=0.5)
    noisy, clean, given = make_device_batch(bank, config, 32, torch.Generator().manual_seed(2))
    assert noisy.shape == clean.shape == given.shape == (32, 1, 16, 16)
    told = given.flatten(1).amax(dim=1) > 0
    assert 0 < int(told.sum()) < 32
    again = make_device_batch(bank, config, 32, torch.Generator().manual_seed(2))
    assert torch.equal(noisy, again[0]) and torch.equal(given, again[2])
