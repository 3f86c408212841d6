"""Reproducible experiments of the papers, each one function (and one CLI command)."""

from .generalization import run_generalization_experiment

__all__ = ["run_generalization_experiment"]
