"""Fitting one noisy image with a network: the deep image prior, by Adam or gradient descent.

:func:`fit_single_image` trains one of the networks of :mod:`filterscope.dip.networks`
to reproduce the noisy image ``y`` (loss ``mean((z − y)²)``) from

- fixed i.i.d. Gaussian noise (the DIP of Ulyanov et al.), or
- the noisy image itself, with the output shifted by its initial value,
  ``z̃ = z − z⁰``, so that training starts from ``z̃⁰ = 0`` (the twicing of equation 9),

with Adam (``β1 = 0.9``, ``β2 = 0.99``) or plain gradient descent (no momentum), and
keeps the best iterate by one of three rules: the oracle (the highest PSNR against a
clean image), SURE with a Monte-Carlo divergence (no clean image; needs σ), or simply the
last of ``iters`` steps. Section 5 of the paper explains why the two optimisers differ:
gradient descent with an ``O(1/c)`` step on a wide network is twicing with the fixed
filter ``ηΘ⁰`` (the NTK at initialisation), which for noise at the input is a crude
low-pass filter; Adam changes the filter during training.

Monte-Carlo SURE (Ramani, Blu & Unser 2008; :mod:`filterscope.sure`, shared with the
NTK filters): the estimate after ``t`` steps is a function
``z^t(y)`` of the noisy image through the whole training run, so its divergence is
estimated with a twin network, a copy of the network at initialisation (same weights,
same input noise) trained in lockstep on ``y + εb`` for one Gaussian probe ``b``:
``div_t ≈ bᵀ(z^t(y + εb) − z^t(y)) / ε`` and
``SURE_t = ‖y − z^t‖²/n − σ² + 2σ² div_t / n`` (``n = C·H·W``), an estimate of the
per-entry MSE ``‖z^t − x‖²/n``. This doubles the cost of training. For gradient
descent in the NTK regime ``z^t`` is linear in ``y`` and ``div_t = tr(I − (I − W)^t)``
exactly, the trace used by :mod:`filterscope.ntk.twicing`. (The automatic gradient
descent step is computed once, from ``y``, and shared by the twin; its own dependence on
``y`` is left out of the divergence.)
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..metrics import psnr
from ..models.base import Denoised, Denoiser, per_image_sigmas
from ..ntk.kernels import as_image
from ..sure import (
    PROBE_SEED,
    check_sigma,
    default_epsilon,
    draw_probe,
    probe_divergence,
    sure_estimate,
)
from .networks import ARCHITECTURES, PARAMETERIZATIONS, build_network
from .weights import WeightTracker

INPUTS = ("noise", "image")
OPTIMIZERS = ("adam", "gd")
STOPS = ("none", "oracle", "sure")
ADAM_BETAS = (0.9, 0.99)
# Adam's rate per architecture and network input. The DIP's 0.01 assumes batch
# normalisation; without it (the paper's networks) it kills the ReLUs of the vanilla CNN
# (each step moves all r²C first-layer weights of a channel coherently) and makes the
# encoder-decoders spiky. The image at the input (values around 0.5 in every channel, not
# zero-mean noise of std 0.1) makes each Adam step move the output much more, so the
# encoder-decoders need smaller rates there: the U-Net, whose full-resolution skip path
# learns the identity (the noise) within a few hundred steps at 2e-3, most of all. Chosen
# on a 64×64 crop of House at σ = 25, width 32 (best PSNR within 800 steps):
# vanilla 3e-4 (image input 26.2 dB; 1e-2: 18.8 dB); autoencoder, noise 2e-3 (29.1 dB;
# 1e-2: 26.6 dB), image 1e-3 (27.8 dB; 2e-3: 25.6, 5e-3: 24.2); U-Net, noise 2e-3
# (26.0 dB), image 5e-5 (26.0 dB; 1e-4: 25.4, 5e-4: 21.0, 2e-3: 18.7, 1e-2: 16.3).
DEFAULT_ADAM_LR = {
    "vanilla": {"noise": 3e-4, "image": 3e-4},
    "unet": {"noise": 2e-3, "image": 5e-5},
    "autoencoder": {"noise": 2e-3, "image": 1e-3},
}
DEFAULT_NOISE_STD = 0.1


# --------------------------------------------------------------------------- step size


def ntk_max_eigenvalue(
    network: nn.Module,
    network_input: torch.Tensor,
    *,
    iterations: int = 30,
    tol: float = 1e-3,
    generator: int | torch.Generator | None = 0,
) -> float:
    """Largest eigenvalue of the empirical NTK ``Θ = J Jᵀ`` (``J = ∂z/∂θ``) by power iteration.

    ``θ`` are the network's parameters (in its own parameterisation). Each iteration is
    one Jacobian-vector product (forward mode); the vector-Jacobian pullback is built once.
    Converges from below; ``O(iterations)`` forward/backward passes.
    """
    from torch.func import functional_call, jvp, vjp

    from ..noise import _generator

    names = [name for name, _ in network.named_parameters()]
    primals = tuple(p.detach() for _, p in network.named_parameters())

    def output(*weights):
        return functional_call(network, dict(zip(names, weights, strict=True)), (network_input,))

    out, pullback = vjp(output, *primals)
    v = torch.randn(out.shape, generator=_generator(generator), dtype=torch.float64)
    v = v.to(out.device, out.dtype)
    v = v / torch.linalg.vector_norm(v)
    value = 0.0
    for _ in range(iterations):
        grads = pullback(v)
        theta_v = jvp(output, primals, grads)[1]
        new = float((v * theta_v).sum())
        v = theta_v / torch.linalg.vector_norm(theta_v)
        if abs(new - value) <= tol * abs(new):
            value = new
            break
        value = new
    return value


# --------------------------------------------------------------------------- result


@dataclass
class FitResult:
    """What :func:`fit_single_image` returns.

    Attributes
    ----------
    x_hat : Tensor, shape (C, H, W), float32, CPU
        The kept estimate (not clipped): the iterate chosen by the stopping rule.
    last : Tensor, shape (C, H, W), float32, CPU
        The last iterate.
    iteration : int
        Iteration of ``x_hat`` (number of optimiser steps behind it).
    stop : str
        The rule that chose it.
    trajectory : dict of list
        ``iteration``, ``loss`` (``mean((z − y)²)``), and ``psnr`` (dB, clipped, when a
        clean image was given), ``sure`` (per-entry MSE estimate) and ``divergence``
        (when SURE was estimated), one entry per logged iteration.
    choices : dict
        ``oracle_iteration``/``oracle_psnr`` (with a clean image),
        ``sure_iteration``/``sure_psnr`` (the true PSNR at the SURE choice when a clean
        image was given, else None), ``psnr`` of ``x_hat`` (None without a clean image).
    weights : list of dict
        :class:`~filterscope.dip.weights.WeightTracker` records (empty unless asked).
    timing : dict
        ``total_s`` (the training loop), ``forward_backward_s`` (forward passes, losses and
        backward passes, the twin's included), ``optimizer_s``, ``outside_share``
        (``1 − forward_backward_s/total_s``: optimiser, logging, PSNR/SURE, progress bar),
        ``iterations``, ``iterations_per_s``, ``setup_s`` (initialisation and the
        automatic step size, outside the loop).
    config : dict
        The options, the step size actually used (``lr_effective``) and ``diverged_at``:
        the iteration at which the loss stopped being finite (training then ends and the
        last finite iterate counts as the last one), or None.
    network : nn.Module
        The trained network (for :func:`~filterscope.dip.weights.preactivation_eigenvectors`).
    network_input : Tensor, shape (1, C_in, H, W)
        What it was fed.
    """

    x_hat: torch.Tensor
    last: torch.Tensor
    iteration: int
    stop: str
    trajectory: dict
    choices: dict
    weights: list
    timing: dict
    config: dict
    network: nn.Module = field(repr=False)
    network_input: torch.Tensor = field(repr=False)

    def to_dict(self) -> dict:
        """Everything but the tensors and the network, JSON-ready."""
        return {
            "config": self.config,
            "stop": self.stop,
            "iteration": self.iteration,
            "choices": self.choices,
            "timing": self.timing,
            "trajectory": self.trajectory,
            "weights": self.weights,
        }


def patience_stop(
    iterations: Sequence[int], values: Sequence[float], patience: int, *, mode: str = "max"
) -> dict:
    """Where stopping with ``patience`` would have ended a run, read from its trajectory.

    The rule of :func:`fit_single_image`: the kept iterate is the best so far (highest
    PSNR for ``mode="max"``, lowest SURE for ``"min"``; ties keep the earlier one), and the
    run ends at the first logged iteration ``t`` with ``t − best_iteration ≥ patience``.
    Running this on a trajectory logged to the step cap tells what any patience would
    have kept without rerunning (the paper trains "until there is no further
    improvement", without saying how long it waits).

    Parameters
    ----------
    iterations, values : sequences of the same length
        ``FitResult.trajectory["iteration"]`` and ``["psnr"]`` (or ``["sure"]``).
    patience : int
        Iterations without improvement that end the run.
    mode : {"max", "min"}, keyword-only

    Returns
    -------
    dict
        ``stopped_at`` (None: the trajectory ended first), ``best_iteration``, ``best``.
    """
    patience = _positive_int("patience", patience)
    _check_choice("mode", mode, ("max", "min"))
    if len(iterations) != len(values) or not len(values):
        raise InputError("iterations and values must be non-empty and of the same length")
    best_iteration, best = iterations[0], values[0]
    for t, value in zip(iterations, values, strict=True):
        if value > best if mode == "max" else value < best:
            best_iteration, best = t, value
        if t - best_iteration >= patience:
            return {"stopped_at": t, "best_iteration": best_iteration, "best": best}
    return {"stopped_at": None, "best_iteration": best_iteration, "best": best}


# --------------------------------------------------------------------------- fitting


def _as_image(noisy) -> torch.Tensor:
    """:func:`filterscope.ntk.kernels.as_image`, refusing non-images and 1-pixel sides."""
    if not isinstance(noisy, (torch.Tensor, np.ndarray)):
        raise InputError(f"expected an image tensor or array, got {type(noisy).__name__}")
    t = as_image(noisy)
    if min(t.shape[1:]) < 2:
        raise InputError(f"image is {t.shape[2]}x{t.shape[1]} pixels; each side needs at least 2")
    return t


def _positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class FitConfig:
    """How :func:`fit_single_image` trains: network, input, optimiser, stopping rule.

    Every field is checked when the configuration is made, so bad options fail before
    any work.

    Attributes
    ----------
    arch : {"vanilla", "unet", "autoencoder"}
        See :mod:`filterscope.dip.networks`. The vanilla CNN needs sides of at least
        ``kernel_size``; the others pad sides that are not multiples of 8.
    input : {"noise", "image"}
        Fixed i.i.d. ``N(0, noise_std²)`` noise with ``noise_channels`` channels, or
        ``y`` itself with the output shifted by its initial value (``z̃ = z − z⁰``,
        so training starts from exactly 0).
    optimizer : {"adam", "gd"}
        Adam with ``β = (0.9, 0.99)``, or gradient descent without momentum.
    iters : int
        Optimiser steps (at most; see ``patience`` and the ``callback`` of
        :func:`fit_single_image`).
    lr : float or None
        Adam: the learning rate (default :data:`DEFAULT_ADAM_LR`: 3e-4 for the vanilla
        CNN; 2e-3 for the U-Net and the autoencoder with noise input, 5e-5 and 1e-3 with
        image input). Gradient descent: the step
        ``η = lr / width`` in the standard parameterisation and ``η = lr`` in the NTK
        one — the ``O(1/c)`` step the theory needs (footnote 6: larger steps do not
        converge as ``c → ∞``), with ``lr`` a width-free rate. Default for gradient
        descent (``None``): ``η = gd_step · n / (2 λ_max(Θ⁰))`` with ``λ_max(Θ⁰)``, the
        largest eigenvalue of the empirical NTK at initialisation, found by power
        iteration; the linearised update ``z ← z + (2η/n) Θ⁰ (y − z)`` then is twicing
        with a filter whose largest eigenvalue is ``gd_step``, and ``η`` scales as
        ``1/c`` in the standard parameterisation automatically. ``lr = 0`` leaves the
        weights where they are.
    width : int
        Channels ``c`` of every hidden layer.
    sigma : float or None
        Noise standard deviation on the image scale (25/255); needed by SURE.
    stop : {"none", "oracle", "sure"}
        Which iterate is kept: the last one, the one of highest PSNR (needs the clean
        image), or the one of lowest SURE.
    estimate_sure : bool or None
        Also compute SURE when ``stop`` is not ``"sure"`` (needs ``sigma``; doubles the
        cost). Default: only for ``stop="sure"``; :attr:`with_sure` is the resolved value.
    patience : int or None
        With ``stop`` oracle or SURE, end training when the criterion has not improved
        for this many iterations (the paper trains "until there is no further
        improvement").
    seed : int
        Seed of the weights, the input noise and the SURE probe.
    parameterization : {"standard", "ntk"}
    kernel_size : int
        Kernel side of the vanilla CNN (11 in the paper).
    noise_channels : int or None
        Channels of the input noise (default ``width``, footnote 8's ``O(c)``).
    noise_std : float
        Standard deviation of the input noise.
    gd_step : float
        Largest eigenvalue of the linearised twicing filter for the automatic gradient
        descent step, in (0, 2) (stability needs < 2).
    sure_epsilon : float or None
        Finite-difference step of the divergence (default ``max(σ/5, 1e-4)``).
    log_every : int
        Record the trajectory (and evaluate the stopping rule) every this many
        iterations; the last iteration is always recorded.
    weight_log_every : int
        Record the weight change every this many iterations (0: never).
    dtype : torch.dtype
        Arithmetic of the network (float32; float64 for comparisons with the theory).
    device : str, torch.device or None
        Where to train: ``"cpu"``, ``"cuda"``, ``"auto"`` (a GPU when there is one);
        None: the CPU. An unknown or absent device is refused here, before any work.
    """

    arch: str = "autoencoder"
    input: str = "noise"
    optimizer: str = "adam"
    iters: int = 3000
    lr: float | None = None
    width: int = 128
    sigma: float | None = None
    stop: str = "none"
    estimate_sure: bool | None = None
    patience: int | None = None
    seed: int = 0
    parameterization: str = "standard"
    kernel_size: int = 11
    noise_channels: int | None = None
    noise_std: float = DEFAULT_NOISE_STD
    gd_step: float = 1.0
    sure_epsilon: float | None = None
    log_every: int = 1
    weight_log_every: int = 0
    dtype: torch.dtype = torch.float32
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, ARCHITECTURES)
        _check_choice("input", self.input, INPUTS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("stop", self.stop, STOPS)
        _check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        checked = {
            "iters": _positive_int("iters (the number of iterations)", self.iters),
            "width": _positive_int("width", self.width),
            "log_every": _positive_int("log_every", self.log_every),
            "weight_log_every": _positive_int("weight_log_every", self.weight_log_every, minimum=0),
        }
        if self.patience is not None:
            checked["patience"] = _positive_int("patience", self.patience)
        lr = self.lr
        if lr is not None and (not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0):
            raise InputError(f"learning rate must be a non-negative number, got {lr}")
        if self.sigma is not None:
            check_sigma(self.sigma)
        if not 0 < self.gd_step < 2:
            raise InputError(
                f"gd_step must lie in (0, 2) (larger steps diverge), got {self.gd_step}"
            )
        if not (isinstance(self.noise_std, (int, float)) and self.noise_std > 0):
            raise InputError(f"noise_std must be positive, got {self.noise_std}")
        if self.with_sure and self.sigma is None:
            raise InputError("SURE stopping needs the noise level sigma")
        channels = self.width if self.noise_channels is None else self.noise_channels
        checked["noise_channels"] = _positive_int("noise_channels", channels)
        if self.device is not None:
            from ..devices import resolve_device

            checked["device"] = resolve_device(self.device)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def with_sure(self) -> bool:
        """Whether SURE is computed: for ``stop="sure"``, or when ``estimate_sure`` asks."""
        return bool(self.estimate_sure) or self.stop == "sure"

    def record(self, *, lr_effective: float, lambda_max: float | None, epsilon, shape) -> dict:
        """The options as :attr:`FitResult.config` reports them (before ``diverged_at``)."""
        noise = self.input == "noise"
        return {
            "arch": self.arch,
            "input": self.input,
            "optimizer": self.optimizer,
            "iters": self.iters,
            "lr": self.lr,
            "lr_effective": lr_effective,
            "ntk_lambda_max": lambda_max,
            "width": self.width,
            "sigma_255": None if self.sigma is None else self.sigma * 255.0,
            "stop": self.stop,
            "estimate_sure": self.with_sure,
            "sure_epsilon": epsilon,
            "patience": self.patience,
            "seed": self.seed,
            "parameterization": self.parameterization,
            "kernel_size": self.kernel_size if self.arch == "vanilla" else 3,
            "noise_channels": self.noise_channels if noise else None,
            "noise_std": self.noise_std if noise else None,
            "adam_betas": list(ADAM_BETAS) if self.optimizer == "adam" else None,
            "image_shape": list(shape),
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(torch.device(self.device or "cpu")),
        }


class _Run:
    """One network (and, for SURE, its twin trained on ``y + εb``) set up for training."""

    def __init__(self, y_cpu: torch.Tensor, cfg: FitConfig):
        self.device = device = torch.device(cfg.device or "cpu")
        _, height, width = y_cpu.shape
        generator = torch.Generator().manual_seed(int(cfg.seed))
        self.y = y = y_cpu.to(device, cfg.dtype)[None]
        if cfg.input == "noise":
            shape = (1, cfg.noise_channels, height, width)
            noise = cfg.noise_std * torch.randn(shape, generator=generator)
            self.net_input = noise.to(device, cfg.dtype)
        else:
            self.net_input = y
        self.network = build_network(
            cfg.arch,
            self.net_input.shape[1],
            y_cpu.shape[0],
            cfg.width,
            parameterization=cfg.parameterization,
            kernel_size=cfg.kernel_size,
            generator=generator,
            dtype=cfg.dtype,
        ).to(device)
        self.network.check_size(height, width)
        # the image-input network is redefined as z̃ = z − z⁰ (Section 6), so it starts at 0
        self.offset = self._initial_output(self.network, self.net_input, cfg)
        self.lambda_max = None
        if cfg.optimizer == "adam":
            self.lr = DEFAULT_ADAM_LR[cfg.arch][cfg.input] if cfg.lr is None else float(cfg.lr)
        elif cfg.lr is not None:
            self.lr = float(cfg.lr) / cfg.width if cfg.parameterization == "standard" else cfg.lr
            self.lr = float(self.lr)
        else:
            self.lambda_max = ntk_max_eigenvalue(self.network, self.net_input, generator=cfg.seed)
            self.lr = cfg.gd_step * y.numel() / (2.0 * self.lambda_max)
        self.twin = self.epsilon = self.probe = None
        if cfg.with_sure:
            self._make_twin(cfg)
        self.optimizers = [self._optimizer(self.network, cfg)]
        if self.twin is not None:
            self.optimizers.append(self._optimizer(self.twin, cfg))

    @staticmethod
    def _initial_output(network, net_input, cfg):
        if cfg.input != "image":
            return None
        with torch.no_grad():
            return network(net_input)

    def _make_twin(self, cfg: FitConfig) -> None:
        sigma = cfg.sigma
        self.epsilon = (
            default_epsilon(sigma) if cfg.sure_epsilon is None else float(cfg.sure_epsilon)
        )
        probe = draw_probe(self.y.shape, generator=PROBE_SEED + int(cfg.seed))
        self.probe = probe.to(self.device, cfg.dtype)
        self.twin = copy.deepcopy(self.network)  # same initial weights: only the target differs
        self.twin_target = self.y + self.epsilon * self.probe
        self.twin_input = self.twin_target if cfg.input == "image" else self.net_input
        self.twin_offset = self._initial_output(self.twin, self.twin_input, cfg)

    def _optimizer(self, network: nn.Module, cfg: FitConfig):
        if cfg.optimizer == "adam":
            return torch.optim.Adam(network.parameters(), lr=self.lr, betas=ADAM_BETAS)
        return torch.optim.SGD(network.parameters(), lr=self.lr, momentum=0.0)

    def forward_backward(self, *, backward: bool):
        """Outputs and losses of the network (and twin); gradients unless ``backward`` is False."""
        with torch.set_grad_enabled(backward):
            z = self.network(self.net_input)
            if self.offset is not None:
                z = z - self.offset
            loss = (z - self.y).pow(2).mean()
            total_loss, z_twin = loss, None
            if self.twin is not None:
                z_twin = self.twin(self.twin_input)
                if self.twin_offset is not None:
                    z_twin = z_twin - self.twin_offset
                total_loss = loss + (z_twin - self.twin_target).pow(2).mean()
            if backward:
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
                total_loss.backward()
        return z, loss, z_twin

    def record(self, t: int, z_out, loss, z_twin, clean_t, sigma) -> dict:
        """The trajectory entry of iteration ``t``: loss, PSNR, divergence and SURE."""
        record = {"iteration": t, "loss": float(loss.detach())}
        if not math.isfinite(record["loss"]):
            return record
        if clean_t is not None:
            record["psnr"] = float(psnr(z_out, clean_t))
        if z_twin is not None:
            div = probe_divergence(self.probe, z_twin.detach(), z_out, self.epsilon)
            record["divergence"] = div
            n = self.y.numel()
            record["sure"] = sure_estimate(record["loss"], div, sigma=sigma, num_entries=n)
        return record


class _Keeper:
    """The kept iterate under a stopping rule, and whether patience has run out."""

    def __init__(self, stop: str, patience: int | None):
        self.stop, self.patience = stop, patience
        self.value = None
        self.iteration = 0
        self.best = None

    def update(self, t: int, record: dict, z_out: torch.Tensor) -> bool:
        """Take iteration ``t`` into account; True when patience has run out."""
        if self.stop == "none":
            self.iteration, self.best = t, z_out
            return False
        value = record["psnr"] if self.stop == "oracle" else record["sure"]
        if self.value is None or (
            value > self.value if self.stop == "oracle" else value < self.value
        ):
            self.value, self.iteration, self.best = value, t, z_out.clone()
        return self.patience is not None and t - self.iteration >= self.patience


def fit_single_image(
    noisy: torch.Tensor | np.ndarray,
    config: FitConfig | None = None,
    *,
    clean: torch.Tensor | np.ndarray | None = None,
    progress: bool = False,
    callback: Callable[[int, dict, torch.Tensor], bool | None] | None = None,
    **options,
) -> FitResult:
    """Denoise one image by training a network on it alone (Section 6 of the paper).

    Parameters
    ----------
    noisy : Tensor or ndarray, shape (C, H, W), (1, C, H, W), (H, W) or (H, W, C)
        The noisy image ``y`` on the image scale (nominally [0, 1], not clipped);
        ``C`` = 1 or 3.
    config : FitConfig, optional
        How to train; or give its fields as keyword options (``arch="unet"``,
        ``iters=500``...), not both.
    clean : Tensor or ndarray, keyword-only
        Clean image of the same shape: PSNR at every logged iteration, oracle stopping.
    progress : bool, keyword-only
        A tqdm bar on stderr showing the current PSNR (with ``clean``), SURE (as a PSNR
        estimate, ``10 log10(1/SURE)``) or loss.
    callback : callable, keyword-only
        ``callback(iteration, record, output)`` at every logged iteration, with the
        trajectory entry and the output ``z^t`` of shape ``(1, C, H, W)``; returning True
        ends training.
    **options
        The fields of :class:`FitConfig`.

    Returns
    -------
    FitResult

    Raises
    ------
    InputError
        Bad options, before any work: unknown names, non-positive width or iteration
        count, negative or non-finite learning rate, SURE without σ, oracle without a
        clean image, a clean image of another shape, an image too small for the network.

    Notes
    -----
    Cost: ``iters`` forward and backward passes (twice that with SURE); on a 256 × 256
    colour image with ``c = 128`` the autoencoder's forward pass is about 25 GMAC (see
    :class:`~filterscope.dip.networks.EncoderDecoder`). The image-input
    shift needs one extra forward pass and the automatic gradient descent step up to 30
    Jacobian-vector products. Memory: the activations of one pass (twice with SURE).
    """
    if config is not None and options:
        raise InputError("give either config or keyword options, not both")
    y_cpu = _as_image(noisy)
    cfg = FitConfig(**options) if config is None else config
    clean_cpu = None if clean is None else _as_image(clean)
    if clean_cpu is not None and clean_cpu.shape != y_cpu.shape:
        raise InputError(
            f"the clean image has shape {tuple(clean_cpu.shape)}, the noisy one "
            f"{tuple(y_cpu.shape)}"
        )
    if cfg.stop == "oracle" and clean_cpu is None:
        raise InputError("oracle stopping needs the clean image")
    setup_start = time.perf_counter()
    run = _Run(y_cpu, cfg)
    clean_t = None if clean_cpu is None else clean_cpu.to(run.device, torch.float64)[None]
    config_record = cfg.record(
        lr_effective=run.lr, lambda_max=run.lambda_max, epsilon=run.epsilon, shape=y_cpu.shape
    )
    setup_s = time.perf_counter() - setup_start
    loop = _train(run, cfg, clean_t, progress=progress, callback=callback)
    config_record["diverged_at"] = loop["diverged_at"]
    x_hat = loop["best"][0].to("cpu", torch.float32)
    return FitResult(
        x_hat=x_hat,
        last=loop["last"][0].to("cpu", torch.float32),
        iteration=loop["best_iteration"],
        stop=cfg.stop,
        trajectory=loop["trajectory"],
        choices=_choices(loop["trajectory"], x_hat, clean_cpu),
        weights=loop["weights"],
        timing=loop["timing"] | {"setup_s": setup_s},
        config=config_record,
        network=run.network,
        network_input=run.net_input,
    )


def _train(run: _Run, cfg: FitConfig, clean_t, *, progress: bool, callback) -> dict:
    """The training loop of :func:`fit_single_image`: trajectory, kept and last iterates."""
    trajectory: dict[str, list] = {"iteration": [], "loss": []}
    trajectory |= {"psnr": []} if clean_t is not None else {}
    trajectory |= {"sure": [], "divergence": []} if cfg.with_sure else {}
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    tracker = (
        WeightTracker(run.network, every=cfg.weight_log_every) if cfg.weight_log_every else None
    )
    bar = _progress_bar(cfg) if progress else None
    postfix_every = max(1, min(50, cfg.iters // 100))
    keeper = _Keeper(cfg.stop, cfg.patience)
    previous = last = diverged_at = None
    forward_backward = optimizer_time = 0.0
    steps_done, loop_start = 0, time.perf_counter()
    for t in range(cfg.iters + 1):
        final = t == cfg.iters
        start = time.perf_counter()
        z, loss, z_twin = run.forward_backward(backward=not final)
        sync()
        forward_backward += time.perf_counter() - start
        stop_now = final
        if t % cfg.log_every == 0 or final:
            z_out = z.detach()
            record = run.record(t, z_out, loss, z_twin, clean_t, cfg.sigma)
            if not math.isfinite(record["loss"]):
                if previous is None:
                    if bar is not None:
                        bar.close()
                    raise InputError(
                        "the network's initial output is not finite (an input too large?)"
                    )
                diverged_at = t  # a step too large for this network: keep what we had
                break
            previous = z_out
            for key, value in record.items():
                trajectory[key].append(value)
            stop_now = keeper.update(t, record, z_out) or stop_now
            if callback is not None and callback(t, record, z_out):
                stop_now = True
            if bar is not None and (t % postfix_every == 0 or stop_now):
                bar.set_postfix_str(_progress_text(record), refresh=False)
        if tracker is not None and (t % cfg.weight_log_every == 0 or stop_now):
            tracker.log(t)
        if stop_now:
            last = z.detach()
            break
        start = time.perf_counter()
        for opt in run.optimizers:
            opt.step()
        sync()
        optimizer_time += time.perf_counter() - start
        steps_done += 1
        if bar is not None:
            bar.update(1)
    total = time.perf_counter() - loop_start
    if bar is not None:
        bar.close()
    return {
        "trajectory": trajectory,
        "best": keeper.best,
        "best_iteration": keeper.iteration,
        "last": previous if last is None else last,  # diverged: the last finite iterate
        "diverged_at": diverged_at,
        "weights": [] if tracker is None else tracker.records,
        "timing": _timing(total, forward_backward, optimizer_time, steps_done),
    }


def _progress_bar(cfg: FitConfig):
    from tqdm import tqdm

    return tqdm(total=cfg.iters, desc=f"dip {cfg.arch}/{cfg.optimizer}", unit="it", file=sys.stderr)


def _timing(total: float, forward_backward: float, optimizer_time: float, steps: int) -> dict:
    return {
        "total_s": total,
        "forward_backward_s": forward_backward,
        "optimizer_s": optimizer_time,
        "outside_share": 1.0 - forward_backward / total if total > 0 else 0.0,
        "iterations": steps,
        "iterations_per_s": steps / total if total > 0 else float("inf"),
    }


def _progress_text(record: dict) -> str:
    if "psnr" in record:
        return f"psnr={record['psnr']:.2f}dB"
    if "sure" in record:
        sure = record["sure"]
        return f"sure={10 * math.log10(1 / sure):.2f}dB" if sure > 0 else f"sure={sure:.2e}"
    return f"loss={record['loss']:.3e}"


def _choices(trajectory: dict, x_hat: torch.Tensor, clean: torch.Tensor | None) -> dict:
    out: dict = {"psnr": None}
    iterations = trajectory["iteration"]
    psnrs = trajectory.get("psnr")
    if psnrs:
        i = int(np.argmax(psnrs))
        out.update(oracle_iteration=iterations[i], oracle_psnr=psnrs[i])
    if trajectory.get("sure"):
        i = int(np.argmin(trajectory["sure"]))
        out.update(sure_iteration=iterations[i], sure_psnr=psnrs[i] if psnrs else None)
    if clean is not None:
        out["psnr"] = float(psnr(x_hat[None].double(), clean[None]))
    return out


class DIPDenoiser(Denoiser):
    """:func:`fit_single_image` as a :class:`~filterscope.models.base.Denoiser`.

    Each image of a batch is fitted on its own. ``blind`` is False with SURE stopping
    (it needs ``sigma``). Oracle stopping needs the clean image: call
    :func:`fit_single_image` directly.

    Parameters
    ----------
    **options
        Keyword options of :func:`fit_single_image` (``arch``, ``input``, ``optimizer``,
        ``iters``, ``width``, ``stop``...).

    :meth:`denoise_with_info` returns, with the estimate, each image's
    :class:`FitResult` summary (``"iterations"``, stopping choices, timing) per image.
    """

    def __init__(self, **options):
        super().__init__()
        if options.get("stop") == "oracle":
            raise InputError("oracle stopping needs the clean image; call fit_single_image()")
        self.options = options
        self.blind = options.get("stop", "none") != "sure"

    def forward(self, y: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        return self.denoise_with_info(y, sigma).x_hat

    def fit(self, y: torch.Tensor, sigma=None) -> list[FitResult]:
        """The full :class:`FitResult` of each image of ``y`` (trajectories included)."""
        if not self.blind:
            sigma = self.require_sigma(sigma)
        results = []
        # Fitting is training: gradients are on even when the caller (tiled inference,
        # an evaluation) runs under no_grad or inference_mode; the clone made outside
        # inference mode is a normal tensor autograd may save.
        with torch.inference_mode(False), torch.enable_grad():
            y = y.detach().clone()
            for b, s in enumerate(per_image_sigmas(sigma, y.shape[0])):
                options = {"device": y.device, **self.options}
                results.append(fit_single_image(y[b], sigma=s, **options))
        return results

    def denoise_with_info(self, y: torch.Tensor, sigma=None, **kwargs) -> Denoised:
        """The estimate, and per image the scalar stopping choices of its fit."""
        results = self.fit(y, sigma)
        x_hat = torch.stack([r.x_hat.to(y.device, y.dtype) for r in results])
        per_image = [
            {k: v for k, v in r.choices.items() if isinstance(v, (int, float)) or v is None}
            for r in results
        ]
        return Denoised(x_hat, per_image)
