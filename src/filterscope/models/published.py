"""Import of the published checkpoints of Mohan et al. (ICLR 2020).

The files (``pretrained/{dncnn,rcnn,unet}/{bias,bias_free}/0-<max>.pt`` in the
authors' repository) are legacy ``torch.save`` pickles: a dict whose ``model`` entry
is a one-element list holding the state dict, and whose ``args`` entry is an
``argparse.Namespace``. They are read with ``torch.load(weights_only=True)`` and an
allow-list of exactly one extra class, ``argparse.Namespace``; nothing in them runs.

The architecture and the presence of bias are read from the state-dict keys (so a
renamed file still loads); the training range from the training arguments stored in
the file, ``args.min_noise``/``args.max_noise`` (the DnCNN files store them swapped,
so the range is their min and max), never from the file name.

The authors' bias-free norm keeps ``bias`` and ``running_mean`` entries that it never
uses; they are verified to be exactly zero and dropped, after which the weights load
into our modules with ``strict=True``. Their eval-mode arithmetic,
``x / (sqrt(running_var) + eps) * weight``, is what
:class:`~filterscope.nn.BFBatchNorm2d` computes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .base import CNNDenoiser
from .registry import create_model

PUBLISHED_KEYS = {"model", "args"}


def is_published_checkpoint(obj: Any) -> bool:
    """True for the dict layout of the authors' training script."""
    return (
        isinstance(obj, dict)
        and PUBLISHED_KEYS <= set(obj)
        and isinstance(obj["model"], (list, tuple))
        and len(obj["model"]) >= 1
        and isinstance(obj["model"][0], dict)
    )


def _detect_arch(state: dict[str, torch.Tensor]) -> tuple[str, bool, int]:
    """(architecture, bias, in_channels) from the state-dict keys and shapes."""
    if "first_layer.weight" in state and any(k.startswith("bn_layer_list.") for k in state):
        return "dncnn", "first_layer.bias" in state, int(state["first_layer.weight"].shape[1])
    if "cnn.first_layer.weight" in state:
        return (
            "rcnn",
            "cnn.first_layer.bias" in state,
            int(state["cnn.first_layer.weight"].shape[1]) // 2,
        )
    if "conv9.weight" in state and "conv1.weight" in state:
        return "unet", "conv1.bias" in state, int(state["conv1.weight"].shape[1])
    raise CheckpointError("checkpoint holds weights of an unknown architecture")


def _training_range(path: Path, args: Any) -> tuple[float, float]:
    """Training σ range on the 0–255 scale, from the stored training arguments."""
    try:
        bounds = (float(args.min_noise), float(args.max_noise))
    except (AttributeError, TypeError, ValueError):
        raise CheckpointError(f"{path}: the checkpoint records no training noise range") from None
    return (min(bounds), max(bounds))


def _architecture_options(arch: str, state: dict[str, torch.Tensor]) -> dict[str, int]:
    if arch == "dncnn":
        hidden_convs = sum(1 for k in state if re.fullmatch(r"hidden_layer_list\.\d+\.weight", k))
        return {"num_layers": hidden_convs + 2, "hidden": int(state["first_layer.weight"].shape[0])}
    if arch == "rcnn":
        hidden_convs = sum(
            1 for k in state if re.fullmatch(r"cnn\.hidden_layer_list\.\d+\.weight", k)
        )
        return {"num_hidden": hidden_convs, "hidden": int(state["cnn.first_layer.weight"].shape[0])}
    return {}


def _convert_bias_free_norms(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the unused ``bias``/``running_mean`` of the authors' bias-free norm layers."""
    converted = {}
    for key, value in state.items():
        if key.startswith("bn_layer_list.") and key.endswith((".bias", ".running_mean")):
            if torch.count_nonzero(value) != 0:
                raise CheckpointError(
                    f"bias-free checkpoint has a non-zero {key}; it would not be bias-free"
                )
            continue
        converted[key] = value
    return converted


def build_published_model(checkpoint: dict[str, Any], path: str | Path) -> CNNDenoiser:
    """Build the matching architecture and load the published weights strictly.

    Parameters
    ----------
    checkpoint : dict
        What ``torch.load`` returned for a published file.
    path : str or Path
        The file's path, for messages and the card.

    Returns
    -------
    CNNDenoiser
        In eval mode, with a ``card`` dict: architecture, bias, channels, training
        range (0–255 scale), source.
    """
    path = Path(path)
    state = dict(checkpoint["model"][0])
    arch, bias, in_channels = _detect_arch(state)
    if not bias:
        state = _convert_bias_free_norms(state)
    model = create_model(
        arch, bias=bias, in_channels=in_channels, **_architecture_options(arch, state)
    )
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not match a {arch} (missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]})"
        )
    model.eval()
    lo, hi = _training_range(path, checkpoint.get("args"))
    model.card = {
        "arch": arch,
        "bias": bias,
        "in_channels": in_channels,
        "config": model.config,
        "training": {"sigma_range_255": [lo, hi], "data": "BSD400"},
        "source": "published checkpoint of Mohan et al. (ICLR 2020)",
        "path": str(path),
    }
    return model
