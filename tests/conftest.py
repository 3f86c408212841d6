"""Shared fixtures: tiny models and images, fast enough for every test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import filterscope

# The tests run tiny tensors, for which extra threads cost more than they bring.
torch.set_num_threads(1)


def make_image_folder(
    folder: Path, count: int = 3, size: tuple[int, int] = (41, 37), channels: int = 1
) -> Path:
    """``count`` random 8-bit PNGs of ``size`` (rows, columns) in ``folder``, gray or RGB."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = size if channels == 1 else (*size, channels)
    for index in range(count):
        pixels = (rng.random(shape) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder


def make_tiny_dncnn(in_channels: int = 1, seed: int = 0) -> torch.nn.Module:
    """A random 4-layer, 8-channel bias-free DnCNN in eval mode (receptive radius 4)."""
    torch.manual_seed(seed)
    model = filterscope.create_model(
        "dncnn", bias=False, in_channels=in_channels, num_layers=4, hidden=8
    )
    return model.eval()


@pytest.fixture
def fresh_architectures(monkeypatch) -> None:
    """Architectures registered during the test are forgotten afterwards.

    The built-in ones are registered first: their modules register them once, when
    imported, so a registry restored without them would never see them again.
    """
    from filterscope.models import registry

    for name in registry.BUILTIN_ARCHITECTURES:
        registry.architecture_class(name)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.fixture
def tiny_model_path(tmp_path: Path) -> Path:
    """Path of a tiny random gray bias-free DnCNN saved as safetensors + JSON card."""
    path = tmp_path / "m.safetensors"
    card = {
        "description": "tiny random test model",
        "training": {"sigma_range_255": [0.0, 55.0]},
        "metrics": {"validation": {"val_psnr_25": 20.0}},
    }
    filterscope.save_model(make_tiny_dncnn(1), path, card=card)
    return path


@pytest.fixture
def tiny_color_model_path(tmp_path: Path) -> Path:
    """Path of a tiny random RGB bias-free DnCNN saved as safetensors + JSON card."""
    path = tmp_path / "m_rgb.safetensors"
    filterscope.save_model(
        make_tiny_dncnn(3), path, card={"training": {"sigma_range_255": [0, 55]}}
    )
    return path


def tiny_train_config(data: Path, **changes):
    """A training config of a 3-layer DnCNN that runs in seconds on ``data``; ``changes``
    override its fields."""
    from filterscope.training import TrainConfig

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
