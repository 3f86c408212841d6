"""The models the explorer shows, loaded by the names given on the command line.

:func:`load_model` is the one place that knows how a name becomes a denoiser: when the
registry (``filterscope.load_model``) lands, switching to it is an edit here only.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import InputError

#: Names of the non-local filters (Tachella et al. 2021): a filter matrix, no network.
NONLOCAL = {
    "ntk": "neural tangent kernel filter of a 2-layer CNN (Nyström), twicing",
    "nlm": "non-local means filter (Nyström), twicing",
}
#: Names of methods shown by their output only: they have no Jacobian to read.
OUTPUT_ONLY = {"bm3d": "BM3D (classical; no Jacobian, output only)"}

#: What the explorer can show of each kind of model.
KINDS = ("jacobian", "nonlocal", "output")


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
        The network (``jacobian``) or the classical method (``output``).
    description : str
        One line for the page.
    has_bias : bool
        True for networks with additive constants (their net bias ``b_y`` is not zero).
    """

    name: str
    kind: str
    denoiser: nn.Module | None
    description: str
    has_bias: bool

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
    """Load the model ``name`` for images with ``channels`` channels.

    Parameters
    ----------
    name : str
        ``"ntk"``, ``"nlm"``, ``"bm3d"``, a shipped model name or a checkpoint path
        (see :func:`filterscope.models.zoo.load_model`; only names from the command line
        reach here, never a request's).
    channels : int
        1 or 3, of the image to be explored.

    Raises
    ------
    CheckpointError
        Unknown name or unreadable checkpoint.
    InputError
        A network made for another channel count.
    """
    if name in NONLOCAL:
        return ExploreModel(name, "nonlocal", None, NONLOCAL[name], has_bias=False)
    if name in OUTPUT_ONLY:
        from ..evaluation.baselines import create_baseline

        return ExploreModel(
            name, "output", create_baseline(name), OUTPUT_ONLY[name], has_bias=False
        )
    from ..models.zoo import load_model as load_checkpoint_model

    net = load_checkpoint_model(name)
    expected = getattr(net, "in_channels", None)
    if expected is not None and expected != channels:
        raise InputError(
            f"model {name} takes {expected}-channel images but the image has {channels}; "
            "use a model for that channel count"
        )
    card = getattr(net, "card", None) or {}
    description = card.get("description") or f"{getattr(net, 'arch', 'network')} checkpoint"
    has_bias = bool(getattr(net, "bias", False))
    return ExploreModel(name, "jacobian", net.eval(), description, has_bias=has_bias)
