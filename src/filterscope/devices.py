"""Device selection: the one place a device name becomes a ``torch.device``.

A foundation module (see ``ARCHITECTURE.md``): every layer that runs a network on a
device asks :func:`resolve_device`, so that an unknown name or an absent GPU is refused
the same way, before any work, everywhere.
"""

from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A torch device from a name.

    Parameters
    ----------
    device : str, torch.device or None
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``...; None or ``"auto"``: CUDA when there is
        a GPU, else the CPU.

    Raises
    ------
    InputError
        An unknown name, or CUDA on a machine without a GPU.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device {device!r} is not a torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested but no CUDA GPU is available; use cpu")
    return device


__all__ = ["resolve_device"]
