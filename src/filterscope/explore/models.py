"""The models the explorer shows: denoisers of the one registry (:mod:`filterscope.hub`),
by the names given on the command line, with what the explorer can show of each.

A name means here what it means to ``filterscope.load_model`` and every other command:
``ntk`` and ``nlm-twicing`` are the non-local filters (Tachella et al. 2021), ``bm3d``
and ``nlm`` the classical methods (shown by their output), shipped names, checkpoint
paths, architectures and ``package.module:attribute`` objects are networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import InputError

#: What the explorer can show of each kind of model.
KINDS = ("jacobian", "nonlocal", "output")

#: Registry kinds (:data:`filterscope.hub.KINDS`) shown by their output only: their
#: estimate is not a network's differentiable function of the image.
OUTPUT_KINDS = ("classical", "dip")


@dataclass
class ExploreModel:
    """A model as the explorer sees it.

    Attributes
    ----------
    name : str
        The name given on the command line; requests name the model by it.
    kind : {"jacobian", "nonlocal", "output"}
        ``jacobian``: a differentiable network, its filter is a row of its Jacobian;
        ``nonlocal``: an NTK/NLM filter computed from the image; ``output``: no filter.
    denoiser : nn.Module or None
        The network (``jacobian``), the registry's filter denoiser (``nonlocal``) or
        the method (``output``).
    description : str
        One line for the page.
    has_bias : bool
        True for networks with additive constants (their net bias ``b_y`` is not zero).
    method : str or None
        For ``nonlocal``: the filter (``"ntk"`` or ``"nlm"``) the explorer computes
        from the image; None (the default) means ``name``.
    """

    name: str
    kind: str
    denoiser: nn.Module | None
    description: str
    has_bias: bool
    method: str | None = None

    @property
    def filter_method(self) -> str:
        """The non-local filter's method: :attr:`method`, else :attr:`name`."""
        return self.method or self.name

    def to_dict(self) -> dict:
        """JSON-ready description (what ``GET /api/models`` lists)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "has_bias": self.has_bias,
            "has_filter": self.kind != "output",
            "has_decomposition": self.kind == "jacobian",
            "has_spectrum": self.kind == "jacobian",
            "has_eigenimages": self.kind == "nonlocal",
        }


def load_model(name: str, channels: int) -> ExploreModel:
    """Load ``name`` from the registry for images with ``channels`` channels.

    Parameters
    ----------
    name : str
        Anything :func:`filterscope.load_model` accepts: a registered name (``ntk``,
        ``nlm-twicing``, ``bm3d``, a shipped model...), a checkpoint path or a
        ``package.module:attribute`` object path. Only names from the command line
        reach here, never a request's.
    channels : int
        1 or 3, of the image to be explored.

    Raises
    ------
    UnknownModelError, ModelImportError, CheckpointError
        What :func:`filterscope.load_model` raises for the name.
    InputError
        A model made for another channel count.
    """
    from ..hub import resolve

    loaded = resolve(name)
    info, denoiser = loaded.info, loaded.denoiser
    expected = getattr(denoiser, "in_channels", None)
    if expected is None and channels not in info.channels:
        expected = info.channels[0]
    if expected is not None and expected != channels:
        raise InputError(
            f"model {name} takes {expected}-channel images but the image has {channels}; "
            "use a model for that channel count"
        )
    if info.kind == "nonlocal":
        method = getattr(denoiser, "filter_options", {}).get("method", "ntk")
        return ExploreModel(
            name, "nonlocal", denoiser, info.description, has_bias=False, method=method
        )
    if info.kind in OUTPUT_KINDS or not any(True for _ in denoiser.parameters()):
        return ExploreModel(name, "output", denoiser, info.description, has_bias=False)
    has_bias = (
        not info.bias_free if info.bias_free is not None else bool(getattr(denoiser, "bias", False))
    )
    return ExploreModel(name, "jacobian", denoiser, info.description, has_bias=has_bias)
