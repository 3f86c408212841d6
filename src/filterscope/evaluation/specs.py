"""Turning a model spec from the command line into a denoiser and a description of it.

A spec is anything :func:`filterscope.hub.load_model` accepts:

- a registered name (``filterscope models``): a shipped model (``bf-dncnn-gray``), a
  classical baseline (``bm3d`` or ``nlm`` given the true σ, ``bm3d:estimate`` /
  ``nlm:estimate`` estimating it from each noisy image), a non-local filter (``ntk``,
  ``nlm-twicing``), ``dip``, or an architecture with random weights;
- a checkpoint path: filterscope's ``.safetensors`` (with its JSON card) or ``.pt``,
  or a published checkpoint of Mohan et al. (ICLR 2020), e.g.
  ``../shared/reference/bias_free_denoising/pretrained/dncnn/bias_free/0-55.pt``;
- a Python object path ``package.module:attribute`` (a user's own network).

An existing file wins over a registered name of the same spelling. The training range
comes from the model's metadata (its model card), never from its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .. import hub

#: Registry kinds that are networks of :mod:`filterscope.models`: their description adds
#: ``arch``, ``bias`` and ``source``.
NETWORK_KINDS = ("shipped", "checkpoint", "architecture")


@dataclass
class ModelSpec:
    """A resolved ``--model`` argument.

    Attributes
    ----------
    name : str
        The spec exactly as given; the model's name in results.
    denoiser : nn.Module
        Ready to evaluate (eval mode, CPU).
    info : dict
        JSON-ready description: :meth:`filterscope.hub.ModelInfo.to_json` (``kind``,
        ``blind``, ``sigma_source``, ``channels``, ``bias_free``,
        ``training_sigma_range_255``...) plus ``in_channels`` (None: any), and for
        networks ``arch``, ``bias`` and ``source``.
    """

    name: str
    denoiser: nn.Module
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int | None:
        return self.info.get("in_channels")


def describe(loaded: hub.LoadedModel) -> dict[str, Any]:
    """JSON-ready description of a loaded model (see :class:`ModelSpec`)."""
    info = loaded.info
    described = info.to_json()
    described["in_channels"] = loaded.denoiser.in_channels
    described["sigma_source"] = loaded.denoiser.sigma_source
    card = info.card or {}
    if info.kind in NETWORK_KINDS:
        described.update(
            arch=card.get("arch", getattr(loaded.denoiser, "arch", None)),
            bias=card.get("bias", getattr(loaded.denoiser, "bias", None)),
            source=card.get("path") or card.get("source") or info.name,
        )
    return described


def resolve_model(spec: str, *, ensemble: bool = False) -> ModelSpec:
    """Load the denoiser a ``--model`` spec names (see the module docstring).

    Parameters
    ----------
    spec : str
        Registered name, checkpoint path or object path.
    ensemble : bool, keyword-only
        Wrap the denoiser in :class:`filterscope.ensemble.SelfEnsemble` (the mean over
        the 8 flips and rotations of the input); the description says
        ``"self_ensemble": true``.

    Returns
    -------
    ModelSpec
        Name (the spec as given), denoiser, and description.

    Raises
    ------
    UnknownModelError, ModelImportError
        Unknown name, or an object path that gives no denoiser.
    CheckpointError
        A file that is not a loadable checkpoint.
    """
    loaded = hub.resolve(str(spec))
    info = describe(loaded)
    denoiser = loaded.denoiser
    if ensemble:
        from ..ensemble import SelfEnsemble

        denoiser = SelfEnsemble(denoiser).eval()
        info["self_ensemble"] = True
    return ModelSpec(str(spec), denoiser, info)


__all__ = ["ModelSpec", "describe", "resolve_model"]
