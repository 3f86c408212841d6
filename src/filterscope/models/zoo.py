"""Models shipped with filterscope, and resolving ``--model NAME_OR_PATH``.

Shipped weights live in ``filterscope/weights/`` as ``NAME.safetensors`` with a
``NAME.json`` model card beside them. They were trained by filterscope's own
trainer; each card records the recipe and the measured scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, FilterscopeError
from . import shipped
from .shipped import list_shipped, shipped_weights, weights_dir  # where users found them

if TYPE_CHECKING:  # torch is imported only to load weights: `filterscope models` stays fast
    from .base import CNNDenoiser

#: Default shipped model per channel count, used when no ``--model`` is given: the
#: best shipped model for that kind of image (their cards hold the scores).
DEFAULT_MODELS = {1: "bf-drunet-gray", 3: "bf-drunet-color"}


#: Shipped models for real camera noise (signal-dependent, correlated, JPEG), per channel
#: count; ``denoise`` takes one when the image's noise looks like a camera's
#: (:func:`filterscope.inference.choose_noise_type`).
REAL_NOISE_MODELS = {3: "bf-drunet-color-real", 1: "bf-drunet-gray-real"}


def real_noise_model_name(channels: int) -> str | None:
    """Name of the shipped real-noise model for ``channels``-channel images; None when
    none ships (gray images today)."""
    name = REAL_NOISE_MODELS.get(channels)
    if name is None or not (shipped.weights_dir() / f"{name}.safetensors").exists():
        return None
    return name


def default_model_name(channels: int = 1) -> str:
    """Name of the shipped model used by default for images with ``channels`` channels.

    Falls back to the gray model (run per channel) when no color model is installed.
    """
    name = DEFAULT_MODELS.get(channels, DEFAULT_MODELS[1])
    if not (shipped.weights_dir() / f"{name}.safetensors").exists():
        return DEFAULT_MODELS[1]
    return name


def _load_file(path: Path, name: str) -> CNNDenoiser:
    """:func:`load_checkpoint`, with every failure of the file turned into a CheckpointError."""
    from .checkpoints import load_checkpoint

    try:
        return load_checkpoint(path)
    except FilterscopeError:
        raise
    except Exception as exc:
        # The parsers behind a checkpoint file (pickle, zip, safetensors) raise many
        # exception types on damaged or hostile files; all mean "cannot use this file".
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"{name}: not a readable checkpoint ({type(exc).__name__}: {detail})"
        ) from None


def model_file(name_or_path: str | Path) -> Path:
    """The weights file a shipped model name or a checkpoint path stands for.

    Raises
    ------
    CheckpointError
        When ``name_or_path`` is neither a shipped name nor an existing file.
    """
    text = str(name_or_path)
    weights = shipped.shipped_weights(text)
    if weights is not None:
        return weights
    path = Path(text)
    if path.exists():
        return path
    names = ", ".join(shipped.list_shipped()) or "none"
    raise CheckpointError(f"{text}: neither a shipped model ({names}) nor an existing file")


def load_model(name_or_path: str | Path) -> CNNDenoiser:
    """Load a shipped model by name, or any checkpoint by path.

    Raises
    ------
    CheckpointError
        When ``name_or_path`` is neither a shipped name nor a loadable file (damaged
        or hostile files included, whatever their parser raises).
    """
    return _load_file(model_file(name_or_path), str(name_or_path))


__all__ = [
    "DEFAULT_MODELS",
    "default_model_name",
    "real_noise_model_name",
    "list_shipped",
    "load_model",
    "model_file",
    "shipped_weights",
    "weights_dir",
]
