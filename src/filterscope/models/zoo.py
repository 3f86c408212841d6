"""Models shipped with filterscope, and resolving ``--model NAME_OR_PATH``.

Shipped weights live in ``filterscope/weights/`` as ``NAME.safetensors`` with a
``NAME.json`` model card beside them. They were trained by filterscope's own
trainer; each card records the recipe and the measured scores.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, FilterscopeError

if TYPE_CHECKING:  # torch is imported only to load weights: `filterscope models` stays fast
    from .base import CNNDenoiser

#: Default shipped model per channel count, used when no ``--model`` is given: the
#: best shipped model for that kind of image (their cards hold the scores).
DEFAULT_MODELS = {1: "bf-drunet-gray", 3: "bf-drunet-color"}


def weights_dir() -> Path:
    """Folder holding the shipped ``.safetensors`` files and their cards."""
    return Path(str(resources.files("filterscope") / "weights"))


def list_shipped() -> dict[str, dict]:
    """Shipped model names mapped to their model cards."""
    shipped = {}
    for card_file in sorted(weights_dir().glob("*.json")):
        if card_file.with_suffix(".safetensors").exists():
            shipped[card_file.stem] = json.loads(card_file.read_text())
    return shipped


def default_model_name(channels: int = 1) -> str:
    """Name of the shipped model used by default for images with ``channels`` channels.

    Falls back to the gray model (run per channel) when no color model is installed.
    """
    name = DEFAULT_MODELS.get(channels, DEFAULT_MODELS[1])
    if not (weights_dir() / f"{name}.safetensors").exists():
        return DEFAULT_MODELS[1]
    return name


def shipped_weights(name: str) -> Path | None:
    """The weights file of the shipped model ``name``; None when no model ships under
    that name (a name holding a path separator never names one)."""
    if not name or "/" in name or "\\" in name:
        return None
    path = weights_dir() / f"{name}.safetensors"
    return path if path.exists() else None


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


def load_model(name_or_path: str | Path) -> CNNDenoiser:
    """Load a shipped model by name, or any checkpoint by path.

    Raises
    ------
    CheckpointError
        When ``name_or_path`` is neither a shipped name nor a loadable file (damaged
        or hostile files included, whatever their parser raises).
    """
    text = str(name_or_path)
    shipped = shipped_weights(text)
    if shipped is not None:
        return _load_file(shipped, text)
    path = Path(text)
    if path.exists():
        return _load_file(path, text)
    names = ", ".join(list_shipped()) or "none"
    raise CheckpointError(f"{text}: neither a shipped model ({names}) nor an existing file")
