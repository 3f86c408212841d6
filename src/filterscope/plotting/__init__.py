"""Figures (matplotlib is imported inside the functions; install ``filterscope[plot]``)."""

from .analysis import (
    plot_decomposition,
    plot_decomposition_grid,
    plot_decomposition_images,
    plot_dimension,
    plot_filter_sums,
    plot_filters,
    plot_singular_vectors,
    plot_spectrum,
    plot_spectrum_panels,
    plot_subspaces,
)
from .ntk import plot_eigenimages, plot_filter_rows

__all__ = [
    "plot_decomposition",
    "plot_decomposition_grid",
    "plot_decomposition_images",
    "plot_dimension",
    "plot_eigenimages",
    "plot_filter_rows",
    "plot_filter_sums",
    "plot_filters",
    "plot_singular_vectors",
    "plot_spectrum",
    "plot_spectrum_panels",
    "plot_subspaces",
]
