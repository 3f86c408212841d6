"""Closed-form NNGP and neural tangent kernels of a vanilla ReLU CNN (Tachella et al. 2021).

The network (equations 1–3 of the paper) has ``depth`` = L convolution layers: a first
layer from the ``C`` input channels (1 gray, 3 RGB) to ``c`` channels, ``L - 2`` hidden
``c → c`` layers with ``r × r`` kernels, and an output layer ``c → 1`` whose kernel is
``r × r`` or ``1 × 1`` (``output_kernel``). ReLU activations, no biases, He
initialisation (weight variance ``σ_w² / fan_in`` with ``σ_w² = 2``).

In the infinite-channel limit ``c → ∞`` the output is a Gaussian process whose covariance
(the NNGP kernel) and whose neural tangent kernel (NTK) follow the recursion of equations
11–15, computed here exactly, in float64:

.. math::

    K_1 = σ_w² \\mathcal{A}(G),\\qquad Θ_1 = 0,

    K_ℓ = \\mathcal{A}_ℓ(V(K_{ℓ-1})),\\qquad
    Θ_ℓ = K_ℓ + \\mathcal{A}_ℓ(V'(K_{ℓ-1}) ∘ Θ_{ℓ-1}),\\qquad ℓ = 2, …, L,

where ``G = Σ_ch x_ch x_chᵀ / C`` is the pixel Gram matrix of the input (the image
``x = y``, or ``G = I`` for i.i.d. noise with many channels, equation 17),
:math:`\\mathcal{A}` is the patch-average operator of equation 13 (``r × r`` for the
first and hidden layers; ``output_kernel × output_kernel`` for layer ``L``) and ``V``,
``V'`` are the arc-cosine maps of ReLU (equations 14–15). ``Θ_1 = 0`` is the paper's base
case (equation 12): in the standard parameterisation with a learning rate ``η = O(1/c)``
the first layer's weights (fan-in ``r² C``, not ``r² c``) contribute ``O(1/c)`` to ``ηΘ``
and drop out; ``train_first_layer=True`` adds them back (``Θ_1 = K_1``, the
NTK-parameterisation convention of Arora et al. 2019).

Which variant is which equation:

- ``depth=2, output_kernel=1``: equation 16 exactly (up to the constant factor
  ``σ_w² / r²``), the one-hidden-layer kernel of Figure 2 and of the Nyström row of
  Table 1; equation 12 with no averaging after the ReLU. NNGP and NTK coincide.
- ``depth=2, output_kernel=r``: equations 11–12 read with an ``r × r`` output layer
  (``K_2 = A(V(K_1))``), a smoother kernel with a ``(2r - 1)²`` receptive field.
- ``depth ≥ 3``: the full recursion (Figure 6).
- ``input="noise"``: equation 17; the matrix has one value on the diagonal and another
  off it (circular padding) and does not depend on the image.

The filter of the paper is ``W = ηΘ``; the scale ``η`` is fixed later (by default so that
the largest eigenvalue of ``W`` is 1, see :mod:`filterscope.ntk.nystrom`).

Costs: the full ``d × d`` matrix (``d = H·W`` pixels) needs ``O(L · r · d²)`` time and a
few ``d × d`` float64 arrays (64×64 pixels: 134 MB each), so it is meant for small
images. A set of ``m`` columns costs ``O(m · s² · d · r² C)`` with ``s`` the side of the
window of layer-1 columns each output column depends on: ``s = 1`` for the
one-hidden-layer ``1 × 1``-output kernel (a single patch-by-patch product), ``s = r`` for
``depth=2, output_kernel=r``; memory is bounded by the ``chunk`` argument.

References
----------
J. Tachella, J. Tang, M. Davies, "The neural tangent link between CNN denoisers and
non-local filters", CVPR 2021, Sections 3–4, equations 11–17.
S. Arora et al., "On exact computation with an infinitely wide neural net", NeurIPS 2019.

The code lives in three modules, re-exported here: :mod:`.spec` (the architecture,
:class:`CNNKernel`), :mod:`.dense` (the full matrix by the recursion) and :mod:`.columns`
(columns without the full matrix, :class:`ColumnEngine`).
"""

from __future__ import annotations

from .columns import ColumnEngine, affinity, kernel_columns
from .columns import _int8_product as _int8_product  # tested by tests/test_packaging.py
from .dense import (
    image_patches,
    kernel_matrix,
    kernel_matrix_spec,
    patch_average,
    relu_maps,
)
from .spec import (
    INPUTS,
    KINDS,
    MAX_MATRIX_PIXELS,
    PADDINGS,
    SIGMA_W2,
    CNNKernel,
    as_image,
)

__all__ = [
    "INPUTS",
    "KINDS",
    "MAX_MATRIX_PIXELS",
    "PADDINGS",
    "SIGMA_W2",
    "CNNKernel",
    "ColumnEngine",
    "affinity",
    "as_image",
    "image_patches",
    "kernel_columns",
    "kernel_matrix",
    "kernel_matrix_spec",
    "patch_average",
    "relu_maps",
]
