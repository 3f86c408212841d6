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


def fit_single_image(
    noisy: torch.Tensor | np.ndarray,
    *,
    arch: str = "autoencoder",
    input: str = "noise",
    optimizer: str = "adam",
    iters: int = 3000,
    lr: float | None = None,
    width: int = 128,
    sigma: float | None = None,
    clean: torch.Tensor | np.ndarray | None = None,
    stop: str = "none",
    estimate_sure: bool | None = None,
    patience: int | None = None,
    seed: int = 0,
    parameterization: str = "standard",
    kernel_size: int = 11,
    noise_channels: int | None = None,
    noise_std: float = DEFAULT_NOISE_STD,
    gd_step: float = 1.0,
    sure_epsilon: float | None = None,
    log_every: int = 1,
    weight_log_every: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    progress: bool = False,
    callback: Callable[[int, dict, torch.Tensor], bool | None] | None = None,
) -> FitResult:
    """Denoise one image by training a network on it alone (Section 6 of the paper).

    Parameters
    ----------
    noisy : Tensor or ndarray, shape (C, H, W), (1, C, H, W), (H, W) or (H, W, C)
        The noisy image ``y`` on the image scale (nominally [0, 1], not clipped);
        ``C`` = 1 or 3.
    arch : {"vanilla", "unet", "autoencoder"}, keyword-only
        See :mod:`filterscope.dip.networks`. The vanilla CNN needs sides of at least
        ``kernel_size``; the others pad sides that are not multiples of 8.
    input : {"noise", "image"}, keyword-only
        Fixed i.i.d. ``N(0, noise_std²)`` noise with ``noise_channels`` channels, or
        ``y`` itself with the output shifted by its initial value (``z̃ = z − z⁰``,
        so training starts from exactly 0).
    optimizer : {"adam", "gd"}, keyword-only
        Adam with ``β = (0.9, 0.99)``, or gradient descent without momentum.
    iters : int, keyword-only
        Optimiser steps (at most; see ``patience`` and ``callback``).
    lr : float or None, keyword-only
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
    width : int, keyword-only
        Channels ``c`` of every hidden layer.
    sigma : float, keyword-only
        Noise standard deviation on the image scale (25/255); needed by SURE.
    clean : Tensor or ndarray, keyword-only
        Clean image of the same shape: PSNR at every logged iteration, oracle stopping.
    stop : {"none", "oracle", "sure"}, keyword-only
        Which iterate is kept: the last one, the one of highest PSNR, or the one of
        lowest SURE.
    estimate_sure : bool, keyword-only
        Also compute SURE when ``stop`` is not ``"sure"`` (needs ``sigma``; doubles the
        cost). Default: only for ``stop="sure"``.
    patience : int, keyword-only
        With ``stop`` oracle or SURE, end training when the criterion has not improved
        for this many iterations (the paper trains "until there is no further
        improvement").
    seed : int, keyword-only
        Seed of the weights, the input noise and the SURE probe.
    parameterization : {"standard", "ntk"}, keyword-only
    kernel_size : int, keyword-only
        Kernel side of the vanilla CNN (11 in the paper).
    noise_channels : int, keyword-only
        Channels of the input noise (default ``width``, footnote 8's ``O(c)``).
    noise_std : float, keyword-only
        Standard deviation of the input noise.
    gd_step : float, keyword-only
        Largest eigenvalue of the linearised twicing filter for the automatic gradient
        descent step, in (0, 2) (stability needs < 2).
    sure_epsilon : float, keyword-only
        Finite-difference step of the divergence (default ``max(σ/5, 1e-4)``).
    log_every : int, keyword-only
        Record the trajectory (and evaluate the stopping rule) every this many
        iterations; the last iteration is always recorded.
    weight_log_every : int, keyword-only
        Record the weight change every this many iterations (0: never).
    dtype : torch.dtype, keyword-only
        Arithmetic of the network (float32; float64 for comparisons with the theory).
    device : str or torch.device, keyword-only
        Where to train (default CPU).
    progress : bool, keyword-only
        A tqdm bar on stderr showing the current PSNR (with ``clean``), SURE (as a PSNR
        estimate, ``10 log10(1/SURE)``) or loss.
    callback : callable, keyword-only
        ``callback(iteration, record, output)`` at every logged iteration, with the
        trajectory entry and the output ``z^t`` of shape ``(1, C, H, W)``; returning True
        ends training.

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
    y_cpu = _as_image(noisy)
    _check_choice("arch", arch, ARCHITECTURES)
    _check_choice("input", input, INPUTS)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("stop", stop, STOPS)
    _check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    iters = _positive_int("iters (the number of iterations)", iters)
    width = _positive_int("width", width)
    log_every = _positive_int("log_every", log_every)
    weight_log_every = _positive_int("weight_log_every", weight_log_every, minimum=0)
    if patience is not None:
        patience = _positive_int("patience", patience)
    if lr is not None and (not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0):
        raise InputError(f"learning rate must be a non-negative number, got {lr}")
    if sigma is not None:
        check_sigma(sigma)
    if not 0 < gd_step < 2:
        raise InputError(f"gd_step must lie in (0, 2) (larger steps diverge), got {gd_step}")
    if not (isinstance(noise_std, (int, float)) and noise_std > 0):
        raise InputError(f"noise_std must be positive, got {noise_std}")
    if estimate_sure is None:
        estimate_sure = stop == "sure"
    estimate_sure = estimate_sure or stop == "sure"
    if estimate_sure and sigma is None:
        raise InputError("SURE stopping needs the noise level sigma")
    clean_cpu = None
    if clean is not None:
        clean_cpu = _as_image(clean)
        if clean_cpu.shape != y_cpu.shape:
            raise InputError(
                f"the clean image has shape {tuple(clean_cpu.shape)}, the noisy one "
                f"{tuple(y_cpu.shape)}"
            )
    if stop == "oracle" and clean_cpu is None:
        raise InputError("oracle stopping needs the clean image")
    channels, height, img_width = y_cpu.shape
    if noise_channels is None:
        noise_channels = width
    noise_channels = _positive_int("noise_channels", noise_channels)
    device = torch.device(device or "cpu")
    setup_start = time.perf_counter()

    generator = torch.Generator().manual_seed(int(seed))
    y = y_cpu.to(device, dtype)[None]
    if input == "noise":
        shape = (1, noise_channels, height, img_width)
        net_input = (noise_std * torch.randn(shape, generator=generator)).to(device, dtype)
    else:
        net_input = y
    network = build_network(
        arch,
        net_input.shape[1],
        channels,
        width,
        parameterization=parameterization,
        kernel_size=kernel_size,
        generator=generator,
        dtype=dtype,
    ).to(device)
    network.check_size(height, img_width)
    clean_t = None if clean_cpu is None else clean_cpu.to(device, torch.float64)[None]

    # the image-input network is redefined as z̃ = z − z⁰ (Section 6), so it starts at 0
    offset = None
    if input == "image":
        with torch.no_grad():
            offset = network(net_input)

    lambda_max = None
    if optimizer == "adam":
        lr_effective = DEFAULT_ADAM_LR[arch][input] if lr is None else float(lr)
    elif lr is not None:
        lr_effective = float(lr) / width if parameterization == "standard" else float(lr)
    else:
        lambda_max = ntk_max_eigenvalue(network, net_input, generator=seed)
        lr_effective = gd_step * y.numel() / (2.0 * lambda_max)

    twin = twin_input = twin_target = twin_offset = probe = None
    epsilon = None
    if estimate_sure:
        epsilon = default_epsilon(sigma) if sure_epsilon is None else float(sure_epsilon)
        probe = draw_probe(y.shape, generator=PROBE_SEED + int(seed)).to(device, dtype)
        twin = copy.deepcopy(network)  # same initial weights: only the target differs
        twin_target = y + epsilon * probe
        twin_input = twin_target if input == "image" else net_input
        if input == "image":
            with torch.no_grad():
                twin_offset = twin(twin_input)

    def make_optimizer(params):
        if optimizer == "adam":
            return torch.optim.Adam(params, lr=lr_effective, betas=ADAM_BETAS)
        return torch.optim.SGD(params, lr=lr_effective, momentum=0.0)

    optimizers = [make_optimizer(network.parameters())]
    if twin is not None:
        optimizers.append(make_optimizer(twin.parameters()))
    tracker = WeightTracker(network, every=weight_log_every) if weight_log_every else None

    config = {
        "arch": arch,
        "input": input,
        "optimizer": optimizer,
        "iters": iters,
        "lr": lr,
        "lr_effective": lr_effective,
        "ntk_lambda_max": lambda_max,
        "width": width,
        "sigma_255": None if sigma is None else sigma * 255.0,
        "stop": stop,
        "estimate_sure": estimate_sure,
        "sure_epsilon": epsilon,
        "patience": patience,
        "seed": seed,
        "parameterization": parameterization,
        "kernel_size": kernel_size if arch == "vanilla" else 3,
        "noise_channels": noise_channels if input == "noise" else None,
        "noise_std": noise_std if input == "noise" else None,
        "adam_betas": list(ADAM_BETAS) if optimizer == "adam" else None,
        "image_shape": [channels, height, img_width],
        "dtype": str(dtype).replace("torch.", ""),
        "device": str(device),
    }

    trajectory: dict[str, list] = {"iteration": [], "loss": []}
    if clean_t is not None:
        trajectory["psnr"] = []
    if estimate_sure:
        trajectory["sure"] = []
        trajectory["divergence"] = []
    num_entries = y.numel()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=iters, desc=f"dip {arch}/{optimizer}", unit="it", file=sys.stderr)
    postfix_every = max(1, min(50, iters // 100))

    best_value = None
    best_iteration = 0
    best = previous = last = None
    diverged_at = None
    forward_backward = 0.0
    optimizer_time = 0.0
    setup_s = time.perf_counter() - setup_start
    loop_start = time.perf_counter()
    steps_done = 0
    for t in range(iters + 1):
        final = t == iters
        start = time.perf_counter()
        with torch.set_grad_enabled(not final):
            z = network(net_input)
            if offset is not None:
                z = z - offset
            loss = (z - y).pow(2).mean()
            total_loss = loss
            if twin is not None:
                z_twin = twin(twin_input)
                if twin_offset is not None:
                    z_twin = z_twin - twin_offset
                total_loss = loss + (z_twin - twin_target).pow(2).mean()
            if not final:
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                total_loss.backward()
        sync()
        forward_backward += time.perf_counter() - start

        stop_now = final
        if t % log_every == 0 or final:
            z_out = z.detach()
            record = {"iteration": t, "loss": float(loss.detach())}
            if not math.isfinite(record["loss"]):
                if previous is None:
                    if bar is not None:
                        bar.close()
                    raise InputError(
                        "the network's initial output is not finite (an input too large?)"
                    )
                # a step too large for this network: keep what we had
                diverged_at = t
                break
            previous = z_out
            if clean_t is not None:
                record["psnr"] = float(psnr(z_out, clean_t))
            if twin is not None:
                div = probe_divergence(probe, z_twin.detach(), z_out, epsilon)
                record["divergence"] = div
                record["sure"] = sure_estimate(
                    record["loss"], div, sigma=sigma, num_entries=num_entries
                )
            for key, value in record.items():
                trajectory[key].append(value)
            value = {"oracle": record.get("psnr"), "sure": record.get("sure")}.get(stop)
            if stop == "none":
                best_iteration, best = t, z_out
            else:
                better = best_value is None or (
                    value > best_value if stop == "oracle" else value < best_value
                )
                if better:
                    best_value, best_iteration, best = value, t, z_out.clone()
                if patience is not None and t - best_iteration >= patience:
                    stop_now = True
            if callback is not None and callback(t, record, z_out):
                stop_now = True
            if bar is not None and (t % postfix_every == 0 or stop_now):
                bar.set_postfix_str(_progress_text(record), refresh=False)
        if tracker is not None and (t % weight_log_every == 0 or stop_now):
            tracker.log(t)
        if stop_now:
            last = z.detach()
            break
        start = time.perf_counter()
        for opt in optimizers:
            opt.step()
        sync()
        optimizer_time += time.perf_counter() - start
        steps_done += 1
        if bar is not None:
            bar.update(1)
    total = time.perf_counter() - loop_start
    if bar is not None:
        bar.close()
    if last is None:  # diverged: the last finite iterate stands in for the last one
        last = previous
    config["diverged_at"] = diverged_at

    timing = {
        "total_s": total,
        "forward_backward_s": forward_backward,
        "optimizer_s": optimizer_time,
        "outside_share": 1.0 - forward_backward / total if total > 0 else 0.0,
        "iterations": steps_done,
        "iterations_per_s": steps_done / total if total > 0 else float("inf"),
        "setup_s": setup_s,
    }
    x_hat = best[0].to("cpu", torch.float32)
    choices = _choices(trajectory, x_hat, clean_cpu)
    return FitResult(
        x_hat=x_hat,
        last=last[0].to("cpu", torch.float32),
        iteration=best_iteration,
        stop=stop,
        trajectory=trajectory,
        choices=choices,
        weights=[] if tracker is None else tracker.records,
        timing=timing,
        config=config,
        network=network,
        network_input=net_input,
    )


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
