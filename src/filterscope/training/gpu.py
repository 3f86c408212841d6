"""Training on one GPU within a fixed time budget, with the whole data set on the device.

The CPU trainer (:mod:`.trainer`) cuts patches in Python and draws noise on the CPU,
which is right for a CPU but would leave a GPU waiting: a step of a small U-Net on a
GPU takes milliseconds. Here every training image, at every down-scaling of the
recipe's ``scales``, is decoded once (by :class:`~.data.PatchSampler`, so unreadable
files are skipped the same way) and copied to the device; each step then cuts the
patches, applies the 8 flips/rotations, draws σ and the noise, all on the device from
one ``torch.Generator`` of that device. The forward pass runs under bfloat16 autocast
in channels-last layout where the GPU supports bfloat16 (``precision`` and
``channels_last`` ``"auto"``, see :mod:`filterscope.machine`), Adam is fused on a GPU,
and nothing reads a value back to the host during training except every
``log_every`` steps (the logged loss), at validations and at checkpoints.

A run lasts a fixed wall-clock budget (``minutes``) of training steps, or the
recipe's ``steps`` if those come first; the learning-rate milestones of the recipe
are fractions of that budget. The run folder has the CPU trainer's layout:
``recipe.toml``, ``config.json``, ``log.csv``, a resumable ``checkpoint.pt`` (which
:func:`filterscope.load_checkpoint` also reads) and at the end ``model.safetensors``
with its ``model.json`` card, so ``filterscope denoise --model RUN/model.safetensors``
uses the result on any machine.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_write
from ..errors import CheckpointError, InputError
from ..models.checkpoints import save_model
from ..noise import NOISE_KINDS, sample_sigmas
from .config import TrainConfig, recipe_text
from .data import PatchSampler, augment_color, check_validation_folder, load_validation_images
from .distributed import resolve_device
from .trainer import (
    CHECKPOINT_NAME,
    MODEL_NAME,
    RECIPE_NAME,
    _build_model,
    _load_resume_state,
    _Logger,
    _mean_score,
    _model_card,
    network_fields,
    numeric_record,
    optimizer_step,
    recipe_noise,
    run_checkpoint,
    validate,
)


class DevicePatchBank:
    """Every training image of a :class:`PatchSampler` on one device; patches cut there.

    The images (one per file and scale, of different sizes) are stored flattened,
    end to end, in one float32 tensor; a patch is read with one gather whose indices
    already hold the crop position and the flip/rotation, so a whole batch is cut by
    a few device kernels, whatever its size.

    Parameters
    ----------
    sampler : PatchSampler
        Gives the decoded, down-scaled images and the patch size.
    device : torch.device or str
        Where the images live and the patches are cut.

    Notes
    -----
    Same distribution as :meth:`PatchSampler.sample`: an image (file and scale) drawn
    in proportion to its area, a crop position uniformly, then one of the 8
    flips/rotations uniformly. The stream of patches differs (other random draws).
    Memory: 4 bytes per pixel and channel of all scaled images (about 2.4 GB for
    CBSD432 at scales 1, 0.9, 0.8, 0.7).
    """

    def __init__(self, sampler: PatchSampler, device: torch.device | str):
        self.device = torch.device(device)
        self.patch_size = sampler.patch_size
        self.channels = sampler.channels
        shapes = [(c, h, w) for *_, c, h, w in sampler.entries]
        starts = [0]
        for c, h, w in shapes:
            starts.append(starts[-1] + c * h * w)
        # Filled image by image: no second host copy of the whole set is made.
        self.pixels = torch.empty(starts[-1], device=self.device)
        for entry, (start, end) in enumerate(zip(starts[:-1], starts[1:], strict=True)):
            self.pixels[start:end].view(shapes[entry]).copy_(sampler.image(entry))
        self.starts = torch.tensor(starts[:-1], dtype=torch.long, device=self.device)
        self.heights = torch.tensor([h for _, h, _ in shapes], device=self.device)
        self.widths = torch.tensor([w for *_, w in shapes], device=self.device)
        area = (self.heights * self.widths).double()
        self.weights = (area / area.sum()).float()

    @property
    def megabytes(self) -> float:
        """Device memory held by the images (MB)."""
        return self.pixels.numel() * self.pixels.element_size() / 2**20

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A ``(batch_size, C, p, p)`` float32 batch in [0, 1] on the device.

        ``generator`` must live on the bank's device.
        """
        p, device = self.patch_size, self.device
        entry = torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)
        height, width = self.heights[entry], self.widths[entry]
        top = (torch.rand(batch_size, generator=generator, device=device) * (height - p + 1)).long()
        left = (torch.rand(batch_size, generator=generator, device=device) * (width - p + 1)).long()
        top = torch.minimum(top, height - p)  # rand may round up to exactly 1.0 in float32
        left = torch.minimum(left, width - p)
        mode = torch.randint(0, 8, (batch_size,), generator=generator, device=device)
        # The 8 flips/rotations as 3 bits: transpose, flip rows, flip columns.
        transpose = (mode & 4).bool().view(-1, 1, 1)
        flip_rows = (mode & 2).bool().view(-1, 1, 1)
        flip_cols = (mode & 1).bool().view(-1, 1, 1)
        i = torch.arange(p, device=device).view(1, p, 1)
        j = torch.arange(p, device=device).view(1, 1, p)
        rows = torch.where(transpose, j, i)
        cols = torch.where(transpose, i, j)
        rows = torch.where(flip_rows, p - 1 - rows, rows) + top.view(-1, 1, 1)
        cols = torch.where(flip_cols, p - 1 - cols, cols) + left.view(-1, 1, 1)
        within = rows * width.view(-1, 1, 1) + cols  # (B, p, p)
        plane = (height * width).view(-1, 1, 1, 1)
        channel = torch.arange(self.channels, device=device).view(1, -1, 1, 1)
        index = self.starts[entry].view(-1, 1, 1, 1) + channel * plane + within.unsqueeze(1)
        return self.pixels[index]


def make_device_batch(
    bank: DevicePatchBank,
    config: TrainConfig,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(noisy, clean, sigma_given)`` made on the bank's device, as the CPU trainer's
    :func:`~.trainer.make_batch` makes them (no blur: the GPU recipes have none).

    σ is drawn uniformly per patch from ``sigma_range`` (0–255 scale); ``sigma_given``
    (``(B,)``, image scale) is that σ for a fraction ``sigma_known_fraction`` of the
    patches and 0 (blind) for the others; with a signal-dependent kind in the
    recipe's ``noise`` it is the ``(B, C, H, W)`` noise std map (zeros when blind).
    """
    device = bank.device
    clean = bank.sample(batch_size, generator)
    clean = augment_color(
        clean,
        saturation_range=tuple(config.saturation_range),
        channel_shuffle=config.channel_shuffle,
        generator=generator,
    )
    sigma_range = tuple(s / 255.0 for s in config.sigma_range)
    sigmas = sample_sigmas(
        batch_size, sigma_range, generator=generator, device=device, power=config.sigma_power
    )
    kinds = config.noise_kinds()
    level = sigmas.reshape(-1)
    if len(kinds) == 1 and kinds[0] in NOISE_KINDS:
        noisy = clean + NOISE_KINDS[kinds[0]](
            tuple(clean.shape), sigmas, generator=generator, device=device
        )
    else:
        # The other models (and mixtures) read the kinds chosen back to the host, and
        # JPEG runs on the CPU: slower on a GPU, but the same noise as the CPU trainer's.
        noisy, std_map = recipe_noise(config, clean, sigmas, generator)
        if std_map is not None:
            level = std_map
    known = torch.rand(batch_size, generator=generator, device=device)
    known = (known < config.sigma_known_fraction).view(-1, *[1] * (level.dim() - 1))
    sigma_given = torch.where(known, level, torch.zeros((), dtype=clean.dtype, device=device))
    return noisy, clean, sigma_given


def budget_learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Learning rate at ``step`` when a fraction ``progress`` of the run is done.

    Linear warm-up over ``warmup_steps`` steps, then ``lr * lr_gamma ** k`` where ``k``
    counts the ``lr_milestones`` (fractions of the run) that ``progress`` has passed.
    """
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    passed = sum(progress >= m for m in config.lr_milestones)
    return config.lr * config.lr_gamma**passed * warmup


def _check_supported(config: TrainConfig) -> None:
    """The recipe keys this trainer does not implement, refused by name."""
    if config.blur_range[1] > 0:
        raise InputError("blur_range: GPU training draws no blur; use filterscope train")
    if config.pairs_per_batch:
        raise InputError("pairs_per_batch: GPU training draws no real pairs; use filterscope train")
    if config.lr_schedule != "milestones":
        raise InputError("lr_schedule: GPU training uses milestones (fractions of the budget)")
    if config.keep_best:
        raise InputError("keep_best: GPU training keeps the last weights")
    if config.ema_decay:
        raise InputError("ema_decay: GPU training keeps no moving average; use filterscope train")
    if config.denoiser_lr_scale != 1:
        raise InputError("denoiser_lr_scale: GPU training trains every weight alike")
    if config.estimator_lr_scale != 1:
        raise InputError("estimator_lr_scale: GPU training trains every weight alike")
    if config.noise_map_loss:
        raise InputError("noise_map_loss: GPU training has no map loss; use filterscope train")


def train_on_device(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    minutes: float,
    resume: bool = False,
    log_every: int = 100,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config``'s model for ``minutes`` of training time on one device.

    Parameters
    ----------
    config : TrainConfig
        The recipe. ``steps`` caps the run; ``device`` picks the device (``"auto"``:
        a GPU when there is one). ``blur_range``, real pairs, the plateau schedule,
        ``keep_best`` and ``ema_decay`` are not supported here.
    out_dir : str or Path
        Run folder (layout of :func:`~.trainer.train`).
    minutes : float, keyword-only
        Budget of training time (the optimizer steps; loading the data, validations
        and checkpoints are not counted). The learning-rate milestones are fractions of
        it (or of ``steps``, whichever is nearer to its end).
    resume : bool, keyword-only
        Continue ``out_dir/checkpoint.pt`` (weights, Adam state, generator state, step
        and training time already spent) until the budget is used up.
    log_every : int, keyword-only
        Steps between loss log lines: the only per-step value read from the device.
    progress : bool, keyword-only
        Print the logged lines on stderr.

    Returns
    -------
    dict
        ``step``, ``train_seconds`` (all sessions), ``seconds`` (wall time of this
        call), ``pixels_per_s`` (this call), last ``loss``, ``validation`` scores,
        ``device`` (its name) and ``bank_megabytes``.
    """
    out_dir = Path(out_dir)
    checkpoint_path = _check_run(
        config, out_dir, minutes=minutes, resume=resume, log_every=log_every
    )
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one patch size: the fastest kernels pay off
    state = _load_resume_state(checkpoint_path, config) if resume else None
    if state is not None and "device" not in state["generators"][0]:
        raise CheckpointError(
            f"{checkpoint_path}: was written by filterscope train; resume it with that command"
        )
    run = _DeviceRun.start(
        config, out_dir, device, state, minutes=minutes, resume=resume, progress=progress
    )
    run.say(
        f"{config.arch} on {device}: {len(run.sampler.entries)} images/scales "
        f"({run.bank.megabytes:.0f} MB on the device), {minutes:g} min budget"
    )
    run.train(log_every)
    return run.finish()


def _check_run(
    config: TrainConfig, out_dir: Path, *, minutes: float, resume: bool, log_every: int
) -> Path:
    """:func:`train_on_device`'s checks of its arguments; the checkpoint's path."""
    config.validate()
    check_validation_folder(config.val_dir)
    _check_supported(config)
    if not minutes > 0:
        raise InputError(f"minutes: must be positive, got {minutes}")
    if log_every < 1:
        raise InputError(f"log_every: must be a positive integer, got {log_every}")
    return run_checkpoint(out_dir, resume=resume)


@dataclass
class _DeviceRun:
    """One :func:`train_on_device` call: what it trains with, where it stands, and its
    clock (training time counts only between ``lap`` and the next read-back)."""

    config: TrainConfig
    out_dir: Path
    minutes: float
    device: torch.device
    sampler: PatchSampler
    bank: DevicePatchBank
    val_images: list
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    logger: _Logger
    progress: bool
    started: float  # time.perf_counter() when the data began to load
    step: int
    spent: float  # training seconds of all sessions
    history: list
    first_step: int  # step at which this call began
    loss_sum: torch.Tensor  # on the device, since the last read-back
    loss_count: int = 0
    loss_value: float = float("nan")
    this_call: float = 0.0  # training seconds of this call
    lap: float = 0.0
    numeric: dict[str, Any] | None = None  # the arithmetic taken: TrainConfig.numeric_path

    @classmethod
    def start(
        cls,
        config: TrainConfig,
        out_dir: Path,
        device: torch.device,
        state: dict[str, Any] | None,
        *,
        minutes: float,
        resume: bool,
        progress: bool,
    ) -> _DeviceRun:
        """Load the data onto ``device``, build the model (from ``state`` when resuming)
        and write the run folder's recipe, config and log."""
        started = time.perf_counter()
        sampler = PatchSampler(
            config.data_dir,
            patch_size=config.patch_size,
            channels=config.in_channels,
            scales=tuple(config.scales),
            cache_mb=config.cache_mb,
        )
        bank = DevicePatchBank(sampler, device)
        val_images = []
        if config.val_dir and Path(config.val_dir).is_dir():
            val_images = load_validation_images(
                config.val_dir, channels=config.in_channels, limit=config.val_images
            )
        numeric = config.numeric_path(device)
        model = _build_model(config, verify_init=state is None).to(device)
        if numeric["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=device.type == "cuda")
        generator = torch.Generator(device=device).manual_seed(config.seed)
        step, spent, history = 0, 0.0, []
        if state is not None:
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generators"][0]["device"])
            step = int(state["step"])
            spent = float(state.get("train_seconds", 0.0))
            history = list(state.get("history", []))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / RECIPE_NAME).write_text(recipe_text(config))
        values = {**config.to_dict(), "numeric_path": numeric_record(config, numeric)}
        (out_dir / "config.json").write_text(json.dumps(values, indent=2) + "\n")
        logger = _Logger(out_dir, config, resume=resume, enabled=True)
        return cls(
            config=config,
            out_dir=out_dir,
            minutes=minutes,
            device=device,
            sampler=sampler,
            bank=bank,
            val_images=val_images,
            model=model,
            optimizer=optimizer,
            generator=generator,
            logger=logger,
            progress=progress,
            started=started,
            step=step,
            spent=spent,
            history=history,
            first_step=step,
            loss_sum=torch.zeros((), device=device),
            numeric=numeric,
        )

    @property
    def budget(self) -> float:
        """Training time allowed, in seconds."""
        return self.minutes * 60.0

    @property
    def pixels_per_step(self) -> int:
        return self.config.batch_size * self.config.patch_size**2

    def say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def fraction_done(self) -> float:
        """How far the run is: of the time budget or of the steps, whichever is further."""
        elapsed = self.spent + time.perf_counter() - self.lap
        return max(elapsed / self.budget, self.step / self.config.total_steps())

    def stop_clock(self) -> None:
        """Add the time since ``lap`` to the training time."""
        now = time.perf_counter()
        self.spent += now - self.lap
        self.this_call += now - self.lap

    def train(self, log_every: int) -> None:
        """Optimizer steps until the budget or the steps are used up, with a log line,
        validation and checkpoint at their intervals."""
        config = self.config
        self.model.train()
        self.lap = time.perf_counter()
        while self.fraction_done() < 1.0:
            lr = self.train_step()
            logged = self.step % log_every == 0
            validated = bool(self.val_images) and self.step % config.validation_interval() == 0
            checkpointed = self.step % config.checkpoint_every == 0
            if logged or validated or checkpointed:
                self.report(lr, validated=validated, checkpointed=checkpointed)

    def train_step(self) -> float:
        """One optimizer step on a fresh device batch; the learning rate it used."""
        config = self.config
        lr = budget_learning_rate(config, self.step, self.fraction_done())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        noisy, clean, sigma_given = make_device_batch(
            self.bank, config, config.batch_size, self.generator
        )
        if self.numeric["channels_last"]:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        self.loss_sum += optimizer_step(
            self.model,
            self.optimizer,
            noisy,
            clean,
            sigma=sigma_given,
            precision=self.numeric["precision"],
            loss=config.loss,
        )
        self.loss_count += 1
        self.step += 1
        return lr

    def report(self, lr: float, *, validated: bool, checkpointed: bool) -> None:
        """Read the mean loss back, log it (and validate, checkpoint when due)."""
        # Reading a value waits for the device: the clock stops here, and restarts after
        # the validation and checkpoint, which are not training time.
        self.loss_value = float(self.loss_sum / self.loss_count)
        self.loss_sum.zero_()
        self.loss_count = 0
        self.stop_clock()
        step, spent = self.step, self.spent
        row: dict[str, Any] = {}
        if validated:
            row.update(
                validate(self.model, self.val_images, self.config.val_sigmas, device=self.device)
            )
            self.history.append({"step": step, **row})
        row.update(
            step=step,
            loss=self.loss_value,
            lr=lr,
            seconds=round(spent, 2),
            pixels_per_s=round(
                (step - self.first_step) * self.pixels_per_step / max(self.this_call, 1e-9)
            ),
        )
        self.logger.log(row)
        self.say(
            f"step {step}: loss {self.loss_value:.3e}, lr {lr:.1e}, "
            f"{spent:.0f}/{self.budget:.0f} s"
            + "".join(f", {k} {v:.2f}" for k, v in row.items() if k.startswith("val_psnr_"))
        )
        if checkpointed:
            self.save_checkpoint()
        self.lap = time.perf_counter()

    def save_checkpoint(self) -> None:
        payload = {
            **network_fields(self.config, self.model),
            "train_config": self.config.to_dict(),
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generators": [{"device": self.generator.get_state()}],
            "step": self.step,
            "train_seconds": self.spent,
            "minutes": self.minutes,
            "history": self.history,
        }
        path = self.out_dir / CHECKPOINT_NAME
        atomic_write(path, lambda tmp: torch.save(payload, tmp), suffix=".pt")

    def finish(self) -> dict[str, Any]:
        """Wait for the last steps, validate, save checkpoint and model; the summary."""
        if self.loss_count:
            self.loss_value = float(self.loss_sum / self.loss_count)
        self.stop_clock()
        final_scores: dict[str, float] = {}
        if self.val_images:
            final_scores = validate(
                self.model, self.val_images, self.config.val_sigmas, device=self.device
            )
            if not self.history or self.history[-1]["step"] != self.step:
                self.history.append({"step": self.step, **final_scores})
        self.logger.log(
            {
                "step": self.step,
                "loss": self.loss_value,
                "seconds": round(self.spent, 2),
                **final_scores,
            }
        )
        self.logger.close()
        self.save_checkpoint()
        self.model.eval()
        pixels = (self.step - self.first_step) * self.pixels_per_step
        self.save_model(final_scores, pixels)
        self.say(
            f"{self.config.arch}: {self.step} steps in {self.spent:.0f} s of training; "
            f"model in {self.out_dir}"
        )
        return {
            "step": self.step,
            "train_seconds": self.spent,
            "seconds": time.perf_counter() - self.started,
            "pixels_per_s": pixels / max(self.this_call, 1e-9),
            "loss": self.loss_value,
            "validation": final_scores,
            "device": _device_name(self.device),
            "bank_megabytes": self.bank.megabytes,
        }

    def save_model(self, final_scores: dict[str, float], pixels: int) -> None:
        """``model.safetensors`` and its card in the run folder."""
        score = _mean_score(final_scores)
        best = {"score": score if math.isfinite(score) else -math.inf, "step": self.step}
        card = _model_card(
            self.config, self.step, self.sampler, final_scores, best, self.this_call, pixels, 1
        )
        card["training"].update(
            trainer="filterscope train-gpu (filterscope.training.gpu)",
            device=_device_name(self.device),
            minutes_budget=self.minutes,
            train_seconds=round(self.spent, 1),
            numeric_path=numeric_record(self.config, self.numeric),
        )
        card.update(network_fields(self.config, self.model))
        save_model(self.model, self.out_dir / MODEL_NAME, card=card, overwrite=True)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
