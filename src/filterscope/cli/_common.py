"""Helpers shared by the command-line modules: reading inputs, parsing σ lists and pixels,
writing JSON reports. Everything here turns text or files into what a library function
takes, or writes what it returns; no analysis happens here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OVERWRITE_ADVICE, RESUME_ADVICE, TRUST_CODE_ADVICE, InputError

if TYPE_CHECKING:  # torch is imported by the functions that need it: `--help` stays fast
    import torch


# The library's advice names Python parameters; the commands have flags for them.
_FLAG_ADVICE = {
    OVERWRITE_ADVICE: "use --force to overwrite",
    RESUME_ADVICE: "use --resume to go on with it, or another --out",
    TRUST_CODE_ADVICE: "if you trust that code, add --trust-code",
}


def add_trust_code_option(parser) -> None:
    """``--trust-code`` of every command that loads a model: a model file whose card
    names a Python object path is refused unless it is given (see
    :func:`filterscope.models.user.trusting_code`)."""
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="let a model file build the network its card names by a Python object path "
        "(imports and runs that code; only for files you trust)",
    )


def cli_message(message: str) -> str:
    """A library message worded for the command line: its advice in flags, not parameters."""
    for advice, flags in _FLAG_ADVICE.items():
        message = message.replace(advice, flags)
    return message


def options(args, *names: str) -> dict:
    """``{name: args.name}`` for the parsed options that go to a library call unchanged."""
    return {name: getattr(args, name) for name in names}


def add_device_option(parser, *, default: str = "auto", what: str = "the network") -> None:
    """The ``--device`` option of every command that runs a network: a torch device name
    the library resolves (an absent GPU is refused there, before any work)."""
    parser.add_argument(
        "--device",
        default=default,
        metavar="DEVICE",
        help=f"torch device to run {what} on: auto (cuda if available, else cpu), cpu, "
        f"cuda or cuda:N (default: {default})",
    )


def parse_sigmas(text: str) -> list[float]:
    """``"10,30,50"`` or ``"10:100:10"`` (start:stop:step, stop included) -> σ's (0–255)."""
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError  # empty and descending ranges too (10:0:10, 100:10:10)
            start, stop, step = parts
            count = int((stop - start) / step + 1e-9) + 1
            values = [start + k * step for k in range(count)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(
            f"cannot read noise levels {text!r}; give e.g. 10,30,50 or 10:100:10 (0-255 scale)"
        ) from None
    if not values:
        raise InputError("no noise level given")
    for v in values:
        if not v >= 0:
            raise InputError(f"noise levels must be >= 0 (0-255 scale), got {v:g}")
    return values


def parse_pixel(text: str) -> tuple[int, int]:
    """``"X,Y"`` -> ``(x, y)`` (column, row)."""
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"a pixel is X,Y (column,row), got {text!r}") from None
    return x, y


def read_tensor(path: str | os.PathLike, *, with_info: bool = False):
    """An image file as a ``(1, C, H, W)`` float64 tensor in [0, 1]; with its
    :class:`~filterscope.io.ImageInfo` (bit depth, metadata) when asked."""
    import torch

    from ..io import read_image, to_tensor

    image, info = read_image(path)
    tensor = to_tensor(image).to(torch.float64)
    return (tensor, info) if with_info else tensor


def read_folder(
    folder: str | os.PathLike, *, limit: int | None = None
) -> tuple[list[Path], list[torch.Tensor]]:
    """The image files of ``folder`` in name order (the first ``limit``) and their
    ``(C, H, W)`` float64 tensors; refuses an empty folder and a mix of gray and colour."""
    from ..io import list_images

    if limit is not None and limit < 1:
        raise InputError(f"the number of images must be positive, got {limit}")
    files = list_images(folder)
    if not files:
        raise InputError(f"{folder}: no image files in this folder")
    files = files[:limit] if limit is not None else files
    images = [read_tensor(f)[0] for f in files]
    if any(image.shape[0] != images[0].shape[0] for image in images):
        raise InputError(f"{folder}: mixes gray and colour images; use one kind")
    return files, images


def load_model(name_or_path: str | None, channels: int) -> torch.nn.Module:
    """The model a ``--model`` value names (None: the shipped default for ``channels``)."""
    from ..inference import _load_model

    return _load_model(name_or_path, channels)


def check_channels(net: torch.nn.Module, channels: int, what: str) -> None:
    """Refuse an image whose channel count the model does not take."""
    expected = getattr(net, "in_channels", None)
    if expected is not None and expected != channels:
        raise InputError(
            f"{what} has {channels} channel(s) but the model takes {expected}; "
            "use a model for that channel count"
        )


#: The options through which commands read files or folders (models, images, data).
INPUT_OPTIONS = (
    "input", "inputs", "image", "data", "clean", "model", "recipe", "test_dir",
    "bias_model", "bias_free_model", "data_dir", "val_dir",
)  # fmt: skip


def read_paths(args) -> dict[str, list[Path]]:
    """``{"an input": files}``: every file the parsed options read (a folder's images, a
    model file with its card), as ``in_use`` of :func:`filterscope._files.check_output_paths`,
    so that no output replaces an input, with or without --force."""
    from ..io import input_files

    paths: list = []
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        paths.extend(value if isinstance(value, (list, tuple)) else [value])
    return {"an input": input_files(paths)}


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, atomically (an interrupted write leaves no file)."""
    from .._files import atomic_write

    text = json.dumps(payload, indent=2) + "\n"
    return atomic_write(path, lambda name: Path(name).write_text(text))


def figure_path(json_path: str | os.PathLike, suffix: str = "") -> Path:
    """``OUT.json`` -> ``OUT<suffix>.png``, the figure written beside a JSON report."""
    p = Path(json_path)
    return p.with_name(p.stem + suffix + ".png")


def model_label(model: str | None) -> str:
    """Short model name for figure titles: the name, or a checkpoint's last two path parts."""
    if model is None:
        return "default model"
    return "/".join(Path(str(model)).parts[-2:])
