"""Looking inside a denoiser through its Jacobian (Mohan et al., ICLR 2020, §3 and §6).

A ReLU network computes ``f(y) = A_y y + b_y`` with ``A_y`` its Jacobian at ``y`` and
``b_y`` the net bias (zero for bias-free networks). Everything here works on any
denoiser torch can differentiate: filterscope models, published checkpoints, or a
plain function on ``(B, C, H, W)`` tensors.

- :mod:`.decomposition`: residual, linear part ``A_y y`` and net bias ``b_y``.
- :mod:`.jacobian`: dense Jacobians of patches; exact rows on receptive-field crops.
- :mod:`.filters`: rows of ``A_y`` as adaptive filters (sum, extent).
- :mod:`.spectrum`: SVD of patch Jacobians — effective dimension, signal subspaces.
- :mod:`.matrix_free`: full-size images with JVP/VJP only (probes, randomized SVD).
- :mod:`.reports`: each analysis end to end (noise, analysis, report with ``to_json()``
  and figures), the functions behind ``filterscope analyze``.

σ is on the image scale here (25/255); results meant for JSON are on 0–255.
"""

from .decomposition import (
    Decomposition,
    decomposition_vs_sigma,
    first_order_decomposition,
    random_patches,
)
from .filters import AdaptiveFilter, adaptive_filters, describe_row
from .jacobian import JacobianRow, dense_jacobian, jacobian_rows
from .matrix_free import estimate_effective_dim, top_singular_triplets
from .reports import (
    DecompositionReport,
    DimensionReport,
    FiltersReport,
    NoiseMapReport,
    SpectrumReport,
    analyze_decomposition,
    analyze_dimension,
    analyze_filters,
    analyze_noise_map,
    analyze_spectrum,
)
from .spectrum import (
    PatchSpectrum,
    effective_dimension,
    fit_inverse_sigma,
    jacobian_svd,
    nesting_fraction,
    patch_spectrum,
    patch_spectrum_in_image,
    signal_dimension,
    singular_vector_cosines,
    spectrum_vs_sigma,
    subspace_energy_fraction,
)

__all__ = [
    "AdaptiveFilter",
    "Decomposition",
    "DecompositionReport",
    "DimensionReport",
    "NoiseMapReport",
    "FiltersReport",
    "JacobianRow",
    "PatchSpectrum",
    "SpectrumReport",
    "adaptive_filters",
    "analyze_decomposition",
    "analyze_dimension",
    "analyze_noise_map",
    "analyze_filters",
    "analyze_spectrum",
    "decomposition_vs_sigma",
    "dense_jacobian",
    "describe_row",
    "effective_dimension",
    "estimate_effective_dim",
    "first_order_decomposition",
    "fit_inverse_sigma",
    "jacobian_rows",
    "jacobian_svd",
    "nesting_fraction",
    "patch_spectrum",
    "patch_spectrum_in_image",
    "random_patches",
    "signal_dimension",
    "singular_vector_cosines",
    "spectrum_vs_sigma",
    "subspace_energy_fraction",
    "top_singular_triplets",
]
