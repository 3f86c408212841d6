"""Training recipes: a dataclass, read from TOML, validated before any work starts."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..camera_noise import NoiseOptions
from ..errors import InputError, ModelImportError
from ..machine import AUTO, PRECISIONS, choose_channels_last, choose_precision
from ..models import list_models
from ..models.user import is_object_path, network_factory
from ..noise import NOISE_MODELS

#: Denoising losses a recipe may name (``loss``); :data:`filterscope.training.trainer.
#: DENOISING_LOSSES` holds their functions.
LOSSES = ("mse", "l1")

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
        channels, extra constructor options (e.g. ``{"num_layers": 20}``). ``arch`` may
        also be a Python object path ``package.module:attribute`` naming a user's
        ``nn.Module`` class or factory function: it is called with ``arch_options`` as
        keywords (and ``in_channels=`` when it has that parameter), and with
        ``bias = false`` the network goes through :func:`filterscope.make_bias_free`
        (see :func:`filterscope.models.user.build_network`).
    data_dir : str
        Folder of training images. Unreadable images are reported and skipped.
    patch_size : int
        Side of the square training patches (paper: 50 for DnCNN, 128 for the others).
    scales : list of float
        Down-scaling factors applied to whole images before patches are cut.
    cache_mb : float
        Memory budget for decoded, down-scaled training images; beyond it images are
        read again from disk when drawn, so memory stays bounded as the data grows.
    prefetch_batches : int
        Batches prepared ahead by a background thread (0 = none); the stream of batches
        is the same either way.
    sigma_range : list of two floats
        Noise standard deviation drawn uniformly per patch from this range (0–255 scale;
        equal ends = a fixed σ).
    sigma_power : float
        Shape of that draw: σ = lo + (hi − lo)·u^sigma_power with u uniform in [0, 1].
        1 is uniform; 2 puts more patches at low noise (on [0, 100], 22% below σ = 5
        instead of 5%), whose small errors a uniform draw leaves under-weighted in the
        mean squared error.
    saturation_range : list of two floats
        Colour models only: each clean patch's saturation is multiplied by a factor
        drawn log-uniformly from this range (``[1, 1]`` = unchanged; see
        :func:`~.data.augment_color`).
    channel_shuffle : bool
        Colour models only: each clean patch gets its channels in a random order.
    noise : str or list of str
        The noise model (:data:`filterscope.noise.NOISE_MODELS`): ``"gaussian"``,
        ``"uniform"`` (same standard deviation), ``"correlated"`` (Gaussian blurred by a
        small random kernel, same marginal std), each with σ drawn from
        ``sigma_range``; ``"poisson-gaussian"`` (shot + read noise, ``Var = a·x + b``)
        and ``"camera"`` (sensor noise through a camera's demosaicking, colour, tone
        curve, 8 bits and JPEG), whose parameters are drawn per patch from
        ``noise_options`` instead (:mod:`filterscope.camera_noise`). A list is a
        mixture: each patch draws one kind, with ``noise_weights``.
    noise_weights : list of float
        Relative frequency of each kind of a ``noise`` list (``[]`` = equal).
    pairs_dir, pairs_per_batch
        Real noise: a folder, or a list of folders, of real noisy / clean image pairs
        (``noisy/`` and ``clean/`` with the same file names, see
        :class:`~.data.PairedPatchSampler`); the last ``pairs_per_batch`` patches of
        every batch are cut from them (same crop and flip/rotation in both, no colour
        change, no added noise) instead of the recipe's noise on ``data_dir``. Unless
        ``pairs_std_window`` measures it, their noise std is unknown: those patches are
        always blind (σ = 0: a model with an estimator gets its estimated map) and are
        left out of ``noise_map_loss``. ``""`` and 0 = none.
    pairs_std_window : float
        Real pairs' noise std measured from ``noisy - clean``: the root of its square
        averaged over a Gaussian window of this standard deviation (pixels, per
        channel; :func:`~.data.measured_noise_std`). The measured map is then the
        target of ``noise_map_loss`` for the real patches too, and is told to the model
        for a fraction ``sigma_known_fraction`` of them, as for synthetic noise: the
        map keeps its meaning (the noise std) on real noise instead of becoming a
        strength knob learnt for the training cameras. 0 = unknown (the default).
    pairs_std_block : int
        With ``pairs_std_window``, measure the std at block sizes 1, 2, 4, ... up to this
        (a power of 2) and keep the largest white-noise level
        (:func:`~.data.measured_noise_std`'s ``block``): the level of the noise's coarse
        grain. 1 = the per-pixel std.
    pairs_zoom_range, pairs_gain_range
        Per real pair, a zoom (coarser noise grain) and a gain on its noise, each drawn
        log-uniformly from its range (:func:`~.data.augment_pairs`); ``[1, 1]`` = none.
    noise_options : dict
        Ranges of the non-Gaussian models, the fields of
        :class:`filterscope.camera_noise.NoiseOptions` (e.g. ``{shot_range = [1e-4,
        1.2e-2], jpeg_probability = 0.5}``); ``{}`` keeps its documented defaults.
    sigma_known_fraction : float
        Fraction of the patches whose σ is passed to the model (``forward(y, sigma)``);
        the others get σ = 0, the blind mode. Only models with a noise-level input
        (``drunet`` with ``noise_map``) use it; 0 trains a purely blind model. With
        ``"poisson-gaussian"`` or ``"camera"`` in ``noise`` the model is told the
        ``(B, C, H, W)`` map of the noise std instead of one σ per patch.
    blur_range : list of two floats
        Width (standard deviation, pixels) of a Gaussian blur applied to each clean patch
        before the noise, drawn uniformly per patch; ``[0, 0]`` = no blur (restoration
        experiment of the paper: ``[0, 4]``).
    batch_size, steps, epochs, epoch_patches
        ``batch_size`` patches per optimizer step (the global batch, split over
        processes under ``torchrun``). The run lasts ``steps`` steps, or, when ``epochs``
        > 0, ``ceil(epochs * epoch_patches / batch_size)`` steps (an epoch being
        ``epoch_patches`` patches: 541,600 for DnCNN in the paper).
    lr, lr_schedule, lr_milestones, lr_gamma, warmup_steps
        Adam with learning rate ``lr``, ramped up linearly over ``warmup_steps``.
        ``"milestones"``: multiplied by ``lr_gamma`` at each milestone (fractions of the
        run). ``"plateau"``: multiplied by ``lr_gamma`` whenever the mean validation
        PSNR drops from one validation to the next (the paper's recipe for UNet, RCNN
        and SDenseNet).
    ema_decay : float
        Keep an exponential moving average of the weights, ``w̄ ← d w̄ + (1 - d) w``
        after every step with ``d = min(ema_decay, (1 + t) / (10 + t))`` at step ``t``
        (short runs are not dominated by the start): validation, ``keep_best`` and the
        saved model use the average, which smooths the step-to-step swings of a
        fine-tune's score. Checkpoints hold it, so a resume stays exact. 0 = off.
    keep_best : bool
        The saved model is the one with the best mean validation PSNR, not the last.
    val_dir, val_images, val_sigmas, val_every
        Validation images (the first ``val_images`` of the folder, 0 = all) scored by
        PSNR at each σ of ``val_sigmas`` every ``val_every`` steps (0 = once per epoch).
    checkpoint_every : int
        Steps between resumable checkpoints.
    init_from : str
        Shipped model name or model file whose weights start the run (fine-tuning;
        ``""`` = random weights). Its architecture and options must be this recipe's.
    init_sha256 : str
        SHA-256 (64 lowercase hex digits) of the ``init_from`` weights file the recipe
        was run from: a different file (say, a shipped model retrained since) is
        refused, instead of the run silently starting from other weights. ``""`` = not
        checked.
    seed : int
        Seeds the weights, the patch order and the noise.
    threads : int
        Torch intra-op threads (0 = leave torch's default).
    device : str
        ``"auto"`` (a GPU when there is one), ``"cpu"`` or ``"cuda"``.
    precision : str
        ``"auto"`` (default: bfloat16 where it is native, see
        :func:`filterscope.machine.choose_precision`), ``"float32"``, or
        ``"bfloat16"``: the forward pass under bfloat16 autocast (weights, gradients,
        optimizer state and loss stay float32). bfloat16 is 1.7× faster per step on an
        AVX512-BF16 CPU but 5-24× slower on an AVX2-only one, where it is emulated
        (``benchmarks/numeric_paths.py``).
    channels_last : bool or ``"auto"``
        Weights and inputs in channels-last memory layout; ``"auto"`` (default) lets
        :func:`filterscope.machine.choose_channels_last` decide by a cached
        micro-benchmark. The path taken is recorded in the run's ``config.json`` and
        model card (``numeric_path``).
    tensorboard : bool
        Also log to TensorBoard (``RUN_DIR/tensorboard``) when it is installed.
    loss : {"mse", "l1"}
        The denoising loss: mean squared error (the papers'), or mean absolute error,
        which weighs the many small errors of low-noise and real-camera patches more
        against the few large ones.
    noise_map_loss : float
        Models with a noise-map estimator (``arch_options.noise_estimator``): weight of
        the mean squared error between the estimated map and the true noise std (where
        the noise model knows it) added to the denoising loss; 0 trains the estimator
        through the blind patches' denoising loss alone.
    estimator_lr_scale : float
        The estimator's learning rate is ``lr`` times this (a new estimator on a trained
        denoiser needs to move faster than the denoiser).
    denoiser_lr_scale : float
        The rest of the network's learning rate is ``lr`` times this; 0 keeps a trained
        denoiser (``init_from``) exactly as it is and trains its new estimator alone, to
        tell it the level it denoises best with (only with a noise-map estimator).
    """

    arch: str = "dncnn"
    bias: bool = False
    in_channels: int = 1
    arch_options: dict[str, Any] = field(default_factory=dict)
    data_dir: str = "../shared/data/BSD400"
    patch_size: int = 50
    scales: list[float] = field(default_factory=lambda: [1.0, 0.9, 0.8, 0.7])
    cache_mb: float = 1024.0
    prefetch_batches: int = 2
    sigma_range: list[float] = field(default_factory=lambda: [0.0, 55.0])
    sigma_power: float = 1.0
    saturation_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    channel_shuffle: bool = False
    noise: str | list[str] = "gaussian"
    noise_weights: list[float] = field(default_factory=list)
    noise_options: dict[str, Any] = field(default_factory=dict)
    pairs_dir: str | list[str] = ""
    pairs_per_batch: int = 0
    pairs_zoom_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    pairs_gain_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    pairs_std_window: float = 0.0
    pairs_std_block: int = 1
    blur_range: list[float] = field(default_factory=lambda: [0.0, 0.0])
    sigma_known_fraction: float = 0.0
    batch_size: int = 32
    steps: int = 1000
    epochs: float = 0.0
    epoch_patches: int = 0
    lr: float = 1e-3
    lr_schedule: str = "milestones"
    lr_milestones: list[float] = field(default_factory=lambda: [0.7, 0.85])
    lr_gamma: float = 0.5
    warmup_steps: int = 0
    keep_best: bool = False
    ema_decay: float = 0.0
    val_dir: str = "../shared/data/Set12"
    val_images: int = 4
    val_sigmas: list[float] = field(default_factory=lambda: [25.0, 50.0])
    val_every: int = 200
    checkpoint_every: int = 50
    init_from: str = ""
    init_sha256: str = ""
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    precision: str = AUTO
    channels_last: bool | str = AUTO
    tensorboard: bool = True
    loss: str = "mse"
    noise_map_loss: float = 0.0
    estimator_lr_scale: float = 1.0
    denoiser_lr_scale: float = 1.0

    def total_steps(self) -> int:
        """Number of optimizer steps of the whole run."""
        if self.epochs > 0:
            return max(1, math.ceil(self.epochs * self.epoch_patches / self.batch_size))
        return self.steps

    def steps_per_epoch(self) -> int:
        """Steps of one epoch (the whole run when no epoch size is given)."""
        if self.epoch_patches > 0:
            return max(1, math.ceil(self.epoch_patches / self.batch_size))
        return self.total_steps()

    def validation_interval(self) -> int:
        return self.val_every if self.val_every > 0 else self.steps_per_epoch()

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first impossible value."""
        if self.arch not in list_models():
            if not is_object_path(self.arch):
                raise InputError(
                    f"arch: unknown architecture {self.arch!r}; give one of "
                    f"{', '.join(list_models())} or a Python object path package.module:attribute"
                )
            try:
                network_factory(self.arch)
            except ModelImportError as exc:
                raise InputError(f"arch: {exc}") from None
        if self.in_channels not in (1, 3):
            raise InputError(f"in_channels: must be 1 or 3, got {self.in_channels}")
        if len(self.sigma_range) != 2:
            raise InputError(f"sigma_range: need two values [lo, hi], got {self.sigma_range}")
        lo, hi = self.sigma_range
        if lo < 0 or hi < lo:
            raise InputError(f"sigma_range: need 0 <= lo <= hi, got {self.sigma_range}")
        if not self.sigma_power > 0:
            raise InputError(f"sigma_power: must be positive, got {self.sigma_power}")
        self._validate_color_augmentation()
        self._validate_noise()
        if len(self.blur_range) != 2 or not 0 <= self.blur_range[0] <= self.blur_range[1]:
            raise InputError(f"blur_range: need 0 <= lo <= hi, got {self.blur_range}")
        for name in ("patch_size", "batch_size", "steps", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: must be a positive integer")
        if self.val_every < 0:
            raise InputError("val_every: must be a positive integer (0 = once per epoch)")
        if self.epochs < 0:
            raise InputError(f"epochs: must be non-negative, got {self.epochs}")
        if self.epochs > 0 and self.epoch_patches < 1:
            raise InputError("epoch_patches: needed (> 0) when epochs is given")
        if self.val_every == 0 and self.epoch_patches < 1:
            raise InputError("val_every: 0 means once per epoch, which needs epoch_patches")
        if self.lr_schedule not in ("milestones", "plateau"):
            raise InputError(
                f"lr_schedule: must be milestones or plateau, got {self.lr_schedule!r}"
            )
        if not 0 < self.lr_gamma <= 1:
            raise InputError(f"lr_gamma: must be in (0, 1], got {self.lr_gamma}")
        if self.init_sha256 and not re.fullmatch(r"[0-9a-f]{64}", self.init_sha256):
            raise InputError(
                f"init_sha256: must be 64 lowercase hex digits, got {self.init_sha256!r}"
            )
        if self.init_sha256 and not self.init_from:
            raise InputError("init_sha256: pins the weights of init_from, which is not set")
        if self.loss not in LOSSES:
            raise InputError(f"loss: must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not 0 <= self.ema_decay < 1:
            raise InputError(f"ema_decay: must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.sigma_known_fraction <= 1:
            raise InputError(
                f"sigma_known_fraction: must be in [0, 1], got {self.sigma_known_fraction}"
            )
        if not 0 <= self.pairs_per_batch <= self.batch_size:
            raise InputError(
                f"pairs_per_batch: must be in [0, batch_size = {self.batch_size}], "
                f"got {self.pairs_per_batch}"
            )
        if self.pairs_per_batch and not self.pair_folders():
            raise InputError("pairs_dir: needed when pairs_per_batch > 0")
        zoom, gain = self.pairs_zoom_range, self.pairs_gain_range
        if len(zoom) != 2 or not 1 <= zoom[0] <= zoom[1]:
            raise InputError(f"pairs_zoom_range: need 1 <= lo <= hi, got {zoom}")
        if len(gain) != 2 or not 0 < gain[0] <= gain[1]:
            raise InputError(f"pairs_gain_range: need 0 < lo <= hi, got {gain}")
        if self.pairs_std_block not in (1, 2, 4, 8, 16):
            raise InputError(
                f"pairs_std_block: must be 1, 2, 4, 8 or 16, got {self.pairs_std_block}"
            )
        if not 0 <= self.pairs_std_window <= 32:
            raise InputError(
                f"pairs_std_window: must be in [0, 32] pixels, got {self.pairs_std_window}"
            )
        if self.prefetch_batches < 0:
            raise InputError(f"prefetch_batches: must be >= 0, got {self.prefetch_batches}")
        if self.cache_mb < 0:
            raise InputError(f"cache_mb: must be non-negative, got {self.cache_mb}")
        if self.precision not in (AUTO, *PRECISIONS):
            raise InputError(
                f"precision: must be auto, float32 or bfloat16, got {self.precision!r}"
            )
        if not isinstance(self.channels_last, bool) and self.channels_last != AUTO:
            raise InputError(
                f"channels_last: must be true, false or auto, got {self.channels_last!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device: must be auto, cpu or cuda, got {self.device!r}")
        if self.threads < 0:
            raise InputError(f"threads: must be non-negative, got {self.threads}")
        if (self.lr_schedule == "plateau" or self.keep_best) and not self.val_sigmas:
            raise InputError("val_sigmas: plateau schedule and keep_best need validation")
        if not 0 <= self.noise_map_loss < math.inf:
            raise InputError(f"noise_map_loss: must be >= 0, got {self.noise_map_loss}")
        if not 0 < self.estimator_lr_scale < math.inf:
            raise InputError(f"estimator_lr_scale: must be positive, got {self.estimator_lr_scale}")
        if not 0 <= self.denoiser_lr_scale < math.inf:
            raise InputError(f"denoiser_lr_scale: must be >= 0, got {self.denoiser_lr_scale}")
        if self.denoiser_lr_scale != 1 and not self.arch_options.get("noise_estimator"):
            raise InputError(
                "denoiser_lr_scale: needs a noise-map estimator (arch_options.noise_estimator)"
            )
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

    def noise_kinds(self) -> list[str]:
        """``noise`` as a list of kinds (one for a single model)."""
        return [self.noise] if isinstance(self.noise, str) else list(self.noise)

    def pair_folders(self) -> list[str]:
        """``pairs_dir`` as a list of folders (``[]`` for none)."""
        folders = [self.pairs_dir] if isinstance(self.pairs_dir, str) else self.pairs_dir
        return [folder for folder in folders if folder]

    def noise_model_options(self) -> NoiseOptions:
        """``noise_options`` as :class:`~filterscope.camera_noise.NoiseOptions`."""
        return NoiseOptions.from_dict(self.noise_options)

    def _validate_noise(self) -> None:
        kinds = self.noise_kinds()
        unknown = [kind for kind in kinds if kind not in NOISE_MODELS]
        if unknown or not kinds or len(set(kinds)) != len(kinds):
            raise InputError(
                f"noise: need one or more distinct kinds of {', '.join(NOISE_MODELS)}, "
                f"got {self.noise!r}"
            )
        weights = self.noise_weights
        if weights and (len(weights) != len(kinds) or min(weights) < 0 or sum(weights) <= 0):
            raise InputError(
                f"noise_weights: need one non-negative weight per noise kind "
                f"({len(kinds)}), not all zero, got {weights}"
            )
        self.noise_model_options()  # refuses unknown keys and bad ranges by name

    def _validate_color_augmentation(self) -> None:
        bounds = self.saturation_range
        if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
            raise InputError(f"saturation_range: need 0 < lo <= hi, got {bounds}")
        changes_color = self.channel_shuffle or tuple(bounds) != (1.0, 1.0)
        if changes_color and self.in_channels != 3:
            raise InputError(
                "saturation_range, channel_shuffle: colour changes need in_channels = 3"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def numeric_path(self, device: str | Any = "cpu") -> dict[str, Any]:
        """The training step's arithmetic on ``device``: ``{"precision": "float32" or
        "bfloat16", "channels_last": bool}``, ``"auto"`` resolved for this machine
        (:mod:`filterscope.machine`); explicit values are kept."""
        op = "train-gpu" if str(device).startswith("cuda") else "train"
        return {
            "precision": choose_precision(op, device, requested=self.precision),
            "channels_last": choose_channels_last(op, device, requested=self.channels_last),
        }


def _check_type(key: str, value: Any, default: Any, source: str) -> Any:
    """``value`` converted to the type of the field's default, or a one-line error."""
    expected = type(default)
    if key == "channels_last" and isinstance(value, bool):
        return value  # the default is "auto"; true and false are the explicit choices
    if key in ("noise", "pairs_dir") and isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return list(value)  # a mixture of noise models; several folders of pairs
    if expected is bool:
        if not isinstance(value, bool):
            raise InputError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected is str and isinstance(value, str):
        return value
    if expected is dict and isinstance(value, dict):
        return value
    if expected is list and isinstance(value, list):
        numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(value):
            return [float(v) for v in value]
    raise InputError(f"{source}: {key} must be a {expected.__name__}, got {value!r}")


def config_from_dict(values: dict[str, Any], *, source: str = "recipe") -> TrainConfig:
    """Build a :class:`TrainConfig`, refusing unknown keys and wrong types by name."""
    defaults = TrainConfig()
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise InputError(f"{source}: unknown key {key!r}")
        checked[key] = _check_type(key, value, getattr(defaults, key), source)
    config = TrainConfig(**checked)
    config.validate()
    return config


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``["steps=200", "sigma_range=[0, 10]"]`` -> ``{"steps": 200, ...}`` (TOML values).

    A value that is not valid TOML is taken as a string (``arch=unet``).
    """
    values: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"a recipe override is KEY=VALUE, got {item!r}")
        try:
            values[key] = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            values[key] = text.strip()
    return values


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


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def recipe_text(config: TrainConfig) -> str:
    """The resolved recipe as TOML: ``filterscope train --recipe`` on it reruns the run."""
    lines = ["# Resolved recipe written by filterscope train (recipe file + command line)."]
    lines += [f"{key} = {_toml_value(value)}" for key, value in config.to_dict().items()]
    return "\n".join(lines) + "\n"
