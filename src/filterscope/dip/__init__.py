"""Single-image network denoising — the deep image prior — by Adam or gradient descent.

Section 5–6 of Tachella, Tang & Davies (CVPR 2021): the three networks of the paper
(:mod:`.networks`), fitting one noisy image with oracle, SURE or fixed-length stopping
(:mod:`.fit`), the weight change and pre-activation statistics of Figures 4–5
(:mod:`.weights`), and the comparison of gradient-descent training with the NTK twicing
prediction (:mod:`.theory`). Plots are in :mod:`filterscope.plotting.dip`; the command
line is ``filterscope dip``.
"""

from ..sure import monte_carlo_sure, sure_estimate
from .fit import (
    DIPDenoiser,
    FitConfig,
    FitResult,
    fit_single_image,
    ntk_max_eigenvalue,
    patience_stop,
)
from .networks import (
    ARCHITECTURES,
    EncoderDecoder,
    VanillaDIP,
    build_network,
    pad_to_multiple,
)
from .theory import linearized_gd, ntk_gap
from .weights import (
    WeightTracker,
    intermediate_layers,
    loglog_slope,
    preactivation_eigenvectors,
)

__all__ = [
    "ARCHITECTURES",
    "DIPDenoiser",
    "EncoderDecoder",
    "FitConfig",
    "FitResult",
    "VanillaDIP",
    "WeightTracker",
    "build_network",
    "fit_single_image",
    "intermediate_layers",
    "linearized_gd",
    "loglog_slope",
    "monte_carlo_sure",
    "ntk_gap",
    "ntk_max_eigenvalue",
    "pad_to_multiple",
    "patience_stop",
    "preactivation_eigenvectors",
    "sure_estimate",
]
