"""Training recipes: a dataclass, read from TOML, validated before any work starts."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..models import list_models

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved resolved in the run folder.

    σ values are on the 0–255 scale here (recipes are written by people).

    Attributes
    ----------
    arch, bias, in_channels, arch_options
        The model: a registered architecture name, bias (False = bias-free), 1 or 3
        channels, extra constructor options (e.g. ``{"num_layers": 20}``).
    data_dir : str
        Folder of training images.
    patch_size : int
        Side of the square training patches (50 for DnCNN in the paper).
    scales : list of float
        Down-scaling factors applied to whole images before patches are cut.
    sigma_range : list of two floats
        Noise standard deviation drawn uniformly per patch from this range (0–255 scale).
    noise : str
        ``"gaussian"`` or ``"uniform"``.
    batch_size, steps, lr, lr_milestones, lr_gamma, warmup_steps
        Adam with learning rate ``lr`` multiplied by ``lr_gamma`` at each milestone,
        given as fractions of ``steps``; the rate ramps up linearly over the first
        ``warmup_steps`` steps.
    val_dir, val_images, val_sigmas
        Validation images (the first ``val_images`` of the folder, 0 = all) scored by
        PSNR at each σ of ``val_sigmas`` every ``val_every`` steps.
    checkpoint_every : int
        Steps between resumable checkpoints.
    seed : int
        Seeds the weights, the patch order and the noise.
    threads : int
        Torch intra-op threads (0 = leave torch's default).
    """

    arch: str = "dncnn"
    bias: bool = False
    in_channels: int = 1
    arch_options: dict[str, Any] = field(default_factory=dict)
    data_dir: str = "../shared/data/BSD400"
    patch_size: int = 50
    scales: list[float] = field(default_factory=lambda: [1.0, 0.9, 0.8, 0.7])
    sigma_range: list[float] = field(default_factory=lambda: [0.0, 55.0])
    noise: str = "gaussian"
    batch_size: int = 32
    steps: int = 1000
    lr: float = 1e-3
    lr_milestones: list[float] = field(default_factory=lambda: [0.7, 0.85])
    lr_gamma: float = 0.5
    warmup_steps: int = 0
    val_dir: str = "../shared/data/Set12"
    val_images: int = 4
    val_sigmas: list[float] = field(default_factory=lambda: [25.0, 50.0])
    val_every: int = 200
    checkpoint_every: int = 50
    seed: int = 0
    threads: int = 0

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first impossible value."""
        if self.arch not in list_models():
            raise InputError(f"arch: unknown architecture {self.arch!r}")
        if self.in_channels not in (1, 3):
            raise InputError(f"in_channels: must be 1 or 3, got {self.in_channels}")
        lo, hi = self.sigma_range
        if lo < 0 or hi < lo:
            raise InputError(f"sigma_range: need 0 <= lo <= hi, got {self.sigma_range}")
        if self.noise not in ("gaussian", "uniform"):
            raise InputError(f"noise: must be gaussian or uniform, got {self.noise!r}")
        for name in ("patch_size", "batch_size", "steps", "checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: must be a positive integer")
        if self.warmup_steps < 0:
            raise InputError("warmup_steps: must be non-negative")
        if self.lr <= 0:
            raise InputError(f"lr: must be positive, got {self.lr}")
        if not all(0 < s <= 1 for s in self.scales) or not self.scales:
            raise InputError(f"scales: each must be in (0, 1], got {self.scales}")
        if not all(0 <= m <= 1 for m in self.lr_milestones):
            raise InputError("lr_milestones: fractions of the run, each in [0, 1]")
        if any(s < 0 for s in self.val_sigmas):
            raise InputError("val_sigmas: noise levels must be non-negative")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(values: dict[str, Any], *, source: str = "recipe") -> TrainConfig:
    """Build a :class:`TrainConfig`, refusing unknown keys by name."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in values:
        if key not in known:
            raise InputError(f"{source}: unknown key {key!r}")
    config = TrainConfig(**values)
    config.validate()
    return config


def load_recipe(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a TOML recipe; keyword ``overrides`` (not None) replace its values."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: recipe file not found")
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(values, source=str(path))
