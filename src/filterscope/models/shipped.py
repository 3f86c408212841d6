"""Where the shipped models live: ``filterscope/weights/NAME.safetensors`` + ``NAME.json``.

Only looks files up; loading them is :mod:`filterscope.models.checkpoints` (which uses
this module for a shipped name) and :mod:`filterscope.models.zoo`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


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


def shipped_weights(name: str) -> Path | None:
    """The weights file of the shipped model ``name``; None when no model ships under
    that name (a name holding a path separator never names one)."""
    if not name or "/" in name or "\\" in name:
        return None
    path = weights_dir() / f"{name}.safetensors"
    return path if path.exists() else None


__all__ = ["list_shipped", "shipped_weights", "weights_dir"]
