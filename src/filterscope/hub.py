"""One registry of every denoiser a user can name, and :func:`load_model` for all of them.

Every method is registered once with its metadata (:class:`ModelInfo`):

- ``architecture``: each network of :func:`filterscope.models.create_model` with freshly
  initialised weights (``load_model("dncnn", bias=False, in_channels=3)``);
- ``shipped``: each ``NAME.safetensors`` + ``NAME.json`` pair in ``filterscope/weights/``,
  found when asked (a new pair is picked up without code changes); the model card is
  the metadata (training σ range, data, scores);
- ``classical``: BM3D and NLM (scikit-image), given the true σ, or ``bm3d:estimate`` /
  ``nlm:estimate`` estimating it from each noisy image;
- ``nonlocal``: the NTK and NLM non-local filters with twicing (Tachella et al. 2021);
- ``dip``: the deep image prior, a network fitted to each noisy image on its own.

:func:`load_model` also reads a checkpoint file (filterscope's own or a published one
of Mohan et al. 2020) and a Python object path ``package.module:attribute`` naming an
``nn.Module`` class or a factory returning one (a user's own network); a module
that is not a :class:`~filterscope.models.base.Denoiser` is wrapped in
:class:`~filterscope.models.adapter.ModuleDenoiser`. :func:`build_network` builds such
a network the way ``filterscope train`` trains it (``in_channels=``, bias-free on
request) and the way a model file of that training rebuilds it.

Resolution order: registered name (optionally ``name:variant``), existing file, object
path. A missing file (a name with a ``/`` or a checkpoint suffix) is a
:class:`~filterscope.errors.CheckpointError`; anything else is an
:class:`~filterscope.errors.UnknownModelError` listing the close matches.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, ModelImportError, UnknownModelError

if TYPE_CHECKING:  # torch is imported when a model is loaded, not to list them
    from torch import nn

    from .models.base import Denoiser

KINDS = ("architecture", "shipped", "classical", "nonlocal", "dip", "checkpoint", "python")

#: File suffixes that make a name a checkpoint path (refused when the file is missing).
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".json")

# package.module:attribute (attribute may be dotted: module:Class.factory)
_OBJECT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


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
    if info.name in _REGISTRY:
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
    return {**_REGISTRY, **_shipped()}


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


def resolve(name_or_path: str | Path, **options: Any) -> LoadedModel:
    """Load a denoiser with its metadata (see :func:`load_model` for what is accepted)."""
    text = str(name_or_path)
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
    return replace(
        info,
        channels=(denoiser.in_channels,),
        bias_free=not denoiser.bias,
    )


def _load_file(path: Path, text: str, options: Mapping[str, Any]) -> LoadedModel:
    from .models import zoo

    if options:
        raise ModelImportError(f"{text}: a checkpoint file takes no options, got {sorted(options)}")
    model = zoo.load_model(path)
    info = shipped_info(text, getattr(model, "card", {}) or {}, kind="checkpoint")
    return LoadedModel(model.eval(), info, {})


def load_model(name_or_path: str | Path, **options: Any) -> Denoiser:
    """A denoiser by registered name, checkpoint path or Python object path.

    Parameters
    ----------
    name_or_path : str or path
        - a registered name (:func:`list_models`): ``"bf-dncnn-gray"`` (shipped
          weights), ``"dncnn"`` (random weights), ``"bm3d"``, ``"nlm:estimate"``,
          ``"ntk"``, ``"dip"``...;
        - a checkpoint file: filterscope ``.safetensors`` (with its ``.json`` card) or
          ``.pt``, or a published checkpoint of Mohan et al. (ICLR 2020);
        - ``package.module:attribute``: an ``nn.Module`` class or a factory returning
          one, importable from the current Python path (a user's own network).
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
        An object path that does not import or is not a module class or factory.
    CheckpointError
        A file that is not a loadable checkpoint.
    """
    return resolve(name_or_path, **options).denoiser


# ----------------------------------------------------------------------------- user modules


def as_denoiser(module: nn.Module, name: str = "model") -> Denoiser:
    """``module`` itself when it is a Denoiser, else wrapped in a
    :class:`~filterscope.models.adapter.ModuleDenoiser`."""
    from torch import nn

    from .models.adapter import ModuleDenoiser
    from .models.base import Denoiser

    if isinstance(module, Denoiser):
        return module
    if isinstance(module, nn.Module):
        return ModuleDenoiser(module)
    raise ModelImportError(f"{name} gave a {type(module).__name__}, not a torch.nn.Module")


def is_object_path(text: object) -> bool:
    """True for text of the form ``package.module:attribute`` (``module:Class.factory`` too)."""
    return isinstance(text, str) and _OBJECT_PATH.match(text) is not None


def import_object(path: str) -> Any:
    """Import ``package.module:attribute`` and return the attribute: an ``nn.Module``
    instance, or a callable (a class or factory that should build one).

    Raises
    ------
    ModelImportError
        Not an object path, the module does not import, the attribute is missing, or
        it is neither a module nor callable.
    """
    if not is_object_path(path):
        raise ModelImportError(f"{path!r} is not an object path package.module:attribute")
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # an import runs user code, which may raise anything
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ModelImportError(
            f"{path}: cannot import {module_name} ({type(exc).__name__}: {detail})"
        ) from None
    from torch import nn

    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelImportError(f"{path}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not isinstance(target, nn.Module) and not callable(target):
        raise ModelImportError(
            f"{path} is a {type(target).__name__}, not a torch.nn.Module class or factory"
        )
    return target


def _build_object(path: str, target: Any, options: Mapping[str, Any]) -> nn.Module:
    """The module ``target`` (from :func:`import_object`) is or builds with ``options``."""
    from torch import nn

    if isinstance(target, nn.Module):
        if options:
            raise ModelImportError(f"{path} is a module instance; it takes no options")
        return target
    try:
        built = target(**options)
    except TypeError as exc:
        raise ModelImportError(f"{path}: cannot build it with {dict(options)} ({exc})") from None
    if not isinstance(built, nn.Module):
        raise ModelImportError(f"{path} returned a {type(built).__name__}, not a torch.nn.Module")
    return built


def load_object(path: str, **options: Any) -> Denoiser:
    """Import ``package.module:attribute`` and build the denoiser it names.

    ``attribute`` may be an ``nn.Module`` subclass (instantiated with ``options``), a
    factory (called with ``options``, must return an ``nn.Module``) or a module
    instance (no options).

    Raises
    ------
    ModelImportError
        The module does not import, the attribute is missing, or it gives no module.
    """
    return as_denoiser(_build_object(path, import_object(path), options), path)


def network_factory(path: str) -> Callable[..., nn.Module]:
    """The ``nn.Module`` class or factory function that ``path`` names, as a trainable
    network must be named (see :func:`build_network`).

    Raises
    ------
    ModelImportError
        What :func:`import_object` refuses; a module instance (one object cannot be
        trained afresh or rebuilt); any other callable; a function of the standard
        library or of torch (such a function is not a network's factory, and a model
        card must not be able to call one).
    """
    import inspect

    from torch import nn

    target = import_object(path)
    if isinstance(target, type) and issubclass(target, nn.Module):
        return target
    if inspect.isfunction(target) or inspect.ismethod(target):
        package = (getattr(target, "__module__", None) or "").partition(".")[0]
        if package in sys.stdlib_module_names or package == "torch":
            raise ModelImportError(
                f"{path} is a function of {package}, not a network factory; name a "
                "torch.nn.Module class or a factory function of your own code"
            )
        return target
    raise ModelImportError(
        f"{path} is a {type(target).__name__}; a trainable network is named by its "
        "torch.nn.Module class or a factory function"
    )


def build_network(
    path: str,
    options: Mapping[str, Any] | None = None,
    *,
    in_channels: int | None = None,
    bias: bool = True,
) -> Denoiser:
    """The network an object path names, as training builds it and a model file rebuilds it.

    Parameters
    ----------
    path : str
        ``package.module:attribute``: an ``nn.Module`` class or a factory function
        (:func:`network_factory`).
    options : mapping, optional
        Keyword arguments of the class or factory.
    in_channels : int, keyword-only, optional
        Passed as ``in_channels=`` when the class or factory has a parameter of that
        name; the network built must take this many channels (checked on its first
        ``Conv2d``).
    bias : bool, keyword-only
        False runs the network through :func:`~filterscope.nn.make_bias_free`.

    Returns
    -------
    Denoiser
        The network (a plain module wrapped in
        :class:`~filterscope.models.adapter.ModuleDenoiser`), freshly initialised.

    Raises
    ------
    ModelImportError
        The path does not give a network, the options do not fit it, or the network
        takes another channel count.
    UnsupportedLayerError
        ``bias=False`` and a layer that cannot be made bias-free (the message names it).
    """
    import inspect

    from .errors import UnsupportedLayerError

    factory = network_factory(path)
    options = dict(options or {})
    if in_channels is not None:
        try:
            parameter = inspect.signature(factory).parameters.get("in_channels")
        except (TypeError, ValueError):  # no signature to read: pass options only
            parameter = None
        if parameter is not None and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            options = {"in_channels": in_channels, **options}
    module = _build_object(path, factory, options)
    if not bias:
        from .nn.bias_free import make_bias_free

        try:
            module = make_bias_free(module)
        except UnsupportedLayerError as exc:
            raise UnsupportedLayerError(f"{path} with bias=False: {exc}") from None
    denoiser = as_denoiser(module, path)
    if in_channels is not None and denoiser.in_channels not in (None, in_channels):
        raise ModelImportError(
            f"{path} builds a network for {denoiser.in_channels} channels, not {in_channels}"
        )
    return denoiser


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


def _register_architectures() -> None:
    from .models.registry import create_model
    from .models.registry import list_models as list_architectures

    for arch in list_architectures():
        summary = ARCHITECTURE_SUMMARIES.get(arch, f"architecture {arch}.")

        def build(*, _arch: str = arch, **options: Any) -> nn.Module:
            return create_model(_arch, **options)

        register_denoiser(
            ModelInfo(
                name=arch,
                kind="architecture",
                description=summary,
                blind=True,
                sigma_source="blind",
                channels=(1, 3),
                channels_option="in_channels",
                bias_free=True,
            ),
            build,
        )


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


_register_architectures()
_register_methods()


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
    "register_denoiser",
    "resolve",
    "shipped_info",
]
