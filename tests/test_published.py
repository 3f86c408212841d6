"""The published checkpoints of Mohan et al. (ICLR 2020) and safe checkpoint loading.

The checkpoint tests need the reference material in ``../shared`` (beside the
repository), or wherever ``FILTERSCOPE_SHARED`` points; without it they are skipped.
The tests that a code-running pickle is refused need nothing and always run.
"""

from __future__ import annotations

import argparse
import builtins
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from filterscope import CheckpointError, load_checkpoint
from filterscope.evaluation import evaluate, noise_seed
from filterscope.noise import add_noise

SHARED = Path(os.environ.get("FILTERSCOPE_SHARED") or Path(__file__).parents[1].parent / "shared")
REFERENCE = SHARED / "reference" / "bias_free_denoising"
PRETRAINED = REFERENCE / "pretrained"
BSD68 = SHARED / "data" / "BSD68"

needs_shared = pytest.mark.skipif(
    not PRETRAINED.is_dir() or not BSD68.is_dir(),
    reason=f"reference checkpoints and BSD68 not found under {SHARED} "
    "(set FILTERSCOPE_SHARED to the shared folder)",
)

ARCHS = ("dncnn", "rcnn", "unet")
KINDS = ("bias", "bias_free")
RANGES = ("0-10", "0-30", "0-55", "0-100")
CHECKPOINTS = [(a, k, r) for a in ARCHS for k in KINDS for r in RANGES]

# state-dict entries in the files (MANIFEST.md), before the bias-free norms are cleaned
RAW_KEY_COUNTS = {
    ("dncnn", "bias"): 130,
    ("dncnn", "bias_free"): 110,
    ("rcnn", "bias"): 13,
    ("rcnn", "bias_free"): 7,
    ("unet", "bias"): 17,
    ("unet", "bias_free"): 9,
}


def raw_checkpoint(path: Path) -> dict:
    """The file as the authors wrote it; the only non-tensor class it holds is allowed."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def unused_bias_free_norm_entry(key: str) -> bool:
    return key.startswith("bn_layer_list.") and key.endswith((".bias", ".running_mean"))


# --------------------------------------------------------------------------- loading


@needs_shared
@pytest.mark.parametrize("arch, kind, rng", CHECKPOINTS, ids=lambda v: str(v))
def test_published_checkpoint_loads_strictly(arch, kind, rng):
    path = PRETRAINED / arch / kind / f"{rng}.pt"
    model = load_checkpoint(path)
    assert model.arch == arch
    assert model.bias is (kind == "bias")
    assert model.in_channels == 1
    assert not model.training
    hi = float(rng.split("-")[1])
    assert model.card["training"]["sigma_range_255"] == [0.0, hi]

    raw = raw_checkpoint(path)["model"][0]
    assert len(raw) == RAW_KEY_COUNTS[(arch, kind)]
    expected = dict(raw)
    if kind == "bias_free":
        for key in [k for k in raw if unused_bias_free_norm_entry(k)]:
            assert torch.count_nonzero(raw[key]) == 0
            del expected[key]
    ours = model.state_dict()
    # No missing and no unexpected keys, and every tensor is the published one.
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key
    if kind == "bias_free":
        assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]


@needs_shared
@pytest.mark.parametrize("entry", ["bn_layer_list.3.bias", "bn_layer_list.17.running_mean"])
def test_import_refuses_a_non_zero_bias_free_norm_shift(entry, tmp_path):
    checkpoint = raw_checkpoint(PRETRAINED / "dncnn" / "bias_free" / "0-10.pt")
    # Control: the unchanged content re-saved under the same name loads.
    torch.save(checkpoint, tmp_path / "0-10.pt")
    assert load_checkpoint(tmp_path / "0-10.pt").arch == "dncnn"

    checkpoint["model"][0][entry][5] = 1e-3
    (tmp_path / "bad").mkdir()
    torch.save(checkpoint, tmp_path / "bad" / "0-10.pt")
    with pytest.raises(CheckpointError, match="non-zero"):
        load_checkpoint(tmp_path / "bad" / "0-10.pt")


# --------------------------------------------------------------------------- numerics


def independent_bf_dncnn(state: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """The authors' BF-DnCNN in eval mode, spelled out with the raw state dict.

    conv → ReLU, then per hidden layer conv → x / (sqrt(running_var) + eps) · weight →
    ReLU, then the last conv; the network predicts the noise: output = y − net(y).
    """
    eps = 1e-5
    hidden = sorted(int(k.split(".")[1]) for k in state if k.startswith("hidden_layer_list."))
    assert hidden == list(range(18))
    h = F.relu(F.conv2d(y, state["first_layer.weight"], padding=1))
    for i in hidden:
        h = F.conv2d(h, state[f"hidden_layer_list.{i}.weight"], padding=1)
        std = state[f"bn_layer_list.{i}.running_var"].sqrt() + eps
        h = h / std.view(1, -1, 1, 1) * state[f"bn_layer_list.{i}.weight"].view(1, -1, 1, 1)
        h = F.relu(h)
    return y - F.conv2d(h, state["last_layer.weight"], padding=1)


def numpy_psnr(clean: np.ndarray, estimate: np.ndarray) -> float:
    estimate = np.clip(estimate.astype(np.float64), 0.0, 1.0)
    mse = np.mean((clean.astype(np.float64) - estimate) ** 2)
    return float(10.0 * np.log10(1.0 / mse))


def bsd68_images(count: int, crop: int | None) -> list[tuple[str, torch.Tensor]]:
    images = []
    for path in sorted(BSD68.glob("*.png"))[:count]:
        pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
        if crop is not None:
            top = (pixels.shape[0] - crop) // 2
            left = (pixels.shape[1] - crop) // 2
            pixels = pixels[top : top + crop, left : left + crop]
        images.append((path.name, torch.from_numpy(np.ascontiguousarray(pixels))[None, None]))
    return images


@needs_shared
@pytest.mark.parametrize(
    "crop",
    # Centre crops keep the default run to a few seconds on a small CPU; the full
    # images (about 20 s more) run with ``-m slow``.
    [128, pytest.param(None, marks=pytest.mark.slow)],
    ids=["crop128", "full"],
)
def test_bf_dncnn_psnr_matches_an_independent_forward(crop):
    sigma_255 = 50
    path = PRETRAINED / "dncnn" / "bias_free" / "0-55.pt"
    images = bsd68_images(3, crop)
    result = evaluate({"bf": load_checkpoint(path)}, images, [sigma_255 / 255], progress=False)
    per_image = result["results"][0]["per_image"]

    state = raw_checkpoint(path)["model"][0]
    for index, (name, x) in enumerate(images):
        y = add_noise(x, sigma_255 / 255, generator=noise_seed(0, index, sigma_255 / 255))
        with torch.no_grad():
            x_hat = independent_bf_dncnn(state, y)
        clean = x[0, 0].numpy()
        reference = numpy_psnr(clean, x_hat[0, 0].numpy())
        assert per_image[index]["image"] == name
        assert abs(per_image[index]["psnr"] - reference) < 1e-4
        assert abs(per_image[index]["psnr_in"] - numpy_psnr(clean, y[0, 0].numpy())) < 1e-4
        # A working denoiser: far above the input quality at σ = 50.
        assert reference > per_image[index]["psnr_in"] + 8.0


# --------------------------------------------------------------------------- unsafe pickles


class RunsShellCommand:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class RunsPython:
    """Unpickling this would execute Python code that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.mark.parametrize("payload", [RunsShellCommand, RunsPython])
@pytest.mark.parametrize("legacy_format", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("layout", ["plain", "published"])
def test_code_running_pickle_is_refused(payload, legacy_format, layout, tmp_path):
    marker = tmp_path / "marker"
    evil = payload(marker)
    state = {"first_layer.weight": torch.zeros(4, 1, 3, 3)}
    if layout == "published":
        # Looks like an authors' file, with the object where the Namespace would be.
        obj = {"model": [state], "args": evil}
    else:
        obj = {"arch": "dncnn", "config": {}, "state_dict": state, "extra": evil}
    path = tmp_path / "0-55.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy_format)

    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists(), "loading the checkpoint ran code from the file"
