"""Output files: atomic writes (images, model files, checkpoints) and the checks made
before any work, so that a command never fails half-way or replaces a file unasked."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .errors import OVERWRITE_ADVICE, InputError

#: Figure formats matplotlib writes, by suffix.
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")

#: Name prefix of the temporary files of :func:`atomic_write`: recognisable, so that a
#: file left by a killed process is never read as an input (see :func:`is_temporary`).
TMP_PREFIX = ".filterscope-tmp-"


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the temporary file of an atomic write (ours, or the ``.tmp-``
    files of filterscope before 0.x), which a folder read as input skips."""
    name = Path(path).name
    return name.startswith(TMP_PREFIX) or name.startswith(".tmp-")


def resolved(path: str | os.PathLike) -> Path:
    """``Path(path).resolve()``, with a symbolic link loop refused in one line."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError for a loop
        raise InputError(f"{path}: symbolic link loop; remove or fix the link") from None


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Age (seconds) after which a temporary file of ours is taken as left by a killed
#: process: no write takes a day, and its file's modification time moves while it runs.
STALE_AFTER_S = 24 * 3600

_swept: set[Path] = set()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of atomic writes (:data:`TMP_PREFIX`) in ``folder``
    untouched for :data:`STALE_AFTER_S`; younger ones may belong to a write still
    running in another process and are left. Errors (a read-only folder) are ignored.
    Returns the files removed."""
    removed = []
    now = time.time()
    try:
        candidates = list(Path(folder).glob(TMP_PREFIX + "*"))
    except OSError:
        return removed
    for path in candidates:
        try:
            if path.is_file() and not path.is_symlink():
                if now - path.stat().st_mtime > STALE_AFTER_S:
                    path.unlink()
                    removed.append(path)
        except OSError:
            continue
    return removed


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], None], *, suffix: str = ""
) -> Path:
    """Write ``path`` through ``write(temporary_name)`` and rename it into place.

    The temporary file lies in the destination folder (so the rename is atomic), gets
    the usual permissions (``mkstemp`` creates it readable by its owner only), and is
    removed if ``write`` fails: an interrupted write never leaves a half-written file
    and never destroys an existing one. ``suffix`` is the temporary file's suffix, for
    writers that pick the format from it. ``OSError`` from creating the file or from
    ``write`` propagates. The first write into a folder also removes the temporary
    files a killed process left there a day or more ago
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    if path.parent not in _swept:
        _swept.add(path.parent)
        remove_stale_temporaries(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=path.parent)
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
    in_use: Mapping[str, Iterable[str | os.PathLike]] | None = None,
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
        be drawn; or, whatever ``overwrite`` says, a path of ``in_use``.
    in_use : mapping or None, keyword-only
        What else the command reads or writes, as description → paths (``{"an input":
        io.input_files([...]), "an output image": [...]}``): no output may be one of them.
    """
    taken: dict[Path, str] = {}
    for description, paths in (in_use or {}).items():
        for path in paths:
            taken.setdefault(resolved(path), description)
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        target = resolved(path)
        if target in taken:
            raise InputError(f"{path}: is {taken[target]} of this run; give {option} another file")
        if target in seen:
            raise InputError(f"{path}: given to both {seen[target]} and {option}")
        seen[target] = option
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
