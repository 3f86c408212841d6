"""``filterscope analyze ...``: look inside a denoiser through its Jacobian.

Each sub-command takes a clean image (or folder), adds Gaussian noise per σ from
``--seed``, writes a JSON file and, with ``--plot``, figures beside it (``OUT.json`` ->
``OUT.png`` and, for some commands, ``OUT_<part>.png``):

- ``decomposition``: ``OUT.png`` norms against σ (Figures 1, 8); ``OUT_parts.png`` noisy,
  denoised, linear part, net bias and residual of the first patch or image (Figs 9–10).
- ``filters``: ``OUT.png`` the marked pixels and their filters, negative weights red,
  each panel titled with its sum (Figure 4).
- ``spectrum``: ``OUT.png`` singular values, cosines, d against σ with the 1/σ fit
  (Figure 5); ``OUT_subspaces.png`` clean energy and nesting (Figure 7);
  ``OUT_vectors.png`` leading and trailing singular vectors at σ ≈ 50 (Figure 6).
- ``dimension``: ``OUT.png`` the probe values, running mean and interval.

σ is on the 0–255 scale here and in the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .._files import atomic_write, check_output_paths
from ..errors import InputError

SUBCOMMANDS = ("decomposition", "filters", "spectrum", "dimension")


# ----------------------------------------------------------------------------- parsing


def parse_sigmas(text: str) -> list[float]:
    """``"10,30,50"`` or ``"10:100:10"`` (start:stop:step, stop included) -> σ's (0–255)."""
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0:
                raise ValueError
            start, stop, step = parts
            count = int((stop - start) / step + 1e-9) + 1
            values = [start + k * step for k in range(count)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(
            f"cannot read noise levels {text!r}; give e.g. 10,30,50 or 10:100:10 (0-255 scale)"
        ) from None
    if not values:
        raise InputError("no noise level given")
    for v in values:
        if not v >= 0:
            raise InputError(f"noise levels must be >= 0 (0-255 scale), got {v:g}")
    return values


def parse_pixel(text: str) -> tuple[int, int]:
    """``"X,Y"`` -> ``(x, y)`` (column, row)."""
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"a pixel is X,Y (column,row), got {text!r}") from None
    return x, y


# ----------------------------------------------------------------------------- helpers


def _load(model: str | None, channels: int) -> torch.nn.Module:
    from ..inference import _load_model

    return _load_model(model, channels)


def _read(path: str) -> torch.Tensor:
    from ..io import read_image, to_tensor

    image, _ = read_image(path)
    return to_tensor(image).to(torch.float64)


def _check_channels(net: torch.nn.Module, channels: int, what: str) -> None:
    expected = getattr(net, "in_channels", None)
    if expected is not None and expected != channels:
        raise InputError(
            f"{what} has {channels} channel(s) but the model takes {expected}; "
            "use a model for that channel count"
        )


#: The figures each sub-command writes beside ``OUT.json`` with ``--plot`` (name suffixes).
FIGURES = {
    "decomposition": ("", "_parts"),
    "filters": ("",),
    "spectrum": ("", "_subspaces", "_vectors"),
    "dimension": ("",),
}


def _check_outputs(args: argparse.Namespace, command: str) -> None:
    """Refuse, before any work, outputs that exist (without --force) or cannot be written."""
    outputs: dict = {"--json": args.json}
    if args.plot:
        outputs |= {f"--plot ({name})": _figure_path(args.json, name) for name in FIGURES[command]}
    figures = [option for option in outputs if option.startswith("--plot")]
    check_output_paths(outputs, overwrite=args.force, figures=figures)


def _write_json(path: str, payload: dict) -> Path:
    text = json.dumps(payload, indent=2) + "\n"
    return atomic_write(path, lambda name: Path(name).write_text(text))


def _figure_path(json_path: str, suffix: str = "") -> Path:
    p = Path(json_path)
    return p.with_name(p.stem + suffix + ".png")


def _model_label(model: str | None) -> str:
    """Short model name for figure titles: the name, or a checkpoint's last two path parts."""
    if model is None:
        return "default model"
    parts = Path(str(model)).parts
    return "/".join(parts[-2:])


def _seed_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# ----------------------------------------------------------------------------- commands


def _training_range(net: torch.nn.Module) -> tuple[float, float] | None:
    """σ range (0–255) from the model card, when the card states it."""
    card = getattr(net, "card", None)
    try:
        lo, hi = card["training"]["sigma_range_255"]
        return float(lo), float(hi)
    except (TypeError, KeyError, ValueError):
        return None


def _spread(count: int, most: int) -> list[int]:
    """Up to ``most`` indices spread evenly over ``range(count)``, first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({round(k * (count - 1) / (most - 1)) for k in range(most)})


def run_decomposition(args: argparse.Namespace) -> int:
    from ..analysis import decomposition_vs_sigma, random_patches
    from ..io import list_images

    _check_outputs(args, "decomposition")
    sigmas = parse_sigmas(args.sigmas)
    if args.patch < 0:
        raise InputError("--patch must be a number of pixels >= 1, or 0 for whole images")
    if args.patches < 1:
        raise InputError("--patches must be positive")
    if args.images is not None and args.images < 1:
        raise InputError("--images must be positive")
    files = list_images(args.data)
    if not files:
        raise InputError(f"{args.data}: no image files in this folder")
    files = files[: args.images] if args.images is not None else files
    images = [_read(str(f))[0] for f in files]
    channels = images[0].shape[0]
    if any(im.shape[0] != channels for im in images):
        raise InputError(f"{args.data}: mixes gray and colour images; use one kind")
    smallest = min(min(im.shape[-2:]) for im in images)
    if args.patch > smallest:
        raise InputError(
            f"patch {args.patch} is larger than the smallest image side ({smallest} pixels); "
            f"use --patch {smallest} or less, or --patch 0 for whole images"
        )
    net = _load(args.model, channels)
    _check_channels(net, channels, args.data)
    dtype = torch.float32 if args.float32 else torch.float64
    whole = args.patch == 0
    if whole:
        x = images
        units = "images"
    else:
        x = random_patches(
            images, patch=args.patch, count=args.patches, generator=_seed_generator(args.seed)
        )
        units = "patches"
    start = time.perf_counter()
    results, examples = decomposition_vs_sigma(
        net, x, [s / 255.0 for s in sigmas], seed=args.seed, dtype=dtype, return_examples=True
    )
    payload = {
        "command": "analyze decomposition",
        "model": str(args.model),
        "data": str(args.data),
        "mode": "whole images" if whole else "patches",
        "patch": args.patch if not whole else None,
        "patches": args.patches if not whole else None,
        "images": [f.name for f in files],
        "seed": args.seed,
        "dtype": str(dtype).replace("torch.", ""),
        "norm": "per image or patch 255*||v||_2/sqrt(pixels) (RMS on the 0-255 scale), "
        f"mean over {units}",
        "results": results,
        "seconds": time.perf_counter() - start,
    }
    out = _write_json(args.json, payload)
    print(f"wrote {out}")
    for r in results:
        print(
            f"sigma {r['sigma']:6.1f}: noise {r['noise_norm']:8.3f}  residual "
            f"{r['residual_norm']:8.3f}  linear {r['linear_norm']:8.3f}  bias {r['bias_norm']:.3g}"
        )
    if args.plot:
        from ..plotting.analysis import plot_decomposition, plot_decomposition_grid

        what = (
            f"{len(files)} whole image{'s' if len(files) != 1 else ''}"
            if whole
            else f"{args.patches} {args.patch}px patches"
        )
        path = plot_decomposition(
            results,
            _figure_path(args.json),
            title=f"{_model_label(args.model)}: {what}",
            training_range=_training_range(net),
        )
        print(f"wrote {path}")
        rows = _spread(len(sigmas), 4)
        example = files[0].name if whole else f"first patch ({files[0].name})"
        path = plot_decomposition_grid(
            [examples[i] for i in rows],
            [sigmas[i] for i in rows],
            _figure_path(args.json, "_parts"),
            title=f"{_model_label(args.model)}: {example}",
        )
        print(f"wrote {path}")
    return 0


def run_filters(args: argparse.Namespace) -> int:
    from ..analysis import adaptive_filters
    from ..noise import add_noise

    _check_outputs(args, "filters")
    x = _read(args.image)
    pixels = [parse_pixel(p) for p in args.pixels]
    net = _load(args.model, x.shape[1])
    _check_channels(net, x.shape[1], args.image)
    y = add_noise(x, args.sigma / 255.0, generator=args.seed)
    filters = adaptive_filters(net, y, pixels, channel=args.channel)
    payload = {
        "command": "analyze filters",
        "model": str(args.model),
        "image": str(args.image),
        "sigma": args.sigma,
        "seed": args.seed,
        "filters": [f.to_dict() for f in filters],
    }
    out = _write_json(args.json, payload)
    print(f"wrote {out}")
    for f in filters:
        print(
            f"pixel {f.row.pixel}: sum {f.sum:.4f}, extent rms {f.extent_rms:.2f} px, "
            f"99% within {f.extent_99} px, negative {f.negative_fraction:.1%}"
        )
    if args.plot:
        from ..plotting.analysis import plot_filters

        path = _figure_path(args.json)
        title = f"{_model_label(args.model)}, σ = {args.sigma:g}"
        print(f"wrote {plot_filters(y, filters, path, title=title)}")
    return 0


def run_spectrum(args: argparse.Namespace) -> int:
    from ..analysis import spectrum_vs_sigma
    from ..analysis._core import check_dense_size

    _check_outputs(args, "spectrum")
    sigmas = parse_sigmas(args.sigmas)
    x = _read(args.image)
    _, channels, height, width = x.shape
    patch = args.patch
    if patch < 1:
        raise InputError("--patch must be a positive number of pixels")
    if patch > min(height, width):
        raise InputError(
            f"patch {patch} is larger than the {width}x{height} image; use --patch "
            f"{min(height, width)} or less"
        )
    check_dense_size(
        channels * patch * patch,
        4,
        int(args.max_gib * 2**30),
        what=f"the Jacobian of a {patch}x{patch} patch",
    )
    if args.at is None:
        left, top = (width - patch) // 2, (height - patch) // 2
    else:
        left, top = parse_pixel(args.at)
        if not (0 <= left <= width - patch and 0 <= top <= height - patch):
            raise InputError(
                f"a {patch}x{patch} patch at ({left}, {top}) does not fit in the {width}x"
                f"{height} image; --at X,Y is its top-left corner, X <= {width - patch}, "
                f"Y <= {height - patch}"
            )
    net = _load(args.model, channels)
    _check_channels(net, channels, args.image)
    clean = x[:, :, top : top + patch, left : left + patch]
    start = time.perf_counter()
    spectra, summary = spectrum_vs_sigma(
        net,
        clean,
        [s / 255.0 for s in sigmas],
        seed=args.seed,
        max_bytes=int(args.max_gib * 2**30),
    )
    results = [s.to_dict() for s in spectra]
    payload = {
        "command": "analyze spectrum",
        "model": str(args.model),
        "image": str(args.image),
        "patch": patch,
        "at": [left, top],
        "seed": args.seed,
        "results": results,
        "nesting": summary["nesting"],
        "fit": summary.get("fit"),
        "seconds": time.perf_counter() - start,
    }
    out = _write_json(args.json, payload)
    print(f"wrote {out}")
    for r in results:
        print(
            f"sigma {r['sigma']:6.1f}: d = {r['effective_dim']:8.2f}  clean energy "
            f"{r['clean_energy_fraction']:.4f}  mean cos {r['cosine_mean']:.3f}"
        )
    for n in summary["nesting"]:
        print(
            f"sigma {n['sigma']:g} subspace inside sigma {n['reference_sigma']:g}: "
            f"{n['fraction']:.3f}"
        )
    if "fit" in summary:
        print(f"log-log slope of d against sigma: {summary['fit']['slope']:.3f}")
    if args.plot:
        from ..plotting.analysis import (
            plot_singular_vectors,
            plot_spectrum_panels,
            plot_subspaces,
        )

        name = _model_label(args.model)
        where = f"{Path(args.image).name}, {patch}x{patch} patch at ({left}, {top})"
        path = plot_spectrum_panels(
            results, _figure_path(args.json), fit=summary.get("fit"), title=f"{name}: {where}"
        )
        print(f"wrote {path}")
        path = plot_subspaces(
            results, summary["nesting"], _figure_path(args.json, "_subspaces"), title=where
        )
        print(f"wrote {path}")
        # Figure 6: three leading and three trailing left singular vectors at the sigma
        # closest to 50.
        chosen = min(spectra, key=lambda sp: abs(sp.sigma * 255.0 - 50.0))
        n = len(chosen.singular_values)
        idx = sorted({0, 1, 2, n - 3, n - 2, n - 1} & set(range(n)))
        vectors = chosen.singular_vector_images(idx)
        labels = [f"#{i + 1}  s={float(chosen.singular_values[i]):.2g}" for i in idx]
        path = plot_singular_vectors(
            vectors,
            _figure_path(args.json, "_vectors"),
            labels=labels,
            clean=clean[0],
            title=f"left singular vectors, sigma = {chosen.sigma * 255.0:g}",
        )
        print(f"wrote {path}")
    return 0


def run_dimension(args: argparse.Namespace) -> int:
    from ..analysis import estimate_effective_dim, top_singular_triplets
    from ..noise import add_noise

    _check_outputs(args, "dimension")
    x = _read(args.image)
    net = _load(args.model, x.shape[1])
    _check_channels(net, x.shape[1], args.image)
    y = add_noise(x, args.sigma / 255.0, generator=args.seed)
    if args.probes < 2:
        raise InputError("--probes must be at least 2 for an interval")
    result = estimate_effective_dim(
        net,
        y,
        probes=args.probes,
        batch=args.batch,
        rtol=args.rtol,
        confidence=args.confidence,
        seed=args.seed,
    )
    payload = {
        "command": "analyze dimension",
        "model": str(args.model),
        "image": str(args.image),
        "sigma": args.sigma,
        "seed": args.seed,
        **result,
    }
    if args.top:
        start = time.perf_counter()
        _, s, _ = top_singular_triplets(net, y, args.top, seed=args.seed)
        payload["top_singular_values"] = s.tolist()
        payload["top_seconds"] = time.perf_counter() - start
    out = _write_json(args.json, payload)
    lo, hi = result["interval"]
    print(f"wrote {out}")
    print(
        f"effective dimension {result['effective_dim']:.1f} of {result['pixels']} "
        f"({result['confidence']:.0%} interval {lo:.1f}-{hi:.1f}, {result['probes']} probes, "
        f"{result['seconds']:.1f} s)"
    )
    if args.plot:
        from ..plotting.analysis import plot_dimension

        print(
            f"wrote {plot_dimension(result, _figure_path(args.json), title=f'σ = {args.sigma:g}')}"
        )
    return 0


# ----------------------------------------------------------------------------- parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        default=None,
        help="shipped model name or checkpoint file (published checkpoints included; "
        "default: the shipped model for the image's channel count)",
    )
    parser.add_argument("--json", required=True, metavar="OUT", help="JSON file to write")
    parser.add_argument(
        "--plot", action="store_true", help="also write figures beside OUT (same name, .png)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    parser.add_argument(
        "--force", action="store_true", help="overwrite OUT and its figures if they exist"
    )


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "analyze",
        help="look inside a denoiser: net bias, adaptive filters, Jacobian spectrum",
        description=(
            "Jacobian analysis of a denoiser (Mohan et al., ICLR 2020): f(y) = A_y y + b_y. "
            "Noise is added to the given clean image(s) at each sigma (0-255 scale) from "
            "--seed. Results go to a JSON file; --plot adds figures."
        ),
    )
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS")
    sub.required = True

    p = sub.add_parser(
        "decomposition",
        help="mean norms of noise, residual, linear part and net bias against sigma",
        description="First-order decomposition y - f(y) = (I - A_y) y - b_y averaged over "
        "random patches of the images in DIR (Figure 1: --patch 20 --patches 100) or over "
        "the whole images (Figure 8: --patch 0). Norms are per-image RMS on the 0-255 "
        "scale. --plot writes OUT.png (norms against sigma) and OUT_parts.png (noisy, "
        "denoised, linear part, net bias and residual of the first patch or image at up "
        "to four sigmas, Figures 9-10).",
    )
    _common(p)
    p.add_argument("--data", required=True, metavar="DIR", help="folder of clean images")
    p.add_argument(
        "--sigmas",
        default="10:100:10",
        help="noise levels, 0-255: 10,30,50 or 10:100:10 (default: 10:100:10)",
    )
    p.add_argument(
        "--patch",
        type=int,
        default=20,
        help="patch side in pixels (default: 20); 0: the whole images, each the network's "
        "input (slow on CPU: one forward-mode pass per image and sigma)",
    )
    p.add_argument(
        "--patches",
        type=int,
        default=100,
        help="number of random patches (default: 100; ignored with --patch 0)",
    )
    p.add_argument(
        "--images",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N images of DIR in name order (default: all)",
    )
    p.add_argument(
        "--float32",
        action="store_true",
        help="float32 arithmetic (about 2x faster on CPU; fine for networks with bias, but "
        "a bias-free network's net bias is then ~1e-5 instead of ~1e-13)",
    )
    p.set_defaults(run=run_decomposition)

    p = sub.add_parser(
        "filters",
        help="equivalent filters (rows of the Jacobian) of chosen pixels",
        description="The row of A_y of each pixel of the full-size noisy image, computed "
        "exactly on a receptive-field crop; with its sum of weights and spatial extent.",
    )
    _common(p)
    p.add_argument("--image", required=True, metavar="IMG", help="clean image file")
    p.add_argument("--sigma", type=float, required=True, help="noise level, 0-255 scale")
    p.add_argument("--pixels", nargs="+", required=True, metavar="X,Y", help="pixels (column,row)")
    p.add_argument("--channel", type=int, default=0, help="output channel (RGB models)")
    p.set_defaults(run=run_filters)

    p = sub.add_parser(
        "spectrum",
        help="SVD of the Jacobian of a patch: effective dimension, signal subspace",
        description="Full Jacobian of a noisy patch (the network applied to the patch), its "
        "singular values, effective dimension d = sum s_i^2, left/right cosines, the clean "
        "patch's energy in the signal subspace, and nesting of subspaces across sigma.",
    )
    _common(p)
    p.add_argument("--image", required=True, metavar="IMG", help="clean image file")
    p.add_argument(
        "--sigmas", default="10,30,50,100", help="noise levels, 0-255 (default: 10,30,50,100)"
    )
    p.add_argument("--patch", type=int, default=40, help="patch side in pixels (default: 40)")
    p.add_argument(
        "--at", default=None, metavar="X,Y", help="top-left corner of the patch (default: centre)"
    )
    p.add_argument(
        "--max-gib",
        type=float,
        default=2.0,
        help="largest dense Jacobian to build, GiB (default: 2)",
    )
    p.set_defaults(run=run_spectrum)

    p = sub.add_parser(
        "dimension",
        help="matrix-free effective dimension of a whole image, with an interval",
        description="d = E||A_y z||^2 estimated from random probes (forward-mode products "
        "only), on the whole image; optionally the top singular values (block Krylov).",
    )
    _common(p)
    p.add_argument("--image", required=True, metavar="IMG", help="clean image file")
    p.add_argument("--sigma", type=float, required=True, help="noise level, 0-255 scale")
    p.add_argument("--probes", type=int, default=32, help="largest number of probes (default: 32)")
    p.add_argument("--batch", type=int, default=4, help="probes per pass (default: 4)")
    p.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="stop once the interval half-width is below this fraction of d (e.g. 0.05)",
    )
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    p.add_argument(
        "--top", type=int, default=0, metavar="K", help="also the K largest singular values"
    )
    p.set_defaults(run=run_dimension)
    return parser


def run(args: argparse.Namespace) -> int:
    """Dispatch (each sub-command sets its own ``run``; kept for the CLI contract)."""
    return args.run(args)
