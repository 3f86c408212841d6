"""Figures (matplotlib is imported inside the functions; install ``filterscope[plot]``)."""

from .analysis import (
    plot_decomposition,
    plot_decomposition_images,
    plot_dimension,
    plot_filters,
    plot_singular_vectors,
    plot_spectrum,
)

__all__ = [
    "plot_decomposition",
    "plot_decomposition_images",
    "plot_dimension",
    "plot_filters",
    "plot_singular_vectors",
    "plot_spectrum",
]
