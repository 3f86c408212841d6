"""Saving and loading model weights without running code from the file.

Two formats are read:

- **filterscope's own**: ``NAME.safetensors`` (the weights) beside ``NAME.json``
  (the model card: architecture, constructor options, bias, channels, training σ
  range, data, recipe, measured metrics). A plain-dict ``.pt`` with keys ``arch``,
  ``config`` and ``state_dict`` (what the trainer writes) is read too. ``arch`` is a
  registered architecture (built in, or registered by the user's code with
  :func:`filterscope.register_architecture`); the Python object path
  ``package.module:attribute`` of a user's network that ``filterscope train`` trained
  is built only when the caller trusts it (``trust_code=True``, see
  :func:`load_checkpoint`).
- **published**: the checkpoints of Mohan et al. (ICLR 2020); see
  :mod:`filterscope.models.published`.

Pickled files are opened with ``torch.load(weights_only=True)`` and an allow-list
holding only ``argparse.Namespace`` (which the published files contain); any other
object in a pickle is refused with a :class:`~filterscope.errors.CheckpointError`.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_write
from ..errors import (
    OVERWRITE_ADVICE,
    TRUST_CODE_ADVICE,
    CheckpointError,
    InputError,
    ModelImportError,
    UnsupportedLayerError,
)
from .base import CNNDenoiser
from .published import build_published_model, is_published_checkpoint
from .registry import (
    architecture_class,
    check_architecture_options,
    create_model,
    list_models,
)
from .shipped import list_shipped, shipped_weights
from .user import build_network, code_trusted, is_object_path, trusting_code

CARD_FORMAT = "filterscope-model-card/1"
SAFE_GLOBALS = [argparse.Namespace]


def card_path(weights_path: str | Path) -> Path:
    """The JSON model card that belongs to a ``.safetensors`` file."""
    return Path(weights_path).with_suffix(".json")


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def save_model(
    model: torch.nn.Module,
    path: str | Path,
    *,
    card: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as ``path`` (``.safetensors``) plus its JSON model card.

    Parameters
    ----------
    model : CNNDenoiser or nn.Module
        A registered architecture, or a network built from a Python object path
        (:func:`filterscope.models.user.build_network`).
    path : str or Path
        Must end in ``.safetensors``; the card goes to the same name with ``.json``.
    card : dict, keyword-only
        Extra card fields (``training``, ``metrics``, ``description``...). ``arch``,
        ``config``, ``bias`` and ``in_channels`` are filled in from a registered
        architecture; for another network the card must give them (``arch`` its object
        path, ``config`` the options of its class or factory).
    overwrite : bool, keyword-only
        Refuse to replace existing files unless True.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: model files end in .safetensors")
    full_card = {"format": CARD_FORMAT}
    if isinstance(model, CNNDenoiser):
        full_card.update(
            arch=model.arch, bias=model.bias, in_channels=model.in_channels, config=model.config
        )
    full_card.update(card or {})
    missing = [key for key in ("arch", "bias", "in_channels", "config") if key not in full_card]
    if missing:
        raise ValueError(
            f"card: {', '.join(missing)} needed to rebuild a {type(model).__name__}, "
            "which is not a registered architecture"
        )
    meta_path = card_path(path)
    for target in (path, meta_path):
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target}: already exists ({OVERWRITE_ADVICE})")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _write_bytes(path, save(state))
    _write_bytes(meta_path, (json.dumps(full_card, indent=2) + "\n").encode())
    return path


def _check_option_types(arch: str, config: dict[str, Any], source: Path) -> None:
    """Refuse a config value whose type differs from the constructor's default for it
    (``hidden = "sixty-four"``), naming the option, before the constructor sees it
    (:func:`~filterscope.models.registry.check_architecture_options`)."""
    try:
        check_architecture_options(arch, architecture_class(arch), config)
    except InputError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def _build(card: dict[str, Any], state: dict[str, torch.Tensor], source: Path) -> torch.nn.Module:
    """The network ``card`` (or a ``.pt`` dict) describes, with the weights ``state``."""
    arch, config = card.get("arch"), card.get("config")
    registered = isinstance(arch, str) and arch in list_models()
    if not registered and not is_object_path(arch):
        raise CheckpointError(f"{source}: unknown architecture {arch!r} in checkpoint")
    if not registered and not code_trusted(arch):
        # Refused before anything is imported: the file must not choose the code it runs.
        raise CheckpointError(
            f"{source}: the card names code ({arch}), not a registered architecture "
            f"({', '.join(list_models())}); {TRUST_CODE_ADVICE}"
        )
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: checkpoint config is not a mapping")
    target = architecture_class(arch) if registered else None
    if isinstance(target, type) and issubclass(target, CNNDenoiser):
        _check_option_types(arch, config, source)
        try:
            model = create_model(arch, **config)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{source}: cannot build {arch} from its config ({exc})"
            ) from None
    else:
        model = _build_user_network(card, source, registered=registered)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{source}: weights do not fit {arch} ({first})") from None
    return model.eval()


def _build_user_network(card: dict[str, Any], source: Path, *, registered: bool) -> torch.nn.Module:
    """A user's network (a registered name, or a trusted object path), built as
    ``filterscope train`` built it."""
    arch, bias, channels = card["arch"], card.get("bias"), card.get("in_channels")
    if not isinstance(bias, bool) or not isinstance(channels, int) or isinstance(channels, bool):
        raise CheckpointError(
            f"{source}: {arch} needs bias (true or false) and in_channels (an integer) in its card"
        )
    try:
        if registered:
            return create_model(arch, bias=bias, in_channels=channels, **card["config"])
        return build_network(arch, card["config"], in_channels=channels, bias=bias, trusted=True)
    except (ModelImportError, UnsupportedLayerError) as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def _load_safetensors(path: Path) -> CNNDenoiser:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta_path = card_path(path)
    if not meta_path.exists():
        raise CheckpointError(f"{path}: model card {meta_path.name} is missing beside it")
    try:
        card = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not a readable model card ({exc})") from None
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    model = _build(card, state, path)
    model.card = card
    return model


def save_pickle(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path``, atomically (:func:`~filterscope._files.atomic_write`).

    A failed write (a full disk) is an ``OSError`` naming ``path``: ``torch.save``
    reports it as a ``RuntimeError`` from its C++ stream, which says nothing useful.
    """

    def write(tmp: str) -> None:
        try:
            torch.save(obj, tmp)
        except RuntimeError:
            raise OSError(errno.EIO, "write failed (is the disk full?)", str(path)) from None

    return atomic_write(path, write, suffix=".pt")


def load_pickle_safely(path: str | os.PathLike) -> Any:
    """``torch.load`` of ``path`` that never runs code from the file (weights-only).

    The one way filterscope opens a pickled file (model checkpoints, training
    checkpoints). Objects outside the allow-list (:data:`SAFE_GLOBALS`) are refused,
    and every failure becomes one :class:`CheckpointError` that says what the file is,
    never PyTorch's advice to retry with ``weights_only=False``.

    Raises
    ------
    CheckpointError
        ``refused: ... could run code`` for a pickle referencing a forbidden object;
        ``not a checkpoint ...`` for anything else that is not a PyTorch file (random
        bytes, a truncated or damaged file).
    """
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it did not write ("return Unpickler(...)")
            # before refusing such files: the error below says all there is to say
            warnings.simplefilter("ignore")
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):
            raise CheckpointError(
                f"{path}: refused: the file holds Python objects that could run code; "
                "only plain tensors and dicts are accepted"
            ) from None
        raise CheckpointError(
            f"{path}: not a checkpoint (not a PyTorch or safetensors file, or a damaged one)"
        ) from None
    except OSError:
        raise
    except Exception:  # torch raises struct.error, RuntimeError... on junk files
        raise CheckpointError(
            f"{path}: not a checkpoint (not a PyTorch or safetensors file, or a damaged one)"
        ) from None


def load_checkpoint(path: str | os.PathLike, *, trust_code: bool = False) -> CNNDenoiser:
    """Load any checkpoint filterscope understands, without unpickling arbitrary objects.

    Parameters
    ----------
    path : str or path-like
        ``.safetensors`` with its ``.json`` card, a filterscope ``.pt`` dict, or a
        published checkpoint of Mohan et al. (ICLR 2020); or the name of a shipped model
        (``"bf-dncnn-gray"``, see :func:`filterscope.models.shipped.list_shipped`), loaded
        from the package's weights when no file of that name exists.
        :func:`filterscope.load_model` loads every other registered denoiser too.
    trust_code : bool, keyword-only
        Let a card whose ``arch`` is a Python object path import and run that code
        (default False: such a file is refused before anything is imported).

    Returns
    -------
    CNNDenoiser or Denoiser
        In eval mode on the CPU, with a ``card`` attribute (dict) describing it. A
        network registered with :func:`filterscope.register_architecture`, or trained
        from a trusted object path, comes back as
        :func:`filterscope.models.user.build_network` builds it: its ``nn.Module``
        class or factory is called with the card's ``config`` (and ``in_channels=``
        when it takes it), the result is made bias-free again when the card says
        ``bias = false``, and the weights are loaded.

    Raises
    ------
    CheckpointError
        Missing or unreadable file, unknown architecture, a card naming code without
        ``trust_code``, weights that do not fit, a pickle referencing anything outside
        the allow-list, or an object path that does not import or give the network.

    Notes
    -----
    A file never chooses code: no code is read from it, and it builds only registered
    architectures (built in, or registered by code the user imported). A card naming
    an object path ``package.module:attribute`` (what ``filterscope train`` writes for
    a user's own network) is refused before any import unless ``trust_code=True``;
    then that module is imported, which runs its top-level code as any ``import``
    does, and the ``nn.Module`` class or factory function it names (outside the
    standard library and torch, :func:`filterscope.models.user.network_factory`) is
    called. Register the network instead to load such files without trusting them.
    """
    with trusting_code(trust_code):
        return _load_checkpoint(os.fspath(path))


def _load_checkpoint(text: str) -> CNNDenoiser:
    path = Path(text)
    if not path.exists():
        weights = shipped_weights(text)
        if weights is not None:
            return _load_checkpoint(str(weights))
        raise CheckpointError(f"{path}: no such checkpoint file{_shipped_hint(text)}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if path.suffix == ".json" and path.with_suffix(".safetensors").exists():
        return _load_safetensors(path.with_suffix(".safetensors"))
    obj = load_pickle_safely(path)
    if is_published_checkpoint(obj):
        return build_published_model(obj, path)
    if isinstance(obj, dict) and {"arch", "config", "state_dict"} <= set(obj):
        model = _build(obj, obj["state_dict"], path)
        model.card = {k: v for k, v in obj.items() if k != "state_dict" and k != "optimizer"}
        return model
    raise CheckpointError(f"{path}: not a checkpoint of a known layout")


def _shipped_hint(text: str) -> str:
    """For a bare name that is no file: the shipped names it could have meant."""
    if "/" in text or "\\" in text or Path(text).suffix:
        return ""
    names = ", ".join(list_shipped()) or "none installed"
    return (
        f" or shipped model (shipped: {names}; filterscope.load_model loads every "
        "registered denoiser)"
    )
