"""One registry of every denoiser a user can name, and :func:`load_model` for all of them.

Every method is registered once with its metadata (:class:`ModelInfo`):

- ``architecture``: each network of :func:`filterscope.models.create_model` with freshly
  initialised weights (``load_model("dncnn", bias=False, in_channels=3)``), the user's
  own included once registered with :func:`register_architecture`;
- ``shipped``: each ``NAME.safetensors`` + ``NAME.json`` pair in ``filterscope/weights/``,
  found when asked (a new pair is picked up without code changes); the model card is
  the metadata (training σ range, data, scores);
- ``classical``: BM3D and NLM (scikit-image), given the true σ, or ``bm3d:estimate`` /
  ``nlm:estimate`` estimating it from each noisy image;
- ``nonlocal``: the NTK and NLM non-local filters with twicing (Tachella et al. 2021);
- ``dip``: the deep image prior, a network fitted to each noisy image on its own.

:func:`load_model` also reads a checkpoint file (filterscope's own or a published one
of Mohan et al. 2020) and a Python object path ``package.module:attribute`` that the
user gives, naming an ``nn.Module`` class (or a factory registered with
:func:`register_architecture`); a module that is not a
:class:`~filterscope.models.base.Denoiser` is wrapped in
:class:`~filterscope.models.adapter.ModuleDenoiser`.

**A file never chooses code** (:mod:`filterscope.models.user`): a checkpoint builds
only registered architectures. A card naming an object path (a network trained by
``filterscope train`` from one) is refused before any import unless the caller passes
``trust_code=True`` (``--trust-code``). An object path given by the user is checked
before anything is called: ``os:system`` or ``sys:exit`` are refused, never run.

Resolution order: registered name (optionally ``name:variant``), existing file, object
path. A missing file (a name with a ``/`` or a checkpoint suffix) is a
:class:`~filterscope.errors.CheckpointError`; anything else is an
:class:`~filterscope.errors.UnknownModelError` listing the close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, ModelImportError, UnknownModelError
from .models.user import (
    build_network,
    import_object,
    is_object_path,
    load_object,
    network_factory,
    register_architecture,
    trusting_code,
)

if TYPE_CHECKING:  # torch is imported when a model is loaded, not to list them
    from torch import nn

    from .models.adapter import as_denoiser
    from .models.base import Denoiser

KINDS = ("architecture", "shipped", "classical", "nonlocal", "dip", "checkpoint", "python")

#: File suffixes that make a name a checkpoint path (refused when the file is missing).
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".json")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a denoiser, before or after loading it.

    Attributes
    ----------
    name : str
        Registered name, path or object path.
    kind : str
        One of :data:`KINDS`.
    description : str
        One line.
    blind : bool
        True when the method (with its default options) does not need σ.
    sigma_source : {"blind", "true", "estimated"}
        Where its noise level comes from with the default options.
    channels : tuple of int
        Channel counts it can denoise (1 gray, 3 RGB).
    channels_option : str or None
        The loading option that sets the channel count (``"in_channels"`` for
        architectures); None when the loaded model takes all of ``channels``.
    bias_free : bool or None
        True when no additive constant is left, so that ``f(a y) = a f(y)``;
        None for methods where this is not a property of the method.
    training_sigma_range_255 : (float, float) or None
        Noise levels it was trained on, 0–255 scale (from the model card).
    data : str or None
        Training data.
    license : str or None
        Licence of the package the method relies on, where it differs from
        filterscope's own.
    variants : mapping of str to mapping
        ``name:variant`` suffixes and the options each stands for.
    card : mapping or None
        The model card of a shipped model or checkpoint.
    """

    name: str
    kind: str
    description: str
    blind: bool
    sigma_source: str
    channels: tuple[int, ...] = (1, 3)
    channels_option: str | None = None
    bias_free: bool | None = None
    training_sigma_range_255: tuple[float, float] | None = None
    data: str | None = None
    license: str | None = None
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    card: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (σ range on the 0–255 scale)."""
        out = {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "blind": self.blind,
            "sigma_source": self.sigma_source,
            "channels": list(self.channels),
            "bias_free": self.bias_free,
            "training_sigma_range_255": (
                None
                if self.training_sigma_range_255 is None
                else list(self.training_sigma_range_255)
            ),
            "data": self.data,
            "license": self.license,
        }
        if self.variants:
            out["variants"] = {k: dict(v) for k, v in self.variants.items()}
        return out


@dataclass(frozen=True)
class LoadedModel:
    """A denoiser with its metadata, as :func:`resolve` returns it.

    Attributes
    ----------
    denoiser : Denoiser
        In eval mode, on the CPU.
    info : ModelInfo
        Metadata; ``info.name`` is the name or path as given.
    options : dict
        The options it was built with (variant options included).
    """

    denoiser: Denoiser
    info: ModelInfo
    options: dict[str, Any]


_REGISTRY: dict[str, tuple[ModelInfo, Callable[..., nn.Module]]] = {}


def register_denoiser(info: ModelInfo, factory: Callable[..., nn.Module]) -> None:
    """Make a method loadable by ``info.name``: ``factory(**options)`` builds it.

    Raises
    ------
    ValueError
        The name is taken, or ``info.kind`` is not one of :data:`KINDS`.
    """
    if info.kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {info.kind!r}")
    from .models.registry import list_models as list_architectures

    if info.name in _REGISTRY or info.name in list_architectures():
        raise ValueError(f"denoiser {info.name!r} is registered twice")
    _REGISTRY[info.name] = (info, factory)


def _shipped() -> dict[str, tuple[ModelInfo, Callable[..., nn.Module]]]:
    from .models import zoo

    entries = {}
    for name, card in zoo.list_shipped().items():
        entries[name] = (shipped_info(name, card), _shipped_factory(name))
    return entries


def _shipped_factory(name: str) -> Callable[..., nn.Module]:
    def load(**options: Any) -> nn.Module:
        from .models import zoo
        from .models.base import BlindMode

        blind_mode = options.pop("sigma_source", None) == "blind"
        if options:
            raise ModelImportError(
                f"{name}: a shipped model takes no options, got {sorted(options)}"
            )
        model = zoo.load_model(name)
        return BlindMode(model) if blind_mode else model

    return load


#: ``name:blind`` for networks with a noise-level input: σ is never passed on.
BLIND_VARIANT = {"blind": {"sigma_source": "blind"}}


def _sigma_range(card: Mapping[str, Any]) -> tuple[float, float] | None:
    sigma_range = (card.get("training") or {}).get("sigma_range_255")
    if isinstance(sigma_range, (list, tuple)) and len(sigma_range) == 2:
        return (float(sigma_range[0]), float(sigma_range[1]))
    return None


def shipped_info(name: str, card: Mapping[str, Any], *, kind: str = "shipped") -> ModelInfo:
    """:class:`ModelInfo` of a trained network from its model card."""
    arch = card.get("arch", "?")
    bias = card.get("bias")
    channels = card.get("in_channels")
    data = (card.get("training") or {}).get("data")
    config = card.get("config") or {}
    # A network with a noise-level input uses the σ it is given (blind when given none).
    uses_sigma = bool(config.get("noise_map", False))
    return ModelInfo(
        name=name,
        kind=kind,
        description=card.get("description")
        or f"{'bias-free ' if bias is False else ''}{arch} ({card.get('source', 'trained')})",
        blind=True,
        sigma_source="true" if uses_sigma else "blind",
        channels=(int(channels),) if channels in (1, 3) else (1, 3),
        bias_free=None if bias is None else not bias,
        training_sigma_range_255=_sigma_range(card),
        data=None if data is None else str(data),
        card=dict(card),
        variants=BLIND_VARIANT if uses_sigma and kind == "shipped" else {},
    )


def _entries() -> dict[str, tuple[ModelInfo, Callable[..., nn.Module]]]:
    return {**_architectures(), **_REGISTRY, **_shipped()}


def list_models(kind: str | None = None) -> list[str]:
    """Names :func:`load_model` accepts, sorted, optionally of one ``kind``.

    Parameters
    ----------
    kind : str or None
        ``"architecture"``, ``"shipped"``, ``"classical"``, ``"nonlocal"`` or ``"dip"``;
        None lists all.
    """
    if kind is not None and kind not in KINDS:
        raise UnknownModelError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return sorted(name for name, (info, _) in _entries().items() if kind in (None, info.kind))


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered name (``bm3d:estimate`` included)."""
    entries = _entries()
    base, variant = _split_variant(name, entries)
    if base is None:
        raise UnknownModelError(_unknown_message(name, entries))
    info, _ = entries[base]
    return _with_variant(info, name, variant)


def _split_variant(name: str, entries: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if name in entries:
        return name, None
    base, sep, suffix = name.partition(":")
    for candidate in (base, base.lower()):
        if sep and candidate in entries and suffix.lower() in entries[candidate][0].variants:
            return candidate, suffix.lower()
    if name.lower() in entries:
        return name.lower(), None
    return None, None


def _check_variant(text: str, entries: Mapping[str, Any]) -> None:
    """Refuse ``name:suffix`` where ``name`` has variants but not this one."""
    base, sep, suffix = text.partition(":")
    info = entries.get(base.lower(), (None,))[0] if sep else None
    if info is not None and info.variants:
        choices = ", ".join(f"{base}:{v}" for v in info.variants)
        raise UnknownModelError(
            f"{text}: unknown variant {suffix!r} (an unknown noise-level source); "
            f"use {base} or one of {choices}"
        )


def _with_variant(info: ModelInfo, name: str, variant: str | None) -> ModelInfo:
    if variant is None:
        return info
    options = info.variants[variant]
    source = options.get("sigma_source", info.sigma_source)
    return replace(info, name=name, sigma_source=source, blind=source != "true")


def _unknown_message(name: str, entries: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (
        f"unknown model {name!r}: {hint}give a registered name (`filterscope models`), "
        "a checkpoint file or a Python object path package.module:attribute"
    )


def resolve(name_or_path: str | Path, *, trust_code: bool = False, **options: Any) -> LoadedModel:
    """Load a denoiser with its metadata (see :func:`load_model` for what is accepted)."""
    with trusting_code(trust_code):
        return _resolve(str(name_or_path), options)


def _resolve(text: str, options: dict[str, Any]) -> LoadedModel:
    from .models.adapter import as_denoiser

    if not text.strip():
        raise UnknownModelError("empty model name")
    entries = _entries()
    path = Path(text)
    base, variant = (None, None) if path.exists() else _split_variant(text, entries)
    if base is not None:
        info, factory = entries[base]
        info = _with_variant(info, text, variant)
        options = {**(info.variants.get(variant, {}) if variant else {}), **options}
        denoiser = as_denoiser(factory(**options), text)
        return LoadedModel(denoiser.eval(), _info_of(info, denoiser), options)
    if path.exists():
        return _load_file(path, text, options)
    if "/" in text or "\\" in text or path.suffix in CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"{text}: no such checkpoint file")
    _check_variant(text, entries)
    if is_object_path(text):
        module = load_object(text, **options)
        return LoadedModel(module.eval(), python_info(text, module), options)
    raise UnknownModelError(_unknown_message(text, entries))


def _info_of(info: ModelInfo, denoiser: Denoiser) -> ModelInfo:
    """The registered info, updated with what options changed (channels, bias)."""
    if info.kind != "architecture":
        return info
    bias = getattr(denoiser, "bias", None)  # unknown for a user's plain nn.Module
    return replace(
        info,
        channels=info.channels if denoiser.in_channels is None else (denoiser.in_channels,),
        bias_free=None if not isinstance(bias, bool) else not bias,
    )


def _load_file(path: Path, text: str, options: Mapping[str, Any]) -> LoadedModel:
    from .models import zoo

    if options:
        raise ModelImportError(f"{text}: a checkpoint file takes no options, got {sorted(options)}")
    model = zoo.load_model(path)
    info = shipped_info(text, getattr(model, "card", {}) or {}, kind="checkpoint")
    return LoadedModel(model.eval(), info, {})


def load_model(name_or_path: str | Path, *, trust_code: bool = False, **options: Any) -> Denoiser:
    """A denoiser by registered name, checkpoint path or Python object path.

    Parameters
    ----------
    name_or_path : str or path
        - a registered name (:func:`list_models`): ``"bf-dncnn-gray"`` (shipped
          weights), ``"dncnn"`` (random weights), ``"bm3d"``, ``"nlm:estimate"``,
          ``"ntk"``, ``"dip"``...;
        - a checkpoint file: filterscope ``.safetensors`` (with its ``.json`` card) or
          ``.pt``, or a published checkpoint of Mohan et al. (ICLR 2020);
        - ``package.module:attribute``: an ``nn.Module`` class (or instance), or a
          factory registered with :func:`filterscope.register_architecture`,
          importable from the current Python path (a user's own network). Any other
          callable is refused before it is called.
    trust_code : bool, keyword-only
        Let a checkpoint whose card names a Python object path (a network trained by
        ``filterscope train`` from one) import and run that code. Default False: a
        file builds only registered architectures and such a file is refused.
    **options
        Passed to the constructor or factory (``bias=False, in_channels=3`` for an
        architecture, ``stop=4`` for ``ntk``...). Checkpoints and shipped models
        take none.

    Returns
    -------
    Denoiser
        In eval mode on the CPU; ``forward(y, sigma=None, **kwargs)``.

    Raises
    ------
    UnknownModelError
        Nothing of that name (the message lists close matches).
    ModelImportError
        An object path that does not import, or names no ``nn.Module`` class or
        registered factory.
    CheckpointError
        A file that is not a loadable checkpoint, or whose card names code (without
        ``trust_code``).
    """
    return resolve(name_or_path, trust_code=trust_code, **options).denoiser


# ----------------------------------------------------------------------------- user modules


def python_info(path: str, denoiser: Denoiser) -> ModelInfo:
    """:class:`ModelInfo` of a denoiser loaded from an object path."""
    channels = denoiser.in_channels
    return ModelInfo(
        name=path,
        kind="python",
        description=f"{type(denoiser).__name__} from {path}",
        blind=denoiser.blind,
        sigma_source=denoiser.sigma_source,
        channels=(channels,) if channels in (1, 3) else (1, 3),
    )


# ----------------------------------------------------------------------------- registrations


#: One line per built-in architecture (the classes are imported only to build one).
ARCHITECTURE_SUMMARIES = {
    "dncnn": "DnCNN (Zhang et al. 2017): 20 conv layers with batch norm, residual.",
    "drunet": "DRUNet-style residual U-Net (Zhang et al. 2021), optional noise-level input.",
    "rcnn": "recurrent CNN (Zhang et al. 2018 style), as in Mohan et al. 2020.",
    "sdensenet": "simplified DenseNet, as in Mohan et al. 2020.",
    "unet": "U-Net, as in Mohan et al. 2020.",
}


def _architectures() -> dict[str, tuple[ModelInfo, Callable[..., nn.Module]]]:
    """Every registered architecture: the built-in ones, and those the user's code
    registered (:func:`register_architecture`) by the time it is asked."""
    from .models.registry import create_model
    from .models.registry import list_models as list_architectures

    entries = {}
    for arch in list_architectures():
        summary = ARCHITECTURE_SUMMARIES.get(arch, f"architecture {arch}.")

        def build(*, _arch: str = arch, **options: Any) -> nn.Module:
            return create_model(_arch, **options)

        info = ModelInfo(
            name=arch,
            kind="architecture",
            description=summary,
            blind=True,
            sigma_source="blind",
            channels=(1, 3),
            channels_option="in_channels",
            bias_free=True,
        )
        entries[arch] = (info, build)
    return entries


def _classical(method: str) -> Callable[..., nn.Module]:
    def build(**options: Any) -> nn.Module:
        from .evaluation.baselines import BASELINES

        return BASELINES[method](**options)

    return build


def _nonlocal(method: str) -> Callable[..., nn.Module]:
    def build(**options: Any) -> nn.Module:
        from .ntk.denoiser import nlm_denoiser, ntk_denoiser

        return (ntk_denoiser if method == "ntk" else nlm_denoiser)(**options)

    return build


def _dip(**options: Any) -> nn.Module:
    from .dip.fit import DIPDenoiser

    return DIPDenoiser(**options)


SIGMA_VARIANTS = {"true": {"sigma_source": "true"}, "estimate": {"sigma_source": "estimated"}}


def _register_methods() -> None:
    register_denoiser(
        ModelInfo(
            name="bm3d",
            kind="classical",
            description="BM3D (Dabov et al. 2007), bm3d package; true sigma, or "
            "bm3d:estimate from each image",
            blind=False,
            sigma_source="true",
            license="bm3d package: free for non-commercial use only",
            variants=SIGMA_VARIANTS,
        ),
        _classical("bm3d"),
    )
    register_denoiser(
        ModelInfo(
            name="nlm",
            kind="classical",
            description="non-local means (Buades et al. 2005), scikit-image; true sigma, "
            "or nlm:estimate from each image",
            blind=False,
            sigma_source="true",
            license="scikit-image: BSD-3-Clause",
            variants=SIGMA_VARIANTS,
        ),
        _classical("nlm"),
    )
    register_denoiser(
        ModelInfo(
            name="ntk",
            kind="nonlocal",
            description="non-local filter of a CNN's neural tangent kernel with twicing and "
            "SURE stopping (Tachella et al. 2021)",
            blind=False,
            sigma_source="true",
        ),
        _nonlocal("ntk"),
    )
    register_denoiser(
        ModelInfo(
            name="nlm-twicing",
            kind="nonlocal",
            description="non-local filter of the NLM affinity with twicing and SURE "
            "stopping (Tachella et al. 2021, equation 4)",
            blind=False,
            sigma_source="true",
        ),
        _nonlocal("nlm"),
    )
    register_denoiser(
        ModelInfo(
            name="dip",
            kind="dip",
            description="deep image prior: a network fitted to each noisy image alone "
            "(options of filterscope.dip.fit_single_image)",
            blind=True,
            sigma_source="blind",
        ),
        _dip,
    )


_register_methods()


def __getattr__(name: str) -> Any:
    # as_denoiser lives with the interface (models.adapter, which imports torch); it is
    # re-exported here, where users found it first, without importing torch to list models.
    if name == "as_denoiser":
        from .models.adapter import as_denoiser

        return as_denoiser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "KINDS",
    "LoadedModel",
    "ModelInfo",
    "as_denoiser",
    "build_network",
    "import_object",
    "is_object_path",
    "list_models",
    "load_model",
    "load_object",
    "model_info",
    "network_factory",
    "register_architecture",
    "register_denoiser",
    "resolve",
    "shipped_info",
    "trusting_code",
]
