"""Options objects: one dataclass instead of a dozen keyword arguments.

A function with many knobs takes ``options`` (a frozen dataclass) and, so that call
sites stay readable, the same fields as keyword arguments, which replace those of
``options``: ``denoise_files(inputs, out, DenoiseOptions(tile=256), sigma=0.1)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def merge_options(kind: type[T], options: T | None, settings: dict[str, Any]) -> T:
    """``options`` (default: ``kind()``) with the fields named in ``settings`` replaced.

    Raises
    ------
    TypeError
        ``options`` is not a ``kind``, or a setting that is no field of ``kind`` (as an
        unknown keyword argument would).
    """
    if options is None:
        options = kind()
    elif not isinstance(options, kind):
        raise TypeError(f"options must be a {kind.__name__}, got {type(options).__name__}")
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(kind)})
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(unknown)}; "
            f"the fields of {kind.__name__} are accepted"
        )
    return dataclasses.replace(options, **settings) if settings else options


__all__ = ["merge_options"]
