"""The training loop: Adam on noisy patches, resumable checkpoints, logs, model card.

One process trains on the CPU or a GPU; under ``torchrun`` several processes train one
model with DistributedDataParallel (see :mod:`.distributed`).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from .._files import atomic_write
from ..blur import gaussian_blur
from ..errors import (
    RESUME_ADVICE,
    CheckpointError,
    InputError,
    ModelImportError,
    UnsupportedLayerError,
)
from ..machine import path_record
from ..metrics import psnr
from ..models import create_model
from ..models.base import CNNDenoiser
from ..models.checkpoints import load_pickle_safely, save_model, save_pickle
from ..models.noise_map import noise_level_map, pooled_map
from ..models.user import build_network, is_object_path, trusting_code
from ..models.zoo import load_model as load_trained_model
from ..models.zoo import model_file
from ..noise import NOISE_KINDS, SIGNAL_DEPENDENT_MODELS, mixed_noise, sample_sigmas
from .config import TrainConfig, config_from_dict, recipe_text
from .data import (
    PairedPatchSampler,
    PatchSampler,
    augment_color,
    augment_pairs,
    check_validation_folder,
    load_validation_images,
    measured_noise_std,
)
from .distributed import (
    DistributedContext,
    average_over_processes,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
    unsynchronize_batch_norm,
    wrap_distributed,
)
from .prefetch import BatchPrefetcher

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.safetensors"
LOG_NAME = "log.csv"
RECIPE_NAME = "recipe.toml"


def learning_rate(config: TrainConfig, step: int, plateau_scale: float = 1.0) -> float:
    """Learning rate of step ``step`` (0-based).

    Linear warm-up over ``warmup_steps``, then ``lr * lr_gamma ** (milestones passed)``
    (milestones as fractions of the run) for the ``"milestones"`` schedule, or
    ``lr * plateau_scale`` for ``"plateau"``, where the loop multiplies
    ``plateau_scale`` by ``lr_gamma`` each time validation PSNR drops.
    """
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.lr_schedule == "plateau":
        return config.lr * plateau_scale * warmup
    total = config.total_steps()
    passed = sum(step >= round(m * total) for m in config.lr_milestones)
    return config.lr * config.lr_gamma**passed * warmup


def recipe_noise(
    config: TrainConfig, clean: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The recipe's noise model or mixture (:func:`filterscope.noise.mixed_noise`) on
    ``clean``: the noisy patches, and the per-pixel std map ``(B, C, H, W)`` when the
    recipe has a signal-dependent model (None otherwise: ``sigmas`` says the level)."""
    kinds = config.noise_kinds()
    noisy, std_map = mixed_noise(
        clean,
        sigmas,
        kinds=kinds,
        weights=config.noise_weights or None,
        generator=generator,
        options=config.noise_model_options(),
    )
    signal_dependent = any(kind in SIGNAL_DEPENDENT_MODELS for kind in kinds)
    return noisy, std_map if signal_dependent else None


def make_batch(
    sampler: PatchSampler,
    config: TrainConfig,
    batch_size: int,
    patch_generator: torch.Generator,
    noise_generator: torch.Generator,
    pairs: PairedPatchSampler | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(noisy, clean, sigma_given, noise_std)`` CPU batches: patches, optional colour changes
    (:func:`~.data.augment_color`), optional blur, noise per patch.

    The clean target is the unblurred patch; the network sees it blurred (when
    ``blur_range`` is not ``[0, 0]``) and noisy. σ and blur width are drawn uniformly
    per patch from their ranges (0–255 scale for σ, pixels for the blur). The noise
    is the recipe's ``noise`` model, or for a list one kind per patch
    (:func:`filterscope.noise.mixed_noise`), all drawn from ``noise_generator``.
    ``sigma_given`` (image scale, shape ``(B,)``) is the σ the model is told: the
    patch's σ for a fraction ``sigma_known_fraction`` of the patches, 0 (blind) for
    the others; with a signal-dependent kind in ``noise`` ("poisson-gaussian",
    "camera") it is the ``(B, C, H, W)`` map of the noise std instead (zeros for the
    blind patches). ``noise_std`` is the true noise standard deviation of every patch
    (told or blind), broadcastable to the batch's shape (``(B, 1, 1, 1)`` for a σ per
    patch, ``(B, C, H, W)`` with a signal-dependent kind), NaN where it is not known:
    the target of a noise-map estimator's supervision (``noise_map_loss``).

    With ``pairs`` (the recipe's ``pairs_dir``), the last ``pairs_per_batch`` patches
    are real noisy / clean pairs instead, blind (σ given 0) with an unknown std (NaN),
    or with ``pairs_std_window`` their measured std map (:func:`~.data.measured_noise_std`,
    told like a synthetic patch's, ``sigma_given`` and ``noise_std`` then maps); they
    are drawn from ``patch_generator`` after everything else (then their zoom and
    gain, :func:`~.data.augment_pairs`), so a recipe without pairs draws the same stream
    as before.
    """
    clean = sampler.sample(batch_size, patch_generator)
    clean = augment_color(
        clean,
        saturation_range=tuple(config.saturation_range),
        channel_shuffle=config.channel_shuffle,
        generator=patch_generator,
    )
    sigmas = sample_sigmas(
        batch_size,
        tuple(s / 255.0 for s in config.sigma_range),
        generator=noise_generator,
        power=config.sigma_power,
    )
    kinds = config.noise_kinds()
    # One noise that ignores the image: drawn before the blur, the stream of every
    # recipe written before the other noise models (their runs resume unchanged).
    additive = len(kinds) == 1 and kinds[0] in NOISE_KINDS
    if additive:
        noise = NOISE_KINDS[kinds[0]](tuple(clean.shape), sigmas, generator=noise_generator)
    degraded = clean
    lo, hi = config.blur_range
    if hi > 0:
        widths = lo + (hi - lo) * torch.rand(batch_size, generator=noise_generator)
        degraded = gaussian_blur(clean, widths)
    noise_std = sigmas.float()
    if additive:
        noisy = degraded + noise
    else:
        noisy, std_map = recipe_noise(config, degraded, sigmas, noise_generator)
        if std_map is not None:
            noise_std = std_map
    sigma_given = torch.zeros(batch_size)
    known = torch.zeros(batch_size, dtype=torch.bool)
    if config.sigma_known_fraction > 0:
        known = torch.rand(batch_size, generator=noise_generator) < config.sigma_known_fraction
        if noise_std.shape[1:] == (1, 1, 1):
            sigma_given = torch.where(known, noise_std.reshape(-1), sigma_given)
        else:  # the std map, zeros (blind) for the patches that are not told
            sigma_given = torch.where(known.view(-1, 1, 1, 1), noise_std, 0.0)
    count = min(config.pairs_per_batch, batch_size) if pairs is not None else 0
    if count:
        real_noisy, real_clean = augment_pairs(
            *pairs.sample(count, patch_generator),
            zoom_range=tuple(config.pairs_zoom_range),
            gain_range=tuple(config.pairs_gain_range),
            generator=patch_generator,
        )
        noisy, clean = noisy.clone(), clean.clone()
        noisy[-count:], clean[-count:] = real_noisy, real_clean
        if config.pairs_std_window > 0:
            # Maps for the whole batch: the real patches' std varies over the patch.
            measured = measured_noise_std(
                real_noisy, real_clean, config.pairs_std_window, block=config.pairs_std_block
            )
            sigma_given = _as_map(sigma_given, noisy.shape)
            noise_std = _as_map(noise_std, noisy.shape)
            sigma_given[-count:] = torch.where(known[-count:].view(-1, 1, 1, 1), measured, 0.0)
            noise_std[-count:] = measured
        else:
            sigma_given, noise_std = sigma_given.clone(), noise_std.clone()
            sigma_given[-count:] = 0.0
            noise_std[-count:] = math.nan
    return noisy, clean, sigma_given, noise_std


def _as_map(std: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A per-patch std (``(B,)`` or ``(B, 1, 1, 1)``) or map as a new ``shape`` map."""
    per_patch = std.view(-1, 1, 1, 1) if std.dim() == 1 else std
    return per_patch.expand(shape).clone()


#: The functions of the recipe's ``loss`` names (:data:`filterscope.training.config.LOSSES`).
DENOISING_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    *,
    sigma: torch.Tensor | None = None,
    precision: str = "float32",
    noise_std: torch.Tensor | None = None,
    noise_map_loss: float = 0.0,
    loss: str = "mse",
) -> torch.Tensor:
    """One Adam step on the denoising ``loss`` (:data:`DENOISING_LOSSES`: mean squared
    or absolute error); returns the loss as a detached 0-d tensor on the batch's device
    (not read, so a GPU is not waited for).

    ``sigma`` (``(B,)`` or a map, image scale, 0 = unknown) is passed to the model;
    blind models ignore it. ``precision="bfloat16"`` runs the forward pass under
    bfloat16 autocast; the loss, the weights, their gradients and the optimizer state
    stay float32.

    A model with a noise-map estimator (``estimator`` attribute, see
    :class:`~filterscope.models.drunet.DRUNet`) gets the estimator's map for its blind
    patches (σ = 0), so the denoising loss trains the estimator through the blind path
    (with ``pooled_noise_map``, each patch's one level: the RMS of its map);
    ``noise_map_loss`` > 0 adds that weight times the mean squared error between the
    estimated map and the true ``noise_std`` (broadcastable to the batch; NaN where
    unknown, left out).
    """
    network = getattr(model, "module", model)
    estimator = getattr(network, "estimator", None)
    pooled = getattr(network, "config", {}).get("pooled_noise_map", False)
    with torch.autocast(noisy.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        estimated = None
        if estimator is not None and sigma is not None:
            estimated = estimator(noisy)
            fed = pooled_map(estimated) if pooled else estimated
            sigma = blind_rows_estimated(noisy, sigma, fed)
        estimate = model(noisy, sigma)
    total = DENOISING_LOSSES[loss](estimate.float(), clean)
    if estimated is not None and noise_map_loss > 0 and noise_std is not None:
        total = total + noise_map_loss * _map_error(estimated.float(), noise_std, noisy.shape)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return total.detach()


def blind_rows_estimated(
    noisy: torch.Tensor, sigma: torch.Tensor, estimated: torch.Tensor
) -> torch.Tensor:
    """The noise map a training batch feeds the network: ``sigma`` (``(B,)`` or a map)
    where an image was told its σ, the ``estimated`` map where it was not (σ = 0
    everywhere in that image)."""
    given = noise_level_map(noisy, sigma, channels=estimated.shape[1], check=False)
    blind = given.flatten(1).amax(dim=1).eq(0).view(-1, 1, 1, 1)
    return torch.where(blind, estimated.to(given.dtype), given)


def _map_error(estimated: torch.Tensor, noise_std: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Mean squared error of an estimated ``(B, k, H, W)`` map against the true std
    (broadcast to ``shape``; a per-channel std against a one-channel map as its root mean
    square over channels), over the images whose true std is known (finite)."""
    target = noise_std.to(estimated.device).expand(shape[0], -1, *shape[2:]).float()
    if estimated.shape[1] == 1 and target.shape[1] != 1:
        target = target.square().mean(dim=1, keepdim=True).sqrt()
    target = target.expand(estimated.shape)
    known = torch.isfinite(target)
    if not bool(known.any()):
        return estimated.new_zeros(())
    return (estimated[known] - target[known]).square().mean()


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    *,
    sigma: torch.Tensor | None = None,
    precision: str = "float32",
    noise_std: torch.Tensor | None = None,
    noise_map_loss: float = 0.0,
    loss: str = "mse",
) -> float:
    """:func:`optimizer_step`, returning this process's loss as a float."""
    return optimizer_step(
        model,
        optimizer,
        noisy,
        clean,
        sigma=sigma,
        precision=precision,
        noise_std=noise_std,
        noise_map_loss=noise_map_loss,
        loss=loss,
    ).item()


@torch.inference_mode()
def validate(
    model: torch.nn.Module,
    images: list,
    sigmas_255: list[float],
    *,
    seed: int = 1234,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Mean PSNR (dB) over ``images`` at each σ (0–255 scale), fixed noise per image and σ.

    Returns ``{"val_psnr_25": ..., ...}``; the noise of image ``i`` at σ is the same at
    every validation, so the numbers of one run are comparable step to step.
    """
    was_training = model.training
    model.eval()
    scores = {}
    for sigma in sigmas_255:
        values = []
        for index, (_, clean) in enumerate(images):
            generator = torch.Generator().manual_seed(seed + 1000 * index + int(sigma * 10))
            noisy = clean + torch.randn(clean.shape, generator=generator) * (sigma / 255.0)
            estimate = model(noisy.to(device)).float().cpu()
            values.append(float(psnr(estimate, clean)[0]))
        scores[f"val_psnr_{sigma:g}"] = sum(values) / len(values)
    model.train(was_training)
    return scores


def _mean_score(scores: dict[str, float]) -> float:
    values = [v for k, v in scores.items() if k.startswith("val_psnr_")]
    return sum(values) / len(values) if values else float("nan")


class _Logger:
    """CSV log (and TensorBoard when installed) written by the main process only."""

    def __init__(self, out_dir: Path, config: TrainConfig, *, resume: bool, enabled: bool):
        self.enabled = enabled
        self.path = out_dir / LOG_NAME
        self.columns = ["step", "epoch", "loss", "lr", "seconds", "pixels_per_s"] + [
            f"val_psnr_{s:g}" for s in config.val_sigmas
        ]
        self.writer = None
        if not enabled:
            return
        if not resume or not self.path.exists():
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # TensorBoard is optional
                pass
            else:
                self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([row.get(c, "") for c in self.columns])
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "seconds") and value != "":
                    self.writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _gather_generator_states(
    mine: dict[str, torch.Tensor], ctx: DistributedContext
) -> list[dict[str, torch.Tensor]]:
    """Every process's generator states (rank order), for an exact resume."""
    if not ctx.distributed:
        return [mine]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, mine)
    return gathered


def _build_model(config: TrainConfig, *, verify_init: bool = True) -> torch.nn.Module:
    """The recipe's network: random weights (seeded), or those of ``init_from`` (whose
    file must have the recipe's ``init_sha256`` when ``verify_init``; a resumed run
    replaces them by its checkpoint's, so it skips that).

    A Python object path is built by :func:`filterscope.models.user.build_network` (made
    bias-free when ``bias`` is false); what it refuses is an error naming ``arch``.
    """
    torch.manual_seed(config.seed)
    if is_object_path(config.arch):
        try:
            model = build_network(
                config.arch,
                config.arch_options,
                in_channels=config.in_channels,
                bias=config.bias,
            )
        except (ModelImportError, UnsupportedLayerError) as exc:
            raise InputError(f"arch: {exc}") from None
    else:
        model = create_model(
            config.arch, bias=config.bias, in_channels=config.in_channels, **config.arch_options
        )
    if config.init_from:
        if verify_init:
            _check_init_digest(config)
        # The recipe names its own network: a file of that network may rebuild it.
        with trusting_code(config.arch if is_object_path(config.arch) else False):
            source = load_trained_model(config.init_from)
        theirs = network_fields(config, source) if isinstance(source, CNNDenoiser) else source.card
        theirs = {key: theirs.get(key) for key in ("arch", "bias", "in_channels", "config")}
        mine = network_fields(config, model)
        # A denoiser without a noise-map estimator starts one that has it: the
        # estimator (and its options) are new, everything else must match.
        adds_estimator = isinstance(theirs["config"], dict) and _without_estimator(
            mine["config"]
        ) == _without_estimator(theirs["config"])
        if adds_estimator:
            theirs = {**theirs, "config": mine["config"]}
        if theirs != mine:
            raise CheckpointError(
                f"init_from: {config.init_from} is {theirs['arch']} {theirs['config']}, "
                f"not the recipe's {mine['arch']} {mine['config']}"
            )
        if adds_estimator and mine["config"].get("noise_estimator"):
            missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
            if unexpected or any(not key.startswith("estimator.") for key in missing):
                raise CheckpointError(
                    f"init_from: {config.init_from} does not hold the recipe's network "
                    f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
                )
        else:
            model.load_state_dict(source.state_dict())
    return model


def _check_init_digest(config: TrainConfig) -> None:
    """Refuse an ``init_from`` file whose SHA-256 is not the recipe's ``init_sha256``."""
    if not config.init_sha256:
        return
    path = model_file(config.init_from)
    digest = hashlib.sha256()
    with open(path, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != config.init_sha256:
        raise CheckpointError(
            f"init_from: {config.init_from} ({path}) has SHA-256 {digest.hexdigest()[:12]}..., "
            f"not the recipe's init_sha256 {config.init_sha256[:12]}...: the weights it "
            "starts from have changed since the recipe was run"
        )


_ESTIMATOR_OPTIONS = ("noise_estimator", "estimator_width", "blind_estimate", "pooled_noise_map")


def _without_estimator(options: dict[str, Any]) -> dict[str, Any]:
    """Constructor options less those of the blind path's noise estimate."""
    return {k: v for k, v in options.items() if k not in _ESTIMATOR_OPTIONS}


def network_fields(config: TrainConfig, model: torch.nn.Module) -> dict[str, Any]:
    """``arch``, ``bias``, ``in_channels`` and ``config`` (constructor options): what
    rebuilds the recipe's network, as checkpoints and model cards record it. For an
    object path ``config`` is the recipe's ``arch_options``."""
    if isinstance(model, CNNDenoiser):
        return {
            "arch": model.arch,
            "bias": model.bias,
            "in_channels": model.in_channels,
            "config": model.config,
        }
    return {
        "arch": config.arch,
        "bias": config.bias,
        "in_channels": config.in_channels,
        "config": dict(config.arch_options),
    }


def _load_resume_state(checkpoint_path: Path, config: TrainConfig) -> dict[str, Any]:
    state = load_pickle_safely(checkpoint_path)  # never runs code from the file
    try:
        saved = config_from_dict(state["train_config"], source=str(checkpoint_path))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{checkpoint_path}: not a filterscope training checkpoint ({exc})"
        ) from None
    mine = (config.arch, config.bias, config.in_channels, config.arch_options)
    theirs = (saved.arch, saved.bias, saved.in_channels, saved.arch_options)
    if mine != theirs:
        raise CheckpointError(
            f"{checkpoint_path}: was trained as {saved.arch} (bias={saved.bias}, "
            f"{saved.in_channels} channels, options {saved.arch_options}), not {config.arch} "
            f"(bias={config.bias}, {config.in_channels} channels, options {config.arch_options})"
        )
    if config.ema_decay > 0 and "ema" not in state:
        raise CheckpointError(
            f"{checkpoint_path}: holds no moving average of the weights (written with "
            f"ema_decay = 0); resume it with ema_decay = 0 or start a new run"
        )
    if "generators" not in state:  # checkpoints of filterscope 0.1 (one process)
        state["generators"] = [
            {"patch": state.get("patch_generator"), "noise": state.get("noise_generator")}
        ]
    return state


def _check_cpu_generators(state: dict[str, Any], checkpoint_path: Path) -> None:
    """Refuse a checkpoint whose generator states are not this trainer's (train-gpu's)."""
    if any("device" in g for g in state["generators"]):
        raise CheckpointError(
            f"{checkpoint_path}: written by train-gpu; resume it with filterscope train-gpu"
        )
    if any(g.get("patch") is None or g.get("noise") is None for g in state["generators"]):
        raise CheckpointError(f"{checkpoint_path}: holds no generator states to resume from")


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train a denoiser as ``config`` says, writing everything into ``out_dir``.

    Parameters
    ----------
    config : TrainConfig
        The recipe.
    out_dir : str or Path
        Run folder: ``recipe.toml`` and ``config.json`` (the resolved recipe),
        ``log.csv`` (loss every 10 steps, validation PSNR), ``tensorboard/`` (when
        TensorBoard is installed), ``checkpoint.pt`` (every ``checkpoint_every``
        steps), and at the end ``model.safetensors`` with its ``model.json`` card.
    resume : bool, keyword-only
        Continue from ``out_dir/checkpoint.pt``: weights, optimizer, step, schedule,
        best model so far, and every process's generator states, so the patches and
        noise continue exactly where a killed run stopped. Without it an existing run
        folder with a checkpoint is refused (nothing is overwritten).
    progress : bool, keyword-only
        Show a progress bar with loss and ETA (main process only).
    callback : callable, keyword-only
        Called as ``callback(step, loss)`` after every step (and after any checkpoint of
        that step was written).

    Returns
    -------
    dict
        ``step``, ``seconds`` (wall time of this call), ``train_seconds`` (optimizer
        steps only), ``pixels_per_s`` (training pixels per second of training time,
        all processes), last ``loss``, last ``validation`` scores and ``best``.

    Notes
    -----
    Under ``torchrun`` (``WORLD_SIZE`` > 1) each process reads every ``world_size``-th
    image, draws ``batch_size / world_size`` patches per step from its own generators,
    and the batch-norm statistics and gradients are reduced over all processes, so a
    step equals the single-process step on the concatenated batch. Process 0 validates
    and writes the run folder.
    """
    config.validate()
    check_validation_folder(config.val_dir)
    joins_group = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(config.device)
    out_dir = Path(out_dir)
    checkpoint_path = _check_run(config, out_dir, ctx, resume=resume)
    if config.threads:
        torch.set_num_threads(config.threads)
    state = _load_resume_state(checkpoint_path, config) if resume else None
    if state is not None:
        _check_cpu_generators(state, checkpoint_path)
    if state is not None and len(state["generators"]) != ctx.world_size:
        raise CheckpointError(
            f"{checkpoint_path}: was written by {len(state['generators'])} processes; "
            f"resume it with the same number, not {ctx.world_size}"
        )
    run = _Run.start(config, out_dir, ctx, state, resume=resume)
    run.run_steps(progress=progress, callback=callback)
    result = run.finish()
    if joins_group:
        # Left to the interpreter's exit, gloo's worker threads can abort the process.
        shutdown_distributed()
    return result


def _check_run(
    config: TrainConfig, out_dir: Path, ctx: DistributedContext, *, resume: bool
) -> Path:
    """:func:`train`'s checks of the batch split and the run folder; the checkpoint's
    path."""
    if config.batch_size % ctx.world_size:
        raise InputError(
            f"batch_size: {config.batch_size} does not split over {ctx.world_size} processes"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"out_dir: {out_dir} is a file, not a run folder")
    return run_checkpoint(out_dir, resume=resume)


def run_checkpoint(out_dir: Path, *, resume: bool) -> Path:
    """The run folder's checkpoint path; refuses a new run over an old one and a resume
    with nothing to resume."""
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if checkpoint_path.exists() and not resume:
        raise InputError(f"{out_dir}: holds a run already; {RESUME_ADVICE}")
    if resume and not checkpoint_path.exists():
        raise InputError(f"{checkpoint_path}: nothing to resume")
    return checkpoint_path


@dataclass
class _Run:
    """One :func:`train` call in one process: data, model, optimizer, generators, and
    where the run stands (step, schedule, best score, history, time and pixels)."""

    config: TrainConfig
    ctx: DistributedContext
    out_dir: Path
    sampler: PatchSampler
    pairs: PairedPatchSampler | None
    val_images: list
    model: torch.nn.Module
    training_model: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    patch_generator: torch.Generator
    noise_generator: torch.Generator
    logger: _Logger
    # Generator states after the last batch the model consumed (the prefetcher runs ahead).
    consumed: dict[str, torch.Tensor]
    step: int
    history: list[dict[str, float]]
    plateau_scale: float
    best: dict[str, Any]
    ema: dict[str, torch.Tensor] | None  # the moving average (ema_decay; main process only)
    started: float = 0.0  # time.perf_counter() when the steps began
    train_seconds: float = 0.0
    pixels: int = 0
    loss_value: float = float("nan")
    numeric: dict[str, Any] | None = None  # the arithmetic taken: TrainConfig.numeric_path

    @classmethod
    def start(
        cls,
        config: TrainConfig,
        out_dir: Path,
        ctx: DistributedContext,
        state: dict[str, Any] | None,
        *,
        resume: bool,
    ) -> _Run:
        """Open the data, build the model (from ``state`` when resuming) and write the
        run folder's recipe, config and log."""
        sampler = PatchSampler(
            config.data_dir,
            patch_size=config.patch_size,
            channels=config.in_channels,
            scales=tuple(config.scales),
            cache_mb=config.cache_mb / ctx.world_size,
            shard=(ctx.rank, ctx.world_size),
        )
        pairs = None
        if config.pairs_per_batch:
            pairs = PairedPatchSampler(
                config.pair_folders(),
                patch_size=config.patch_size,
                channels=config.in_channels,
                cache_mb=config.cache_mb / ctx.world_size,
            )
        val_images = []
        if ctx.is_main and config.val_dir and Path(config.val_dir).is_dir():
            val_images = load_validation_images(
                config.val_dir, channels=config.in_channels, limit=config.val_images
            )
        if (config.lr_schedule == "plateau" or config.keep_best) and ctx.is_main and not val_images:
            raise InputError(f"val_dir: {config.val_dir!r} has no validation images")

        numeric = config.numeric_path(ctx.device)
        model = _build_model(config, verify_init=state is None).to(ctx.device)
        if numeric["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(_parameter_groups(model, config), lr=config.lr)
        patch_generator = torch.Generator().manual_seed(config.seed + 1000 * ctx.rank)
        noise_generator = torch.Generator().manual_seed(config.seed + 1 + 1000 * ctx.rank)
        step = 0
        history: list[dict[str, float]] = []
        plateau_scale = 1.0
        best: dict[str, Any] = {"score": -math.inf, "step": 0, "state_dict": None}
        if state is not None:
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            patch_generator.set_state(state["generators"][ctx.rank]["patch"])
            noise_generator.set_state(state["generators"][ctx.rank]["noise"])
            if "stage_generator" in state and hasattr(model, "stage_generator"):
                model.stage_generator.set_state(state["stage_generator"])
            step = int(state["step"])
            history = list(state.get("history", []))
            plateau_scale = float(state.get("plateau_scale", 1.0))
            best = dict(state.get("best", best))
        ema = None
        if config.ema_decay > 0 and ctx.is_main:  # only the main process saves it
            ema = _copy_state(state["ema"] if state is not None else model.state_dict())

        training_model: torch.nn.Module = model
        if ctx.distributed:
            training_model = wrap_distributed(model, ctx)
        _write_run_folder(config, out_dir, ctx, numeric)
        logger = _Logger(out_dir, config, resume=resume, enabled=ctx.is_main)
        return cls(
            config=config,
            ctx=ctx,
            out_dir=out_dir,
            sampler=sampler,
            pairs=pairs,
            val_images=val_images,
            model=model,
            training_model=training_model,
            optimizer=optimizer,
            patch_generator=patch_generator,
            noise_generator=noise_generator,
            logger=logger,
            consumed={"patch": patch_generator.get_state(), "noise": noise_generator.get_state()},
            step=step,
            history=history,
            plateau_scale=plateau_scale,
            best=best,
            ema=ema,
            numeric=numeric,
        )

    def run_steps(self, *, progress: bool, callback: Callable[[int, float], None] | None) -> None:
        """Train up to the recipe's last step, with validations, log rows and checkpoints
        at their intervals; ``callback(step, loss)`` after each step."""
        config, ctx = self.config, self.ctx
        total_steps = config.total_steps()
        val_interval = config.validation_interval()
        local_batch = config.batch_size // ctx.world_size
        self.model.train()
        bar = tqdm(
            total=total_steps,
            initial=self.step,
            disable=not (progress and ctx.is_main),
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self.started = time.perf_counter()
        patch_generator, noise_generator = self.patch_generator, self.noise_generator
        prefetcher = BatchPrefetcher(
            lambda: make_batch(
                self.sampler, config, local_batch, patch_generator, noise_generator, self.pairs
            ),
            {"patch": patch_generator, "noise": noise_generator},
            depth=config.prefetch_batches,
            pin_memory=ctx.device.type == "cuda",
        )
        try:
            while self.step < total_steps:
                lr = self.train_step(prefetcher)
                bar.update(1)
                bar.set_postfix(loss=f"{self.loss_value:.2e}", lr=f"{lr:.1e}")
                row: dict[str, Any] = {}
                validated = self.step % val_interval == 0 or self.step == total_steps
                if validated:
                    row.update(self.run_validation(bar))
                self.record(row, lr, validated=validated)
                if self.step % config.checkpoint_every == 0 or self.step == total_steps:
                    self.save_checkpoint()
                if callback is not None:
                    callback(self.step, self.loss_value)
        finally:
            prefetcher.close()
        bar.close()
        self.logger.close()

    def train_step(self, prefetcher: BatchPrefetcher) -> float:
        """One optimizer step on the next prefetched batch; the learning rate it used."""
        config, ctx = self.config, self.ctx
        lr = learning_rate(config, self.step, self.plateau_scale)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        step_start = time.perf_counter()
        batch, self.consumed = prefetcher.next()
        noisy, clean, sigma, noise_std = (t.to(ctx.device, non_blocking=True) for t in batch)
        if self.numeric["channels_last"]:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        local_loss = training_step(
            self.training_model,
            self.optimizer,
            noisy,
            clean,
            sigma=sigma,
            precision=self.numeric["precision"],
            noise_std=noise_std,
            noise_map_loss=config.noise_map_loss,
            loss=config.loss,
        )
        if self.ema is not None:
            update_average(self.ema, self.model.state_dict(), config.ema_decay, self.step)
        self.train_seconds += time.perf_counter() - step_start
        self.loss_value = average_over_processes(local_loss, ctx)
        self.step += 1
        self.pixels += config.batch_size * config.patch_size**2
        return lr

    def run_validation(self, bar: tqdm) -> dict[str, float]:
        """Validation PSNR (main process; ``{}`` elsewhere), shared with every process to
        update the plateau schedule, the best score and the history."""
        config, ctx, step = self.config, self.ctx, self.step
        row: dict[str, float] = {}
        if ctx.is_main and self.val_images:
            kept = self.kept_model()
            row.update(validate(kept, self.val_images, config.val_sigmas, device=ctx.device))
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
        scores = broadcast_object(row, ctx)
        score = _mean_score(scores)
        if scores and config.lr_schedule == "plateau" and self.history:
            if score < _mean_score(self.history[-1]):
                self.plateau_scale *= config.lr_gamma
        if scores and score > self.best["score"]:
            self.best = {"score": score, "step": step, "state_dict": None}
            if config.keep_best and ctx.is_main:
                kept = self.ema if self.ema is not None else self.model.state_dict()
                self.best["state_dict"] = _copy_state(kept)
        if scores:
            self.history.append({"step": step, **scores})
        return row

    def kept_model(self) -> torch.nn.Module:
        """The weights a validation scores and the run keeps: the model, or with
        ``ema_decay`` a copy holding the moving average."""
        if self.ema is None:
            return self.model
        averaged = copy.deepcopy(self.model)
        averaged.load_state_dict(self.ema)
        return averaged

    def record(self, row: dict[str, Any], lr: float, *, validated: bool) -> None:
        """Complete ``row`` (the validation scores, if any) and log it every 10 steps
        and at validations."""
        elapsed = time.perf_counter() - self.started
        row.update(
            step=self.step,
            epoch=round(self.step / self.config.steps_per_epoch(), 4),
            loss=self.loss_value,
            lr=lr,
            seconds=round(elapsed, 2),
            pixels_per_s=round(self.pixels / max(self.train_seconds, 1e-9)),
        )
        if self.step % 10 == 0 or validated:
            self.logger.log(row)

    def save_checkpoint(self) -> None:
        """Everything a resume needs, with every process's generator states (all
        processes take part; the main one writes)."""
        generators = _gather_generator_states(self.consumed, self.ctx)
        if not self.ctx.is_main:
            return
        model = self.model
        payload = {
            **network_fields(self.config, model),
            "train_config": self.config.to_dict(),
            "state_dict": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generators": generators,
            "step": self.step,
            "history": self.history,
            "plateau_scale": self.plateau_scale,
            "best": self.best,
        }
        if self.ema is not None:
            payload["ema"] = self.ema
        if hasattr(model, "stage_generator"):
            payload["stage_generator"] = model.stage_generator.get_state()
        save_pickle(payload, self.out_dir / CHECKPOINT_NAME)

    def finish(self) -> dict[str, Any]:
        """Save the kept weights with their model card; :func:`train`'s summary."""
        config, ctx, model, best = self.config, self.ctx, self.model, self.best
        if ctx.distributed:
            unsynchronize_batch_norm(model)
        model.eval()
        last = self.history[-1] if self.history else {}
        final_scores = {k: v for k, v in last.items() if k != "step"}
        if ctx.is_main:
            if config.keep_best and best.get("state_dict") is not None:
                model.load_state_dict(best["state_dict"])
            elif self.ema is not None:
                model.load_state_dict(self.ema)
            card = _model_card(
                config,
                self.step,
                self.sampler,
                final_scores,
                best,
                self.train_seconds,
                self.pixels,
                ctx.world_size,
            )
            card["training"]["numeric_path"] = numeric_record(config, self.numeric)
            card.update(network_fields(config, model))
            save_model(model, self.out_dir / MODEL_NAME, card=card, overwrite=True)
        if ctx.distributed:
            dist.barrier()
        return {
            "step": self.step,
            "seconds": time.perf_counter() - self.started,
            "train_seconds": self.train_seconds,
            "pixels_per_s": self.pixels / max(self.train_seconds, 1e-9),
            "loss": self.loss_value,
            "validation": final_scores,
            "best": {
                "score": best["score"] if math.isfinite(best["score"]) else None,
                "step": best["step"],
            },
        }


def update_average(
    average: dict[str, torch.Tensor], current: dict[str, torch.Tensor], decay: float, step: int
) -> None:
    """One step of the weights' exponential moving average, in place: floating
    entries move to ``current`` by ``1 - min(decay, (1 + step) / (10 + step))``,
    others (counters) are copied."""
    weight = 1.0 - min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for key, value in current.items():
            if value.is_floating_point():
                average[key].lerp_(value.detach(), weight)
            else:
                average[key].copy_(value)


def _copy_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in state.items()}


def numeric_record(config: TrainConfig, numeric: dict[str, Any]) -> dict[str, Any]:
    """The arithmetic a run takes (``numeric``, from :meth:`TrainConfig.numeric_path`),
    what the recipe asked for, and the machine: for ``config.json`` and the model card."""
    requested = {"precision": config.precision, "channels_last": config.channels_last}
    return path_record("train", requested, numeric)


def _parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Adam's parameter groups: a noise-map estimator's weights (new, small, when a
    trained denoiser is fine-tuned with one) learn ``estimator_lr_scale`` times faster,
    the rest ``denoiser_lr_scale`` times. At 0 the rest is frozen instead
    (``requires_grad`` off, no group): it stays exactly as it is, and backward computes
    no gradients for it nor Adam any state."""
    estimator = getattr(model, "estimator", None)
    scales = (config.estimator_lr_scale, config.denoiser_lr_scale)
    if estimator is None or scales == (1, 1):
        return [{"params": list(model.parameters())}]
    mine = {id(p) for p in estimator.parameters()}
    rest = [p for p in model.parameters() if id(p) not in mine]
    groups = [{"params": list(estimator.parameters()), "lr_scale": config.estimator_lr_scale}]
    if config.denoiser_lr_scale == 0:
        for parameter in rest:
            parameter.requires_grad_(False)
        return groups
    return [{"params": rest, "lr_scale": config.denoiser_lr_scale}, *groups]


def _write_run_folder(
    config: TrainConfig, out_dir: Path, ctx: DistributedContext, numeric: dict[str, Any]
) -> None:
    """``recipe.toml`` (as written: ``auto`` stays ``auto``, so a resume on another
    machine chooses again) and ``config.json`` (with the ``numeric_path`` taken here);
    main process only."""
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        # atomic: a full disk leaves no empty recipe.toml that a later --resume would read
        values = {**config.to_dict(), "numeric_path": numeric_record(config, numeric)}
        recipe, resolved = recipe_text(config), json.dumps(values, indent=2) + "\n"
        atomic_write(out_dir / RECIPE_NAME, lambda tmp: Path(tmp).write_text(recipe))
        atomic_write(out_dir / "config.json", lambda tmp: Path(tmp).write_text(resolved))


def _model_card(
    config: TrainConfig,
    step: int,
    sampler: PatchSampler,
    final_scores: dict[str, float],
    best: dict[str, Any],
    train_seconds: float,
    pixels: int,
    world_size: int,
) -> dict[str, Any]:
    kept = "best validation" if config.keep_best and best.get("state_dict") is not None else "last"
    if config.ema_decay > 0:
        kept += f" (moving average of the weights, decay {config.ema_decay:g})"
    return {
        "description": f"{'bias' if config.bias else 'bias-free'} {config.arch}, "
        f"{'gray' if config.in_channels == 1 else 'RGB'}, trained by filterscope",
        "training": {
            "sigma_range_255": list(config.sigma_range),
            "noise": config.noise,
            "blur_range": list(config.blur_range),
            "data": str(config.data_dir),
            "real_pairs": (
                f"{', '.join(config.pair_folders())}, "
                f"{config.pairs_per_batch} of {config.batch_size} patches"
                if config.pairs_per_batch
                else None
            ),
            "skipped_images": sampler.skipped,
            "recipe": config.to_dict(),
            "steps": step,
            "patches_seen": step * config.batch_size,
            "processes": world_size,
            "weights_kept": kept,
            "best_step": best.get("step"),
            "train_seconds_this_session": round(train_seconds, 1),
            "pixels_per_s": round(pixels / max(train_seconds, 1e-9)),
        },
        "metrics": {
            "validation": final_scores,
            "best_validation_mean_psnr": best["score"] if math.isfinite(best["score"]) else None,
        },
    }
