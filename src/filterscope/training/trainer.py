"""The training loop: Adam on noisy patches, resumable checkpoints, logs, model card.

One process trains on the CPU or a GPU; under ``torchrun`` several processes train one
model with DistributedDataParallel (see :mod:`.distributed`).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from .._files import atomic_write
from ..blur import gaussian_blur
from ..errors import CheckpointError, InputError
from ..metrics import psnr
from ..models import create_model
from ..models.checkpoints import load_pickle_safely, save_model, save_pickle
from ..models.zoo import load_model as load_trained_model
from ..noise import NOISE_KINDS, sample_sigmas
from .config import TrainConfig, config_from_dict, recipe_text
from .data import PatchSampler, check_validation_folder, load_validation_images
from .distributed import (
    DistributedContext,
    average_over_processes,
    broadcast_object,
    init_distributed,
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


def make_batch(
    sampler: PatchSampler,
    config: TrainConfig,
    batch_size: int,
    patch_generator: torch.Generator,
    noise_generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(noisy, clean, sigma_given)`` CPU batches: patches, optional blur, noise per patch.

    The clean target is the unblurred patch; the network sees it blurred (when
    ``blur_range`` is not ``[0, 0]``) and noisy. σ and blur width are drawn uniformly
    per patch from their ranges (0–255 scale for σ, pixels for the blur).
    ``sigma_given`` (image scale, shape ``(B,)``) is the σ the model is told: the
    patch's σ for a fraction ``sigma_known_fraction`` of the patches, 0 (blind) for
    the others.
    """
    clean = sampler.sample(batch_size, patch_generator)
    sigmas = sample_sigmas(
        batch_size,
        tuple(s / 255.0 for s in config.sigma_range),
        generator=noise_generator,
        power=config.sigma_power,
    )
    noise = NOISE_KINDS[config.noise](tuple(clean.shape), sigmas, generator=noise_generator)
    degraded = clean
    lo, hi = config.blur_range
    if hi > 0:
        widths = lo + (hi - lo) * torch.rand(batch_size, generator=noise_generator)
        degraded = gaussian_blur(clean, widths)
    sigma_given = torch.zeros(batch_size)
    if config.sigma_known_fraction > 0:
        known = torch.rand(batch_size, generator=noise_generator) < config.sigma_known_fraction
        sigma_given = torch.where(known, sigmas.reshape(-1).float(), sigma_given)
    return degraded + noise, clean, sigma_given


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    *,
    sigma: torch.Tensor | None = None,
    precision: str = "float32",
) -> torch.Tensor:
    """One Adam step on the mean squared error; returns the loss as a detached 0-d
    tensor on the batch's device (not read, so a GPU is not waited for).

    ``sigma`` (``(B,)``, image scale, 0 = unknown) is passed to the model; blind
    models ignore it. ``precision="bfloat16"`` runs the forward pass under bfloat16
    autocast; the loss, the weights, their gradients and the optimizer state stay
    float32.
    """
    with torch.autocast(noisy.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        estimate = model(noisy, sigma)
    loss = F.mse_loss(estimate.float(), clean)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    *,
    sigma: torch.Tensor | None = None,
    precision: str = "float32",
) -> float:
    """:func:`optimizer_step`, returning this process's loss as a float."""
    return optimizer_step(model, optimizer, noisy, clean, sigma=sigma, precision=precision).item()


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


def _build_model(config: TrainConfig) -> torch.nn.Module:
    """The recipe's network: random weights (seeded), or those of ``init_from``."""
    torch.manual_seed(config.seed)
    model = create_model(
        config.arch, bias=config.bias, in_channels=config.in_channels, **config.arch_options
    )
    if config.init_from:
        source = load_trained_model(config.init_from)
        if (source.arch, source.config) != (config.arch, model.config):
            raise CheckpointError(
                f"init_from: {config.init_from} is {source.arch} {source.config}, "
                f"not the recipe's {config.arch} {model.config}"
            )
        model.load_state_dict(source.state_dict())
    return model


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
    ctx = init_distributed(config.device)
    if config.batch_size % ctx.world_size:
        raise InputError(
            f"batch_size: {config.batch_size} does not split over {ctx.world_size} processes"
        )
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"out_dir: {out_dir} is a file, not a run folder")
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if checkpoint_path.exists() and not resume:
        raise InputError(f"{out_dir}: holds a run already; use --resume or another --out")
    if resume and not checkpoint_path.exists():
        raise InputError(f"{checkpoint_path}: nothing to resume")
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
    sampler = PatchSampler(
        config.data_dir,
        patch_size=config.patch_size,
        channels=config.in_channels,
        scales=tuple(config.scales),
        cache_mb=config.cache_mb / ctx.world_size,
        shard=(ctx.rank, ctx.world_size),
    )
    val_images = []
    if ctx.is_main and config.val_dir and Path(config.val_dir).is_dir():
        val_images = load_validation_images(
            config.val_dir, channels=config.in_channels, limit=config.val_images
        )
    if (config.lr_schedule == "plateau" or config.keep_best) and ctx.is_main and not val_images:
        raise InputError(f"val_dir: {config.val_dir!r} has no validation images")

    model = _build_model(config).to(ctx.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
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

    training_model: torch.nn.Module = model
    if ctx.distributed:
        training_model = wrap_distributed(model, ctx)

    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        # atomic: a full disk leaves no empty recipe.toml that a later --resume would read
        recipe, resolved = recipe_text(config), json.dumps(config.to_dict(), indent=2) + "\n"
        atomic_write(out_dir / RECIPE_NAME, lambda tmp: Path(tmp).write_text(recipe))
        atomic_write(out_dir / "config.json", lambda tmp: Path(tmp).write_text(resolved))
    logger = _Logger(out_dir, config, resume=resume, enabled=ctx.is_main)

    # Generator states after the last batch the model consumed (the prefetcher runs ahead).
    consumed = {"patch": patch_generator.get_state(), "noise": noise_generator.get_state()}

    def save_checkpoint() -> None:
        generators = _gather_generator_states(consumed, ctx)
        if not ctx.is_main:
            return
        payload = {
            "arch": config.arch,
            "config": model.config,
            "train_config": config.to_dict(),
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generators": generators,
            "step": step,
            "history": history,
            "plateau_scale": plateau_scale,
            "best": best,
        }
        if hasattr(model, "stage_generator"):
            payload["stage_generator"] = model.stage_generator.get_state()
        save_pickle(payload, checkpoint_path)

    total_steps = config.total_steps()
    steps_per_epoch = config.steps_per_epoch()
    val_interval = config.validation_interval()
    local_batch = config.batch_size // ctx.world_size
    model.train()
    bar = tqdm(
        total=total_steps,
        initial=step,
        disable=not (progress and ctx.is_main),
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
    )
    start = time.perf_counter()
    train_seconds = 0.0
    pixels = 0
    loss_value = float("nan")
    scores: dict[str, float] = {}
    prefetcher = BatchPrefetcher(
        lambda: make_batch(sampler, config, local_batch, patch_generator, noise_generator),
        {"patch": patch_generator, "noise": noise_generator},
        depth=config.prefetch_batches,
        pin_memory=ctx.device.type == "cuda",
    )
    try:
        while step < total_steps:
            lr = learning_rate(config, step, plateau_scale)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_start = time.perf_counter()
            batch, consumed = prefetcher.next()
            noisy, clean, sigma = (t.to(ctx.device, non_blocking=True) for t in batch)
            if config.channels_last:
                noisy = noisy.contiguous(memory_format=torch.channels_last)
            local_loss = training_step(
                training_model, optimizer, noisy, clean, sigma=sigma, precision=config.precision
            )
            train_seconds += time.perf_counter() - step_start
            loss_value = average_over_processes(local_loss, ctx)
            step += 1
            pixels += config.batch_size * config.patch_size**2
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.2e}", lr=f"{lr:.1e}")

            row: dict[str, Any] = {}
            validated = step % val_interval == 0 or step == total_steps
            if validated:
                if ctx.is_main and val_images:
                    row.update(validate(model, val_images, config.val_sigmas, device=ctx.device))
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
                scores = broadcast_object(row, ctx)
                score = _mean_score(scores)
                if scores and config.lr_schedule == "plateau" and history:
                    if score < _mean_score(history[-1]):
                        plateau_scale *= config.lr_gamma
                if scores and score > best["score"]:
                    best = {"score": score, "step": step, "state_dict": None}
                    if config.keep_best and ctx.is_main:
                        best["state_dict"] = copy.deepcopy(model.state_dict())
                if scores:
                    history.append({"step": step, **scores})
            elapsed = time.perf_counter() - start
            row.update(
                step=step,
                epoch=round(step / steps_per_epoch, 4),
                loss=loss_value,
                lr=lr,
                seconds=round(elapsed, 2),
                pixels_per_s=round(pixels / max(train_seconds, 1e-9)),
            )
            if step % 10 == 0 or validated:
                logger.log(row)
            if step % config.checkpoint_every == 0 or step == total_steps:
                save_checkpoint()
            if callback is not None:
                callback(step, loss_value)
    finally:
        prefetcher.close()
    bar.close()
    logger.close()

    if ctx.distributed:
        unsynchronize_batch_norm(model)
    model.eval()
    final_scores = {k: v for k, v in (history[-1] if history else {}).items() if k != "step"}
    if ctx.is_main:
        if config.keep_best and best.get("state_dict") is not None:
            model.load_state_dict(best["state_dict"])
        card = _model_card(
            config, step, sampler, final_scores, best, train_seconds, pixels, ctx.world_size
        )
        save_model(model, out_dir / MODEL_NAME, card=card, overwrite=True)
    if ctx.distributed:
        dist.barrier()
    return {
        "step": step,
        "seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "pixels_per_s": pixels / max(train_seconds, 1e-9),
        "loss": loss_value,
        "validation": final_scores,
        "best": {
            "score": best["score"] if math.isfinite(best["score"]) else None,
            "step": best["step"],
        },
    }


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
    return {
        "description": f"{'bias' if config.bias else 'bias-free'} {config.arch}, "
        f"{'gray' if config.in_channels == 1 else 'RGB'}, trained by filterscope",
        "training": {
            "sigma_range_255": list(config.sigma_range),
            "noise": config.noise,
            "blur_range": list(config.blur_range),
            "data": str(config.data_dir),
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
