"""Watching the weights of a single-image network (Section 6.2, Figures 4 and 5).

- :class:`WeightTracker`: per-layer ``‖w^t − w^0‖₂`` and ``max |w^t − w^0|`` of the
  effective weights (the ``w`` that multiply activations, so both parameterisations are
  measured on the same scale), and the paper's two summaries over the intermediate
  layers ``1 < ℓ < L``: the mean ``ℓ2`` change and the mean ``ℓ∞`` change
  ``Σ_{1<ℓ<L} max|Δw^ℓ| / (L − 2)``.
- :func:`loglog_slope`: the slope of a weight change against the width (Figure 4;
  theory: ``−1/2`` for gradient descent with an ``O(1/c)`` step, not so for Adam).
- :func:`preactivation_eigenvectors`: the leading eigenvectors of the pixel covariance of
  the last hidden layer's pre-activations ``Σ_{a^{L-1}}`` (Figure 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def intermediate_layers(names: Sequence[str]) -> list[str]:
    """The layers ``1 < ℓ < L`` of Figure 4: all but the first and the last.

    A network with fewer than three layers (the vanilla CNN) has none; then every layer
    is returned, so that its summaries are still defined.
    """
    names = list(names)
    return names[1:-1] if len(names) >= 3 else names


class WeightTracker:
    """Records how far the weights of a network moved from their initial values.

    Parameters
    ----------
    network : nn.Module
        A network of :mod:`filterscope.dip.networks` (anything with an
        ``effective_weights()`` method returning ``[(name, tensor), ...]``).
    every : int, keyword-only
        :meth:`maybe_log` records iterations that are multiples of ``every`` (≥ 1).

    Attributes
    ----------
    records : list of dict
        One dict per logged iteration (see :meth:`measure`).

    Notes
    -----
    Holds a copy of the initial weights (the network's size again); one measurement
    costs a pass over the weights, ``O(P)``.
    """

    def __init__(self, network: nn.Module, *, every: int = 1):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.network = network
        self.every = int(every)
        self.initial = {name: w.clone() for name, w in network.effective_weights()}
        self.names = list(self.initial)
        self.intermediate = intermediate_layers(self.names)
        self.records: list[dict] = []

    def measure(self, iteration: int) -> dict:
        """Weight change now.

        Returns
        -------
        dict
            ``iteration``; ``layers``: ``{name: {"l2": ‖Δw‖₂, "linf": max|Δw|}}``;
            ``l2_mean`` and ``linf_mean``: their means over the intermediate layers;
            ``l2_total``: ``‖Δw‖₂`` of all intermediate layers together.
        """
        layers = {}
        for name, w in self.network.effective_weights():
            delta = (w - self.initial[name]).double()
            layers[name] = {
                "l2": float(torch.linalg.vector_norm(delta)),
                "linf": float(delta.abs().max()),
            }
        inter = [layers[n] for n in self.intermediate]
        return {
            "iteration": int(iteration),
            "layers": layers,
            "l2_mean": sum(v["l2"] for v in inter) / len(inter),
            "linf_mean": sum(v["linf"] for v in inter) / len(inter),
            "l2_total": math.sqrt(sum(v["l2"] ** 2 for v in inter)),
        }

    def log(self, iteration: int) -> dict:
        """Measure and append to :attr:`records`."""
        record = self.measure(iteration)
        self.records.append(record)
        return record

    def maybe_log(self, iteration: int) -> dict | None:
        """:meth:`log` when ``iteration`` is a multiple of ``every``."""
        if iteration % self.every == 0:
            return self.log(iteration)
        return None


def loglog_slope(widths: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``log(values)`` against ``log(widths)``.

    ``−0.5`` means ``value ∝ width^(−1/2)``. Needs at least two distinct widths and
    positive values.
    """
    x = torch.tensor([math.log(w) for w in widths], dtype=torch.float64)
    y = torch.tensor([math.log(v) for v in values], dtype=torch.float64)
    if x.numel() < 2 or float(x.max() - x.min()) == 0:
        raise ValueError("the slope needs at least two distinct widths")
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / xc.pow(2).sum())


@torch.no_grad()
def preactivation_eigenvectors(
    network: nn.Module, network_input: torch.Tensor, *, count: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading eigenvectors of the pixel covariance of the last pre-activations (Figure 5).

    ``Σ_{a^{L-1}} = (1/c) Σ_ch a_ch a_chᵀ`` (``d × d``, ``d = H·W``) where ``a_ch`` is
    channel ``ch`` of the last hidden layer's pre-activations, flattened — the empirical
    version of the covariance over random weights, which has zero mean (so no centring).
    Its eigenvectors are the left singular vectors of the ``d × c`` matrix of
    pre-activations, so ``Σ`` is never formed.

    Parameters
    ----------
    network : nn.Module
        A network of :mod:`filterscope.dip.networks`.
    network_input : Tensor, shape (1, C_in, H, W)
        What the network is fed (the noise or the image).
    count : int, keyword-only
        Eigenvectors returned.

    Returns
    -------
    eigvals : Tensor, shape (k,), float64
        Descending eigenvalues of ``Σ`` (``k = min(count, d, c)``).
    eigvecs : Tensor, shape (k, H, W), float64
        Unit-norm eigenvectors as images; the sign is fixed so that each has a
        non-negative sum (eigenvectors are defined up to sign).

    Notes
    -----
    Cost: one forward pass and a thin SVD, ``O(d c²)``.
    """
    a = network.last_preactivation(network_input)[0]
    c, h, w = a.shape
    mat = a.reshape(c, h * w).T.double()
    u, s, _ = torch.linalg.svd(mat, full_matrices=False)
    k = min(count, s.numel())
    vecs = u[:, :k].T
    signs = torch.where(vecs.sum(1) < 0, -1.0, 1.0).to(vecs.dtype)
    vecs = vecs * signs[:, None]
    return s[:k].pow(2) / c, vecs.reshape(k, h, w)
