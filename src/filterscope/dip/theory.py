"""Theory against practice: a wide vanilla CNN trained by gradient descent is NTK twicing.

The paper's central claim (Sections 3–4): a CNN with the noisy image at its input,
output shifted to start at 0 and trained by gradient descent with an ``O(1/c)`` step
follows, as ``c → ∞``, the twicing iteration ``z^t = (I − (I − W)^t) y`` with the fixed
filter ``W = ηΘ`` given by its neural tangent kernel at initialisation (equations 5–6,
9–12). :func:`ntk_gap` trains the vanilla CNN of :mod:`filterscope.dip.networks` with
:func:`~filterscope.dip.fit.fit_single_image` and measures how far its trajectory is
from the closed-form prediction of :mod:`filterscope.ntk` at several widths; the gap
shrinks like ``c^{-1/2}``.

Step-size bookkeeping (loss ``mean((z − y)²)`` over ``n = C·d`` entries, so the
linearised update is ``z ← z + (2η/n) Θ (y − z)``):

- standard parameterisation, all layers trained, ``η = lr / c``: ``ηΘ → (lr/σ_w²) K``
  with ``K`` the closed-form NTK without the first layer's weights (equation 12,
  ``train_first_layer=False``; their contribution is ``O(1/c)``), so
  ``W = (2 lr / (σ_w² n)) K``;
- NTK parameterisation, ``η = lr``: ``ηΘ → lr K'`` with ``K'`` the closed form including
  the first layer (``train_first_layer=True``), so ``W = (2 lr / n) K'``.

``lr`` is chosen so that the largest eigenvalue of ``W`` is ``step``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from ..metrics import psnr
from ..ntk.kernels import MAX_MATRIX_PIXELS, as_image, kernel_matrix
from ..ntk.nystrom import matrix_basis
from ..ntk.twicing import twicing
from .fit import fit_single_image
from .networks import SIGMA_W2
from .weights import loglog_slope


def ntk_gap(
    noisy: torch.Tensor,
    *,
    widths: Sequence[int] = (16, 64, 256, 1024),
    iters: int = 20,
    step: float = 0.5,
    kernel_size: int = 3,
    parameterization: str = "standard",
    seed: int = 0,
) -> dict:
    """Relative gap between a trained vanilla CNN's outputs and NTK twicing, per width.

    Parameters
    ----------
    noisy : Tensor, shape (C, H, W), (1, C, H, W) or (H, W)
        A small noisy image (the full ``d × d`` kernel is formed: ``H·W ≤ 4096``).
    widths : sequence of int, keyword-only
        Hidden channels ``c`` to try.
    iters : int, keyword-only
        Gradient descent steps; the outputs ``z^1 … z^iters`` are compared.
    step : float, keyword-only
        Largest eigenvalue of the predicted filter ``W``, in (0, 1] (the twicing
        formula of :mod:`filterscope.ntk.twicing` needs eigenvalues ≤ 1).
    kernel_size : int, keyword-only
        Side ``r`` of the first layer's kernel (the output layer is 1 × 1, equation 16).
    parameterization : {"standard", "ntk"}, keyword-only
        See the module notes.
    seed : int, keyword-only
        Seed of the networks' weights (the same seed for every width).

    Returns
    -------
    dict
        ``widths``; ``gap``: ``√(Σ_t ‖z_net^t − z_ntk^t‖²) / √(Σ_t ‖z_ntk^t‖²)`` per
        width; ``gap_per_iteration``: ``‖z_net^t − z_ntk^t‖ / ‖z_ntk^t‖`` per width and
        ``t``; ``slope``: log–log slope of the gap against the width (theory −1/2, with
        more than one width); ``lr``: the width-free rate used; ``lambda_max_kernel``.

    Notes
    -----
    Float64 throughout. Cost: the ``d × d`` kernel and its eigendecomposition
    (``O(d³)``), and ``iters`` passes of each network, ``O(iters · d · c · r² C)``.
    """
    if not 0 < step <= 1:
        raise InputError(f"step must lie in (0, 1], got {step}")
    y = as_image(noisy)
    channels, height, width_px = y.shape
    d = height * width_px
    if d > MAX_MATRIX_PIXELS:
        raise InputError(f"image has {d} pixels; the comparison forms the full kernel (≤ 4096)")
    kernel = kernel_matrix(
        y,
        depth=2,
        kernel_size=kernel_size,
        output_kernel=1,
        padding="circular",
        kind="ntk",
        input="image",
        train_first_layer=parameterization == "ntk",
    )
    n = channels * d
    lam = float(torch.linalg.eigvalsh(kernel)[-1])
    # W = (2 lr / (s n)) K, with s = σ_w² (standard) or 1 (NTK); pick lr so that λ_max(W) = step
    s = SIGMA_W2 if parameterization == "standard" else 1.0
    lr = step * s * n / (2.0 * lam)
    basis = matrix_basis((2.0 * lr / (s * n)) * kernel, (height, width_px), normalize="none")
    predicted = [twicing(basis, y, t) for t in range(1, iters + 1)]

    gaps, per_iteration = [], []
    for c in widths:
        outputs: dict[int, torch.Tensor] = {}

        def keep(t, record, z, outputs=outputs):
            outputs[t] = z[0].to(torch.float64).clone()

        fit_single_image(
            y,
            arch="vanilla",
            input="image",
            optimizer="gd",
            iters=iters,
            lr=lr,
            width=int(c),
            kernel_size=kernel_size,
            parameterization=parameterization,
            seed=seed,
            dtype=torch.float64,
            callback=keep,
        )
        steps = range(1, iters + 1)
        diff = [torch.linalg.vector_norm(outputs[t] - predicted[t - 1]) for t in steps]
        ref = [torch.linalg.vector_norm(p) for p in predicted]
        num = torch.sqrt(sum(v**2 for v in diff))
        den = torch.sqrt(sum(v**2 for v in ref))
        gaps.append(float(num / den))
        per_iteration.append([float(a / b) for a, b in zip(diff, ref, strict=True)])
    return {
        "widths": [int(c) for c in widths],
        "gap": gaps,
        "gap_per_iteration": per_iteration,
        "slope": loglog_slope(widths, gaps) if len(set(widths)) > 1 else None,
        "lr": lr,
        "step": step,
        "iters": iters,
        "lambda_max_kernel": lam,
        "parameterization": parameterization,
        "kernel_size": kernel_size,
    }


def linearized_gd(
    noisy: torch.Tensor,
    *,
    iters: int,
    clean: torch.Tensor | None = None,
    log_every: int = 1,
    **fit_options,
) -> dict:
    """Gradient descent on the network's first-order expansion at its initialisation.

    The lazy (NTK) regime of the paper, for any network of :mod:`.networks` and either
    input, without a closed form: the network, its input and the GD rate are those of
    :func:`~filterscope.dip.fit.fit_single_image` called with ``optimizer="gd"`` and the
    same ``fit_options`` (``arch``, ``input``, ``width``, ``seed``, ``gd_step`` or
    ``lr``, ...), and the output follows

        ``z^{t+1} = z^t − (2η/n) Θ⁰ (z^t − y)``,  ``Θ⁰ = J Jᵀ``,  ``J = ∂z/∂θ`` at ``θ⁰``

    (``n`` entries, loss ``mean((z − y)²)``), from ``z^0`` the initial output (noise input)
    or 0 (image input, where the output is shifted by ``z^0``). Comparing it with a real
    GD run of the same arguments tells how much of that run the fixed initial filter
    explains.

    Parameters
    ----------
    noisy : Tensor, shape (C, H, W), (1, C, H, W) or (H, W)
    iters : int, keyword-only
        Steps.
    clean : Tensor, optional, keyword-only
        Clean image, for the PSNR trajectory and the best iterate.
    log_every : int, keyword-only
    **fit_options
        Passed to :func:`fit_single_image` (not ``optimizer``, ``iters``, ``clean``).

    Returns
    -------
    dict
        ``iteration``, ``loss`` and (with ``clean``) ``psnr`` lists; ``lr_effective``;
        ``last``: the last output, shape (C, H, W); with ``clean``, ``best_psnr``,
        ``best_iteration`` and ``best``.

    Notes
    -----
    Each step is one pull-back through the initial network's graph and one forward-mode
    product (about two training steps); memory as one training step.
    """
    from torch.func import functional_call, jvp, vjp

    for name in ("optimizer", "iters", "clean", "callback"):
        if name in fit_options:
            raise InputError(f"linearized_gd sets {name} itself")
    # one call that stops before its first step: the initial network, input and rate
    init = fit_single_image(noisy, optimizer="gd", iters=1, callback=lambda *_: True, **fit_options)
    network, network_input = init.network, init.network_input
    lr = init.config["lr_effective"]
    names = [name for name, _ in network.named_parameters()]
    primals = tuple(p.detach() for _, p in network.named_parameters())

    def output(*weights):
        return functional_call(network, dict(zip(names, weights, strict=True)), (network_input,))

    z0, pullback = vjp(output, *primals)
    y = as_image(noisy).to(z0.device, z0.dtype)[None]
    clean_t = None if clean is None else as_image(clean).to(z0.device, torch.float64)[None]
    if clean_t is not None and clean_t.shape != y.shape:
        raise InputError(
            f"the clean image has shape {tuple(clean_t.shape[1:])}, "
            f"the noisy one {tuple(y.shape[1:])}"
        )
    z = z0.detach().clone() if init.config["input"] == "noise" else torch.zeros_like(y)
    rate = 2.0 * lr / y.numel()
    out: dict = {"iteration": [], "loss": [], "lr_effective": lr}
    if clean_t is not None:
        out["psnr"] = []
        best_value, best_iteration, best = None, 0, z
    for t in range(iters + 1):
        residual = z - y
        if t % log_every == 0 or t == iters:
            out["iteration"].append(t)
            out["loss"].append(float(residual.pow(2).mean()))
            if clean_t is not None:
                value = float(psnr(z, clean_t))
                out["psnr"].append(value)
                if best_value is None or value > best_value:
                    best_value, best_iteration, best = value, t, z.clone()
        if t == iters:
            break
        theta_residual = jvp(output, primals, pullback(residual))[1]
        z = z - rate * theta_residual
    out["last"] = z[0].detach().cpu()
    if clean_t is not None:
        out.update(best_psnr=best_value, best_iteration=best_iteration, best=best[0].cpu())
    return out
