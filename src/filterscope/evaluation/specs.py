"""Turning a model spec from the command line into a denoiser and a description of it.

A spec is one of

- a shipped model name (``filterscope models``), e.g. ``bf-dncnn-gray``;
- a checkpoint path: filterscope's ``.safetensors`` (with its JSON card) or ``.pt``,
  or a published checkpoint of Mohan et al. (ICLR 2020), e.g.
  ``../shared/reference/bias_free_denoising/pretrained/dncnn/bias_free/0-55.pt``;
- a classical baseline, ``bm3d`` or ``nlm``, given the true σ, or ``bm3d:estimate`` /
  ``nlm:estimate``, which estimate σ from each noisy image (``bm3d:true`` and
  ``nlm:true`` spell out the default).

An existing file wins over a baseline or shipped name of the same spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InputError
from .baselines import BASELINES, create_baseline

#: ``:suffix`` of a baseline spec -> where its σ comes from.
SIGMA_SUFFIXES = {"true": "true", "estimate": "estimated"}

# "0-55", "0-55.pt", ".../0-55" : the training range in a published file or model name.
_RANGE_IN_TEXT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)(?:\.pt)?$")


@dataclass
class ModelSpec:
    """A resolved ``--model`` argument.

    Attributes
    ----------
    name : str
        The spec exactly as given; the model's name in results.
    denoiser : nn.Module
        Ready to evaluate (eval mode, CPU).
    info : dict
        JSON-ready description: ``kind`` (``"network"`` or ``"baseline"``),
        ``sigma_source`` (``"blind"``, ``"true"`` or ``"estimated"``), ``in_channels``
        (None: any), and for networks ``arch``, ``bias``, ``source`` and
        ``training_sigma_range_255`` (``[lo, hi]`` on the 0–255 scale, or None).
    """

    name: str
    denoiser: nn.Module
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int | None:
        return self.info.get("in_channels")


def parse_baseline(spec: str) -> tuple[str, str] | None:
    """``"bm3d:estimate"`` -> ``("bm3d", "estimated")``; None when not a baseline spec.

    Raises
    ------
    InputError
        A baseline name with an unknown ``:suffix``.
    """
    method, _, suffix = spec.partition(":")
    if method.lower() not in BASELINES:
        return None
    if not suffix:
        return method.lower(), "true"
    if suffix.lower() not in SIGMA_SUFFIXES:
        raise InputError(
            f"{spec}: unknown noise-level source {suffix!r}; use {method}, {method}:true "
            f"(the true sigma) or {method}:estimate (sigma estimated from the noisy image)"
        )
    return method.lower(), SIGMA_SUFFIXES[suffix.lower()]


def training_range_from_text(text: str) -> tuple[float, float] | None:
    """Training σ range written in a published file or model name: ``".../0-55.pt"`` -> (0, 55)."""
    match = _RANGE_IN_TEXT.search(str(text).replace("\\", "/").rstrip("/"))
    if not match:
        return None
    lo, hi = float(match.group(1)), float(match.group(2))
    return (min(lo, hi), max(lo, hi))


def _network_info(spec: str, model: nn.Module) -> dict[str, Any]:
    card = getattr(model, "card", None) or {}
    training = card.get("training") or {}
    sigma_range = training.get("sigma_range_255")
    if sigma_range is None:
        sigma_range = training_range_from_text(spec)
    path = Path(spec)
    return {
        "kind": "network",
        "arch": card.get("arch", getattr(model, "arch", None)),
        "bias": card.get("bias", getattr(model, "bias", None)),
        "in_channels": getattr(model, "in_channels", None),
        "sigma_source": "blind",
        "training_sigma_range_255": None if sigma_range is None else list(sigma_range),
        "source": str(path.resolve()) if path.exists() else spec,
    }


def resolve_model(spec: str) -> ModelSpec:
    """Load the denoiser a ``--model`` spec names (see the module docstring).

    Parameters
    ----------
    spec : str
        Shipped name, checkpoint path, or baseline (``bm3d``, ``nlm``, optionally with
        ``:estimate`` or ``:true``).

    Returns
    -------
    ModelSpec
        Name (the spec as given), denoiser, and description.

    Raises
    ------
    InputError
        Unknown name, or a baseline with an unknown suffix.
    CheckpointError
        A file that is not a loadable checkpoint.
    """
    from ..models import zoo

    text = str(spec)
    if not text.strip():
        raise InputError("empty model name")
    path = Path(text)
    baseline = None if path.exists() else parse_baseline(text)
    if baseline is not None:
        method, source = baseline
        denoiser = create_baseline(method, sigma_source=source)
        info = {
            "kind": "baseline",
            "method": method,
            "in_channels": None,
            "sigma_source": source,
            "training_sigma_range_255": None,
        }
        return ModelSpec(text, denoiser, info)
    is_shipped = "/" not in text and "\\" not in text and text in zoo.list_shipped()
    if not is_shipped and not path.exists():
        shipped = ", ".join(zoo.list_shipped()) or "none"
        raise InputError(
            f"{text}: unknown model; give a shipped model ({shipped}), a baseline "
            f"({', '.join(BASELINES)}, optionally :estimate) or an existing checkpoint file"
        )
    model = zoo.load_model(text)
    return ModelSpec(text, model.eval(), _network_info(text, model))


__all__ = ["ModelSpec", "parse_baseline", "resolve_model", "training_range_from_text"]
