"""Output files: atomic writes (images, model files, checkpoints) and the checks made
before any work, so that a command never fails half-way or replaces a file unasked."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .errors import OVERWRITE_ADVICE, InputError

#: Figure formats matplotlib writes, by suffix.
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


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


def check_output_paths(
    outputs: Mapping[str, str | os.PathLike | None],
    *,
    overwrite: bool,
    figures: Iterable[str] = (),
) -> None:
    """Refuse output files that cannot or may not be written, before any work.

    Parameters
    ----------
    outputs : mapping
        Name of each output for messages → path, or None when not asked for. The library
        names its parameters (``"json_path"``), the command line its flags (``"--json"``).
    overwrite : bool, keyword-only
        Whether existing files may be replaced.
    figures : iterable of str, keyword-only
        The options of ``outputs`` that are figures: their suffix must be a format of
        :data:`PLOT_SUFFIXES` and matplotlib must be installed.

    Raises
    ------
    InputError
        For the first path that is a folder, exists (without ``overwrite``), lies in a
        folder that does not exist, is given to two options, or is a figure that cannot
        be drawn.
    """
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        resolved = path.resolve()
        if resolved in seen:
            raise InputError(f"{path}: given to both {seen[resolved]} and {option}")
        seen[resolved] = option
        if path.is_dir():
            raise InputError(f"{path}: is a directory; give a file name for {option}")
        if path.exists() and not overwrite:
            raise InputError(f"{path}: already exists ({OVERWRITE_ADVICE})")
        if not path.parent.is_dir():
            raise InputError(f"{path.parent}: output folder does not exist ({option})")
    for option in figures:
        plot = outputs.get(option)
        if plot is None:
            continue
        if Path(plot).suffix.lower() not in PLOT_SUFFIXES:
            raise InputError(f"{plot}: unknown figure format; use {', '.join(PLOT_SUFFIXES)}")
        if importlib.util.find_spec("matplotlib") is None:
            raise InputError(
                f"{option} needs matplotlib; install it with `pip install filterscope[plot]`"
            )
