"""Neural-tangent non-local filters (Tachella, Tang & Davies, CVPR 2021).

Closed-form NTK/NNGP kernels of vanilla ReLU CNNs (:mod:`.kernels`), the empirical NTK
of finite networks (:mod:`.empirical`), Nyström eigendecomposition (:mod:`.nystrom`),
twicing with oracle/SURE stopping (:mod:`.twicing`), the NLM affinity (:mod:`.nlm`) and
the denoisers built from them (:mod:`.denoiser`). Everything works in float64.
"""

from .denoiser import (
    FixedFilter,
    NonLocalFilterDenoiser,
    denoise,
    filter_basis,
    nlm_denoiser,
    ntk_denoiser,
)
from .empirical import VanillaCNN, empirical_nngp, empirical_ntk, relative_frobenius_error
from .kernels import CNNKernel, ColumnEngine, affinity, kernel_columns, kernel_matrix
from .nlm import NLMAffinity
from .nystrom import FilterBasis, matrix_basis, nystrom_basis, nystrom_error, sample_columns
from .twicing import (
    mse_estimate,
    oracle_mse,
    select_steps,
    sure,
    sure_monte_carlo,
    twicing,
    twicing_gains,
    twicing_iterations,
)

__all__ = [
    "CNNKernel",
    "ColumnEngine",
    "FilterBasis",
    "FixedFilter",
    "NLMAffinity",
    "NonLocalFilterDenoiser",
    "VanillaCNN",
    "affinity",
    "denoise",
    "empirical_nngp",
    "empirical_ntk",
    "filter_basis",
    "kernel_columns",
    "kernel_matrix",
    "matrix_basis",
    "mse_estimate",
    "nlm_denoiser",
    "ntk_denoiser",
    "nystrom_basis",
    "nystrom_error",
    "oracle_mse",
    "relative_frobenius_error",
    "sample_columns",
    "select_steps",
    "sure",
    "sure_monte_carlo",
    "twicing",
    "twicing_gains",
    "twicing_iterations",
]
