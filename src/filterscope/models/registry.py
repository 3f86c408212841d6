"""Model registry: ``create_model(name, ...)`` and ``list_models()``.

The built-in architectures are listed by name in :data:`BUILTIN_ARCHITECTURES` and
their modules imported only when one is built, so that listing them needs no PyTorch.
A user's own network joins them through
:func:`filterscope.register_architecture` (:mod:`filterscope.models.user`): a
:class:`~filterscope.models.base.CNNDenoiser` subclass, any other ``nn.Module``
subclass or a factory function returning one. Only registered names are built from
a model file.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import FilterscopeError, InputError, ModelImportError

if TYPE_CHECKING:
    from .base import Denoiser

#: Built-in architecture name -> module that registers it (with ``@register_model``).
BUILTIN_ARCHITECTURES = {
    "dncnn": "filterscope.models.dncnn",
    "drunet": "filterscope.models.drunet",
    "rcnn": "filterscope.models.rcnn",
    "sdensenet": "filterscope.models.sdensenet",
    "unet": "filterscope.models.unet",
}

#: Name -> CNNDenoiser subclass, other nn.Module subclass or factory function.
_REGISTRY: dict[str, Callable[..., Any]] = {}


def qualified_name(target: object) -> str:
    """``module:qualname`` of a class or function (how messages and re-imports name it)."""
    module = getattr(target, "__module__", None) or "?"
    return f"{module}:{getattr(target, '__qualname__', type(target).__name__)}"


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that makes an architecture available to :func:`create_model`.

    The decorated object is a :class:`~filterscope.models.base.CNNDenoiser` subclass
    (its :attr:`arch` becomes ``name``), or, through
    :func:`filterscope.register_architecture`, another ``nn.Module`` subclass or a
    factory. Registering the same class or function again (its module re-imported)
    replaces the entry; another object under a taken name is refused.

    Raises
    ------
    ValueError
        ``name`` is registered to another object.
    """

    def decorate(target: Callable[..., Any]) -> Callable[..., Any]:
        previous = _REGISTRY.get(name)
        if previous is not None and qualified_name(previous) != qualified_name(target):
            raise ValueError(
                f"architecture {name!r} is registered twice ({qualified_name(previous)} "
                f"and {qualified_name(target)})"
            )
        if _is_cnn_denoiser(target):
            target.arch = name
        _REGISTRY[name] = target
        return target

    return decorate


def _is_cnn_denoiser(target: object) -> bool:
    from .base import CNNDenoiser

    return isinstance(target, type) and issubclass(target, CNNDenoiser)


def list_models() -> list[str]:
    """Names of the registered architectures (built-in ones included), sorted."""
    return sorted(set(BUILTIN_ARCHITECTURES) | set(_REGISTRY))


def create_model(name: str, *, bias: bool = False, in_channels: int = 1, **kwargs) -> Denoiser:
    """Build an architecture with freshly initialised weights.

    Parameters
    ----------
    name : str
        One of :func:`list_models` (``"dncnn"``, ``"rcnn"``, ``"unet"``, ``"sdensenet"``,
        and what the user registered).
    bias : bool, keyword-only
        ``False`` builds the bias-free variant: no additive constant anywhere (a
        registered network that is not a ``CNNDenoiser`` goes through
        :func:`~filterscope.nn.make_bias_free`).
    in_channels : int, keyword-only
        1 for gray, 3 for RGB.
    **kwargs
        Architecture options (e.g. ``num_layers`` for DnCNN).
    """
    target = architecture_class(name)
    if _is_cnn_denoiser(target):
        check_architecture_options(name, target, kwargs)
        try:
            return target(bias=bias, in_channels=in_channels, **kwargs)
        except FilterscopeError:
            raise
        except (TypeError, ValueError, RuntimeError) as exc:  # a value the layers refuse
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{name}: cannot be built with {kwargs} ({detail})") from None
    return build_module_network(name, target, kwargs, in_channels=in_channels, bias=bias)


def check_architecture_options(name: str, target: type, options: Mapping[str, Any]) -> None:
    """Refuse, naming the option, one the constructor of ``target`` does not take or a
    value whose type differs from the option's default (``hidden="x"``)."""

    expected = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    parameters = inspect.signature(target).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key, value in options.items():
        if key not in parameters:
            if takes_any:
                continue
            known = ", ".join(k for k in parameters if k not in ("bias", "in_channels"))
            raise InputError(f"{name} has no option {key!r}; its options: {known}")
        kind = type(parameters[key].default)
        if kind not in expected:
            continue  # no default to compare with: the constructor decides
        fits = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if kind is float:
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not fits:
            raise InputError(f"{name} option {key} must be {expected[kind]}, got {value!r}")


def build_module_network(
    name: str,
    factory: Callable[..., Any],
    options: Mapping[str, Any] | None = None,
    *,
    in_channels: int | None = None,
    bias: bool = True,
) -> Denoiser:
    """The network ``factory(**options)`` builds, as training builds it and a model file
    rebuilds it.

    Parameters
    ----------
    name : str
        How messages name it (registered name or object path).
    factory : callable
        An ``nn.Module`` subclass or a function returning an ``nn.Module``; the caller
        has checked it may be called.
    options : mapping, optional
        Its keyword arguments.
    in_channels : int, keyword-only, optional
        Passed as ``in_channels=`` when ``factory`` has a parameter of that name; the
        network must take this many channels (checked on its first ``Conv2d``).
    bias : bool, keyword-only
        False runs the network through :func:`~filterscope.nn.make_bias_free`.

    Raises
    ------
    ModelImportError
        The options do not fit, it returns no module, or it takes another channel count.
    UnsupportedLayerError
        ``bias=False`` and a layer that cannot be made bias-free (the message names it).
    """
    from torch import nn

    from ..errors import UnsupportedLayerError
    from ..nn.bias_free import make_bias_free
    from .adapter import as_denoiser

    options = dict(options or {})
    if in_channels is not None:
        try:
            parameter = inspect.signature(factory).parameters.get("in_channels")
        except (TypeError, ValueError):  # no signature to read: pass options only
            parameter = None
        if parameter is not None and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            options = {"in_channels": in_channels, **options}
    try:
        module = factory(**options)
    except TypeError as exc:
        raise ModelImportError(f"{name}: cannot build it with {options} ({exc})") from None
    if not isinstance(module, nn.Module):
        raise ModelImportError(f"{name} returned a {type(module).__name__}, not a torch.nn.Module")
    if not bias:
        try:
            module = make_bias_free(module)
        except UnsupportedLayerError as exc:
            raise UnsupportedLayerError(f"{name} with bias=False: {exc}") from None
    denoiser = as_denoiser(module, name)
    if in_channels is not None and denoiser.in_channels not in (None, in_channels):
        raise ModelImportError(
            f"{name} builds a network for {denoiser.in_channels} channels, not {in_channels}"
        )
    return denoiser


def registered_name(target: object) -> str | None:
    """The name ``target`` (a class or factory) is registered under, or None."""
    return next((name for name, known in _REGISTRY.items() if known is target), None)


def architecture_class(name: str) -> Callable[..., Any]:
    """The class (or factory) registered as ``name`` (a built-in one is imported on first use).

    Raises
    ------
    KeyError
        For a name that is not registered.
    """
    if name not in _REGISTRY and name in BUILTIN_ARCHITECTURES:
        importlib.import_module(BUILTIN_ARCHITECTURES[name])  # registers it
    if name not in _REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; choose from {', '.join(list_models())}")
    return _REGISTRY[name]
