"""Training a user's own network, named by its Python object path (issue 17, item 4)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import filterscope as fs
from conftest import make_image_folder
from filterscope import load_checkpoint
from filterscope.cli.main import main
from filterscope.errors import CheckpointError, InputError
from filterscope.nn import BFBatchNorm2d
from filterscope.training import TrainConfig, train
from filterscope.training.data import load_validation_images
from filterscope.training.trainer import validate

MODULE = "fs_user_nets"

USER_MODULE = '''
from torch import nn

import filterscope


class TinyNet(nn.Module):
    """Convolution biases and a batch norm: make_bias_free has work to do."""

    def __init__(self, in_channels=1, hidden=4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, in_channels, 3, padding=1),
        )

    def forward(self, y):
        return y - self.body(y)


@filterscope.register_architecture("fs-test-gray-net")
def gray_net(hidden=4):
    """A factory without in_channels: always one channel."""
    return TinyNet(1, hidden)


class SmoothNet(nn.Module):
    def __init__(self, in_channels=1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(4, in_channels, 3, padding=1),
        )

    def forward(self, y):
        return self.body(y)


INSTANCE = TinyNet()
VALUE = 3
'''


@pytest.fixture
def user_nets(tmp_path, monkeypatch, fresh_architectures):
    """``fs_user_nets`` importable for this test only (its registration undone afterwards)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{MODULE}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(__import__("sys").modules, MODULE, raising=False)  # gone afterwards
    return MODULE


def _config(data: Path, **changes) -> TrainConfig:
    values = dict(
        arch=f"{MODULE}:TinyNet",
        bias=False,
        arch_options={"hidden": 4},
        data_dir=str(data),
        patch_size=16,
        batch_size=4,
        steps=4,
        checkpoint_every=2,
        val_dir=str(data),
        val_images=1,
        val_sigmas=[25.0],
        val_every=2,
        seed=5,
        tensorboard=False,
    )
    values.update(changes)
    return TrainConfig(**values)


def test_a_users_module_trains_bias_free_and_reloads(user_nets, tmp_path):
    data = make_image_folder(tmp_path / "data")
    train(_config(data), tmp_path / "run", progress=False)
    path = tmp_path / "run" / "model.safetensors"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["arch"] == f"{MODULE}:TinyNet" and card["bias"] is False
    assert card["in_channels"] == 1 and card["config"] == {"hidden": 4}

    # The card names code (an object path): it is built only when the caller trusts it.
    with pytest.raises(CheckpointError, match="names code .*trust_code=True"):
        load_checkpoint(path)
    model = load_checkpoint(path, trust_code=True)
    assert isinstance(model.module.body[1], BFBatchNorm2d)
    assert all(not name.endswith("bias") for name in model.state_dict())
    # The reloaded network scores exactly what the trained one scored at its last step
    # (same weights, same fixed validation noise): 1e-6 dB leaves room for nothing else.
    images = load_validation_images(data, channels=1, limit=1)
    score = validate(model, images, [25.0])["val_psnr_25"]
    assert score == pytest.approx(card["metrics"]["validation"]["val_psnr_25"], abs=1e-6)
    # fs.load_model and the resumable checkpoint rebuild the same network.
    y = torch.rand(2, 1, 19, 23, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(y)
        assert torch.equal(fs.load_model(path, trust_code=True)(y), expected)
        trained = load_checkpoint(tmp_path / "run" / "checkpoint.pt", trust_code=True)
        assert torch.equal(trained(y), expected)
    # Bias-free: f(a y) = a f(y) to 1e-5 (float64) for a = 0.5, 3; the user's network as
    # written (biases, a batch norm with a mean) is not.
    assert fs.check_homogeneous(model, tolerance=1e-5).passed
    assert not fs.check_homogeneous(fs.load_model(f"{MODULE}:TinyNet")).passed
    assert fs.hub.resolve(str(path), trust_code=True).info.bias_free is True


def test_resume_of_a_users_module_continues_exactly(user_nets, tmp_path):
    data = make_image_folder(tmp_path / "data")
    train(_config(data), tmp_path / "straight", progress=False)

    def stop_after_step_2(step: int, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_config(data), tmp_path / "killed", progress=False, callback=stop_after_step_2)
    train(_config(data), tmp_path / "killed", resume=True, progress=False)
    straight = load_checkpoint(tmp_path / "straight" / "model.safetensors", trust_code=True)
    resumed = load_checkpoint(tmp_path / "killed" / "model.safetensors", trust_code=True)
    straight, resumed = straight.state_dict(), resumed.state_dict()
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    # init_from takes such a model too, and refuses it for another recipe network.
    first = str(tmp_path / "straight" / "model.safetensors")
    train(_config(data, steps=1, init_from=first), tmp_path / "tuned", progress=False)
    with pytest.raises(CheckpointError, match="init_from"):
        train(_config(data, bias=True, init_from=first), tmp_path / "other", progress=False)


def test_a_layer_that_cannot_be_made_bias_free_is_refused_by_name(user_nets, tmp_path):
    data = make_image_folder(tmp_path / "data")
    config = _config(data, arch=f"{MODULE}:SmoothNet", arch_options={})
    with pytest.raises(InputError, match=r"^arch: .*SmoothNet.*body\.1 \(GELU\)"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    # With bias = true nothing is converted: the network trains as written.
    config.bias, config.steps = True, 1
    assert train(config, tmp_path / "biased", progress=False)["step"] == 1


def test_a_factory_without_in_channels_must_build_the_recipes_channels(user_nets, tmp_path):
    data = make_image_folder(tmp_path / "data")
    config = _config(data, arch=f"{MODULE}:gray_net", steps=1)
    assert train(config, tmp_path / "gray", progress=False)["step"] == 1
    gray = load_checkpoint(tmp_path / "gray" / "model.safetensors", trust_code=True)
    assert gray.in_channels == 1
    color = tmp_path / "color"
    color.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (41, 37, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(color / "rgb.png")
    config = _config(color, arch=f"{MODULE}:gray_net", in_channels=3)
    with pytest.raises(InputError, match="arch: .*1 channels, not 3"):
        train(config, tmp_path / "color_run", progress=False)
    assert not (tmp_path / "color_run").exists()


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("no_such_package_fs:Net", "cannot import no_such_package_fs"),
        (f"{MODULE}:Missing", "has no attribute 'Missing'"),
        (f"{MODULE}:VALUE", "not a torch.nn.Module class or factory"),
        (f"{MODULE}:INSTANCE", "a trainable network is named by its"),
        ("subprocess:run", "function of subprocess, not a network factory"),
        (f"{MODULE}:SmoothNet.__init__", "not a network factory"),
        ("resnet", "unknown architecture 'resnet'"),
    ],
)
def test_a_wrong_object_path_is_one_input_error_naming_arch(user_nets, arch, message):
    with pytest.raises(InputError, match=f"^arch: .*{message}") as caught:
        TrainConfig(arch=arch).validate()
    assert "\n" not in str(caught.value)


def test_a_card_naming_a_missing_or_unsafe_object_path_is_refused(user_nets, tmp_path):
    data = make_image_folder(tmp_path / "data")
    train(_config(data, steps=1), tmp_path / "run", progress=False)
    path = tmp_path / "run" / "model.safetensors"
    card = json.loads(path.with_suffix(".json").read_text())
    for arch, message in [
        ("no_such_package_fs:Net", "no_such_package_fs:Net: cannot import"),
        ("subprocess:run", "subprocess:run is a function of subprocess"),
    ]:
        path.with_suffix(".json").write_text(json.dumps({**card, "arch": arch}))
        with pytest.raises(CheckpointError, match="names code") as caught:
            load_checkpoint(path)  # refused before any import
        with pytest.raises(CheckpointError, match=message) as caught:
            load_checkpoint(path, trust_code=True)
        assert "\n" not in str(caught.value)


def test_cli_trains_a_users_module_and_refuses_bad_ones_in_one_line(user_nets, tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'data_dir = "{data}"\nval_dir = "{data}"\nval_images = 1\npatch_size = 16\n'
        "batch_size = 2\nsteps = 2\ntensorboard = false\n"
    )
    run = tmp_path / "run"
    args = ["train", "--recipe", str(recipe), "--out", str(run), "--no-progress", "--bias-free"]
    user = ["--set", f"arch={MODULE}:TinyNet", "--set", "arch_options={hidden = 3}"]
    assert main(args + user) == 0
    model = fs.load_model(run / "model.safetensors", trust_code=True)
    assert model.module.body[0].out_channels == 3 and model.module.body[0].bias is None
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    card = load_checkpoint(run / "model.safetensors", trust_code=True).card
    assert card["training"]["steps"] == 3
    capsys.readouterr()
    for arch, message in [
        (f"{MODULE}:Missing", "arch: "),
        (f"{MODULE}:SmoothNet", "body.1 (GELU)"),
    ]:
        out = str(tmp_path / arch.replace(":", "_"))
        code = main(["train", "--recipe", str(recipe), "--out", out, "--set", f"arch={arch}"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and message in err
