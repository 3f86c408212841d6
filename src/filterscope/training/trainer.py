"""The training loop: Adam on noisy patches, resumable checkpoints, CSV log, model card."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .._files import atomic_write
from ..errors import CheckpointError, InputError
from ..metrics import psnr
from ..models import create_model
from ..models.checkpoints import save_model
from ..noise import NOISE_KINDS, sample_sigmas
from .config import TrainConfig, config_from_dict
from .data import PatchSampler, load_validation_images

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.safetensors"
LOG_NAME = "log.csv"


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then ``lr * lr_gamma ** (milestones passed)`` (milestones as fractions)."""
    passed = sum(step >= round(m * config.steps) for m in config.lr_milestones)
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    return config.lr * config.lr_gamma**passed * warmup


@torch.inference_mode()
def validate(
    model: torch.nn.Module, images: list, sigmas_255: list[float], *, seed: int = 1234
) -> dict[str, float]:
    """Mean PSNR (dB) over ``images`` at each σ (0–255 scale), fixed noise per image and σ."""
    was_training = model.training
    model.eval()
    scores = {}
    for sigma in sigmas_255:
        values = []
        for index, (_, clean) in enumerate(images):
            generator = torch.Generator().manual_seed(seed + 1000 * index + int(sigma * 10))
            noisy = clean + torch.randn(clean.shape, generator=generator) * (sigma / 255.0)
            values.append(float(psnr(model(noisy), clean)[0]))
        scores[f"val_psnr_{sigma:g}"] = sum(values) / len(values)
    model.train(was_training)
    return scores


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
        The recipe, already validated.
    out_dir : str or Path
        Run folder: ``config.json`` (resolved recipe), ``log.csv``, ``checkpoint.pt``
        (every ``checkpoint_every`` steps), and at the end ``model.safetensors`` with
        its ``model.json`` card.
    resume : bool, keyword-only
        Continue from ``out_dir/checkpoint.pt``: weights, optimizer, step, and the
        generator states, so the patches and noise continue exactly where a killed run
        stopped. Without it an existing run folder with a checkpoint is refused.
    progress : bool, keyword-only
        Show a progress bar with loss and ETA.
    callback : callable, keyword-only
        Called as ``callback(step, loss)`` after every step (and after any checkpoint of
        that step was written).

    Returns
    -------
    dict
        Final step, seconds, last loss and validation scores.
    """
    config.validate()
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if checkpoint_path.exists() and not resume:
        raise InputError(f"{out_dir}: holds a run already; use --resume or another --out")
    if resume and not checkpoint_path.exists():
        raise InputError(f"{checkpoint_path}: nothing to resume")
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)

    torch.manual_seed(config.seed)
    model = create_model(
        config.arch, bias=config.bias, in_channels=config.in_channels, **config.arch_options
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    patch_generator = torch.Generator().manual_seed(config.seed)
    noise_generator = torch.Generator().manual_seed(config.seed + 1)
    step = 0
    history: list[dict[str, float]] = []
    if resume:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        saved = config_from_dict(state["train_config"], source=str(checkpoint_path))
        if (saved.arch, saved.bias, saved.in_channels) != (
            config.arch,
            config.bias,
            config.in_channels,
        ):
            raise CheckpointError(
                f"{checkpoint_path}: was trained as {saved.arch} (bias={saved.bias}, "
                f"{saved.in_channels} channels), not {config.arch} (bias={config.bias}, "
                f"{config.in_channels} channels)"
            )
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        patch_generator.set_state(state["patch_generator"])
        noise_generator.set_state(state["noise_generator"])
        if "stage_generator" in state and hasattr(model, "stage_generator"):
            model.stage_generator.set_state(state["stage_generator"])
        step = int(state["step"])
        history = list(state.get("history", []))

    sampler = PatchSampler(
        config.data_dir,
        patch_size=config.patch_size,
        channels=config.in_channels,
        scales=tuple(config.scales),
    )
    val_images = []
    if config.val_dir and Path(config.val_dir).is_dir():
        val_images = load_validation_images(
            config.val_dir, channels=config.in_channels, limit=config.val_images
        )
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    def save_checkpoint() -> None:
        state = {
            "arch": config.arch,
            "config": model.config,
            "train_config": config.to_dict(),
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "patch_generator": patch_generator.get_state(),
            "noise_generator": noise_generator.get_state(),
            "step": step,
            "history": history,
        }
        if hasattr(model, "stage_generator"):
            state["stage_generator"] = model.stage_generator.get_state()
        atomic_write(checkpoint_path, lambda tmp: torch.save(state, tmp), suffix=".pt")

    log_path = out_dir / LOG_NAME
    log_columns = ["step", "loss", "lr", "seconds", "pixels_per_s"] + [
        f"val_psnr_{s:g}" for s in config.val_sigmas
    ]
    if not log_path.exists() or not resume:
        with log_path.open("w", newline="") as handle:
            csv.writer(handle).writerow(log_columns)

    add_noise_fn = NOISE_KINDS[config.noise]
    model.train()
    bar = tqdm(
        total=config.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True
    )
    start = time.perf_counter()
    pixels = 0
    loss_value = float("nan")
    while step < config.steps:
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        clean = sampler.sample(config.batch_size, patch_generator)
        sigmas = sample_sigmas(
            config.batch_size,
            tuple(s / 255.0 for s in config.sigma_range),
            generator=noise_generator,
        )
        noisy = clean + add_noise_fn(tuple(clean.shape), sigmas, generator=noise_generator)
        loss = F.mse_loss(model(noisy), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        pixels += clean.numel() // config.in_channels
        loss_value = loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.2e}", lr=f"{lr:.1e}")

        row: dict[str, Any] = {}
        if step % config.val_every == 0 or step == config.steps:
            if val_images:
                row.update(validate(model, val_images, config.val_sigmas))
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
        elapsed = time.perf_counter() - start
        row.update(
            step=step,
            loss=loss_value,
            lr=lr,
            seconds=round(elapsed, 2),
            pixels_per_s=round(pixels / max(elapsed, 1e-9)),
        )
        if step % 10 == 0 or "val_psnr_" + f"{config.val_sigmas[0]:g}" in row:
            with log_path.open("a", newline="") as handle:
                csv.writer(handle).writerow([row.get(c, "") for c in log_columns])
        if any(k.startswith("val_") for k in row):
            history.append({k: v for k, v in row.items() if k.startswith("val_") or k == "step"})
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint()
        if callback is not None:
            callback(step, loss_value)
    bar.close()

    model.eval()
    final_scores = history[-1] if history else {}
    card = {
        "description": f"{'bias' if config.bias else 'bias-free'} {config.arch}, "
        f"{'gray' if config.in_channels == 1 else 'RGB'}, trained by filterscope",
        "training": {
            "sigma_range_255": list(config.sigma_range),
            "noise": config.noise,
            "data": str(config.data_dir),
            "recipe": config.to_dict(),
            "steps": step,
            "patches_seen": step * config.batch_size,
        },
        "metrics": {"validation": final_scores},
    }
    save_model(model, out_dir / MODEL_NAME, card=card, overwrite=True)
    return {
        "step": step,
        "seconds": time.perf_counter() - start,
        "loss": loss_value,
        "validation": final_scores,
    }
