"""Atomic file writes shared by images, model files and training checkpoints."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], None], *, suffix: str = ""
) -> Path:
    """Write ``path`` through ``write(temporary_name)`` and rename it into place.

    The temporary file lies in the destination folder (so the rename is atomic), gets
    the usual permissions (``mkstemp`` creates it readable by its owner only), and is
    removed if ``write`` fails: an interrupted write never leaves a half-written file
    and never destroys an existing one. ``suffix`` is the temporary file's suffix, for
    writers that pick the format from it. ``OSError`` from creating the file or from
    ``write`` propagates.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp_name)
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path
