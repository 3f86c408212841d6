"""Training denoisers: recipes, patch sampling, the training loop and checkpoints."""

from .config import TrainConfig, load_recipe
from .data import PatchSampler
from .trainer import train

__all__ = ["PatchSampler", "TrainConfig", "load_recipe", "train"]
