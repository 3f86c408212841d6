"""Evaluation: noise-level sweeps with reproducible noise, in the published protocol."""

from .sweep import evaluate, load_image_folder, noise_seed, results_table

__all__ = ["evaluate", "load_image_folder", "noise_seed", "results_table"]
