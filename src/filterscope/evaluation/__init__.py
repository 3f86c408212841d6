"""Evaluation: noise-level sweeps with reproducible noise, in the published protocol,
classical baselines (BM3D, NLM) and the ``filterscope evaluate`` command as a function."""

from .baselines import BM3DDenoiser, NLMDenoiser, create_baseline, estimate_noise_sigma
from .runner import evaluate_models
from .specs import ModelSpec, resolve_model
from .sweep import evaluate, load_image_folder, noise_seed, results_table, sigma_source

__all__ = [
    "BM3DDenoiser",
    "ModelSpec",
    "NLMDenoiser",
    "create_baseline",
    "estimate_noise_sigma",
    "evaluate",
    "evaluate_models",
    "load_image_folder",
    "noise_seed",
    "resolve_model",
    "results_table",
    "sigma_source",
]
