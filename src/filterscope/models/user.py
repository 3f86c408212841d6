"""A user's own networks: registered by name, or named by a Python object path.

**A file never chooses code.** A model file (a ``.safetensors`` card, a ``.pt`` dict)
builds only a registered architecture: a built-in one, or one the user's own code
registered with :func:`register_architecture`. A card whose ``arch`` is an object path
``package.module:attribute`` (what ``filterscope train`` writes for a user's network)
is refused before anything is imported, unless the caller trusts it explicitly
(:func:`trusting_code`: ``trust_code=True`` in Python, ``--trust-code`` on the command
line), as Hugging Face's ``trust_remote_code``.

An object path the user types (``--model pkg.mod:Net``, ``load_model("pkg.mod:Net")``,
a training recipe's ``arch``) imports that module, because the user asked for it, and
then names an ``nn.Module`` subclass, a module instance, or a factory function the
user registered: never any other callable. The target is checked before anything is
called, so ``os:system``, ``sys:exit`` or ``subprocess:Popen`` are refused unrun.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..errors import ModelImportError
from .registry import (
    BUILTIN_ARCHITECTURES,
    build_module_network,
    qualified_name,
    register_model,
    registered_name,
)

if TYPE_CHECKING:
    from .base import Denoiser

# package.module:attribute (attribute may be dotted: module:Class.factory)
_OBJECT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# A registered name: letters, digits, '-', '_' and '.', no ':' (that is an object path).
_ARCH_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")

#: True: any object path in a model file may be built; a str: only that one; False: none.
_TRUSTED: ContextVar[bool | str] = ContextVar("filterscope_trusted_code", default=False)


def is_object_path(text: object) -> bool:
    """True for text of the form ``package.module:attribute`` (``module:Class.factory`` too)."""
    return isinstance(text, str) and _OBJECT_PATH.match(text) is not None


@contextmanager
def trusting_code(trust: bool | str = True) -> Iterator[None]:
    """Within the block, model files may name code by object path.

    Parameters
    ----------
    trust : bool or str
        True: any object path a model card names is imported and built (what
        ``trust_code=True`` and ``--trust-code`` do); an object path: only that one
        (training trusts the recipe's own ``arch``); False: nothing changes.
    """
    token = _TRUSTED.set(trust) if trust and _TRUSTED.get() is not True else None
    try:
        yield
    finally:
        if token is not None:
            _TRUSTED.reset(token)


def code_trusted(arch: str) -> bool:
    """Whether a model file may build the object path ``arch`` here (:func:`trusting_code`)."""
    trusted = _TRUSTED.get()
    return trusted is True or trusted == arch


def register_architecture(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a network of the user's own code under ``name``.

    A registered name is what a model file may build (``save_model`` writes it as the
    card's ``arch`` for a :class:`~filterscope.models.base.CNNDenoiser`; for another
    network give ``card={"arch": name, ...}``), and what :func:`filterscope.load_model`,
    ``create_model`` and training accept. Registration happens when the module that
    holds the decorator is imported, so only code the user imported is registered.

    Parameters
    ----------
    name : str
        Letters, digits, ``-``, ``_``, ``.``; not a built-in name.

    Returns
    -------
    callable
        The decorator; it returns the class or function unchanged. The decorated object
        is an ``nn.Module`` subclass (a plain one is wrapped as a
        :class:`~filterscope.models.adapter.ModuleDenoiser` when built) or a function
        returning an ``nn.Module``; ``in_channels=`` is passed when it takes it.

    Raises
    ------
    ValueError
        A malformed or built-in name, a name registered to another object, or an object
        that is neither an ``nn.Module`` subclass nor a function.

    Examples
    --------
    >>> @filterscope.register_architecture("my-net")  # doctest: +SKIP
    ... class MyNet(torch.nn.Module): ...
    """
    if not isinstance(name, str) or not _ARCH_NAME.match(name):
        raise ValueError(
            f"architecture name must be letters, digits, '-', '_' or '.', got {name!r}"
        )
    if name in BUILTIN_ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is built in; register under another name")

    def decorate(target: Callable[..., Any]) -> Callable[..., Any]:
        from torch import nn

        is_module_class = isinstance(target, type) and issubclass(target, nn.Module)
        if not is_module_class and not inspect.isfunction(target):
            raise ValueError(
                f"{qualified_name(target)}: register an nn.Module subclass or a factory "
                "function returning one"
            )
        return register_model(name)(target)

    return decorate


def import_object(path: str) -> Any:
    """Import the module of ``package.module:attribute`` and return the attribute,
    calling nothing.

    Only for an object path the user gave: importing a module runs its top-level code.

    Raises
    ------
    ModelImportError
        Not an object path, the module does not import, the attribute is missing, or it
        is neither a module nor callable.
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


def _describe(target: Any) -> str:
    if isinstance(target, type):
        return f"the class {qualified_name(target)}, not a torch.nn.Module"
    package = (getattr(target, "__module__", None) or "builtins").partition(".")[0]
    return f"a {type(target).__name__} of {package}, not a network factory"


def network_factory(path: str, *, trusted: bool = False) -> Callable[..., Any]:
    """The ``nn.Module`` class or factory function ``path`` names, checked before
    anything is called.

    Parameters
    ----------
    path : str
        ``package.module:attribute``.
    trusted : bool, keyword-only
        False (an object path the user typed): an ``nn.Module`` subclass or a factory
        registered with :func:`register_architecture`. True (a model file the user
        trusts): also an unregistered factory function defined in the module the path
        names, outside the standard library and torch, as ``filterscope train`` may
        have trained one (a function another package re-exports, such as
        ``sympy:sympify``, is still refused).

    Raises
    ------
    ModelImportError
        What :func:`import_object` refuses; a module instance (one object cannot be
        trained afresh or rebuilt); any other callable (a function of another package,
        a builtin, a class that is no ``nn.Module``).
    """
    from torch import nn

    target = import_object(path)
    if isinstance(target, type) and issubclass(target, nn.Module):
        return target
    if registered_name(target) is not None:
        return target
    if isinstance(target, nn.Module):
        raise ModelImportError(
            f"{path} is a {type(target).__name__} instance; a trainable network is named by "
            "its torch.nn.Module class or a registered factory"
        )
    defined_in = getattr(target, "__module__", None) or ""
    package = defined_in.partition(".")[0]
    own_code = package not in sys.stdlib_module_names and package not in ("torch", "")
    if trusted and inspect.isfunction(target) and own_code and defined_in == path.partition(":")[0]:
        return target
    raise ModelImportError(
        f"{path} is {_describe(target)}: name a torch.nn.Module class, or a factory of your "
        "own registered with @filterscope.register_architecture(NAME)"
    )


def load_object(path: str, /, **options: Any) -> Denoiser:
    """The denoiser an object path the user gave names, built with ``options``.

    ``attribute`` may be an ``nn.Module`` subclass (instantiated with ``options``), a
    factory registered with :func:`register_architecture` (called with ``options``) or
    a module instance (no options). Anything else is refused before it is called.

    Raises
    ------
    ModelImportError
        The module does not import, the attribute is missing or not allowed, or it
        gives no module.
    """
    from torch import nn

    from .adapter import as_denoiser

    target = import_object(path)
    if isinstance(target, nn.Module):
        if options:
            raise ModelImportError(f"{path} is a module instance; it takes no options")
        return as_denoiser(target, path)
    return build_module_network(path, network_factory(path), options)


def build_network(
    path: str,
    options: Mapping[str, Any] | None = None,
    *,
    in_channels: int | None = None,
    bias: bool = True,
    trusted: bool = False,
) -> Denoiser:
    """The network an object path names, as training builds it and a model file rebuilds it.

    Parameters
    ----------
    path : str
        ``package.module:attribute``: see :func:`network_factory`.
    options : mapping, optional
        Keyword arguments of the class or factory.
    in_channels : int, keyword-only, optional
        Passed as ``in_channels=`` when the class or factory has a parameter of that
        name; the network built must take this many channels.
    bias : bool, keyword-only
        False runs the network through :func:`~filterscope.nn.make_bias_free`.
    trusted : bool, keyword-only
        See :func:`network_factory`.

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
    factory = network_factory(path, trusted=trusted)
    return build_module_network(path, factory, options, in_channels=in_channels, bias=bias)


__all__ = [
    "build_network",
    "code_trusted",
    "import_object",
    "is_object_path",
    "load_object",
    "network_factory",
    "register_architecture",
    "trusting_code",
]
