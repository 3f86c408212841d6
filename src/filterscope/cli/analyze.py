"""``filterscope analyze ...``: look inside a denoiser through its Jacobian.

Each sub-command reads a clean image (or folder), calls one function of
:mod:`filterscope.analysis.reports` (which adds the noise from ``--seed``), writes its
report as JSON and, with ``--plot``, its figures beside it (``OUT.json`` -> ``OUT.png``
and, for some analyses, ``OUT_<part>.png``). σ is on the 0–255 scale here and in the JSON.
"""

from __future__ import annotations

import argparse

from .._files import check_output_paths
from ._common import (
    add_device_option,
    add_trust_code_option,
    check_channels,
    figure_path,
    load_model,
    model_label,
    options,
    parse_pixel,
    parse_sigmas,
    read_folder,
    read_paths,
    read_tensor,
    write_json,
)

SUBCOMMANDS = ("decomposition", "filters", "spectrum", "dimension", "noise-map")

__all__ = ["add_parser", "parse_pixel", "parse_sigmas", "run"]


def _load(model: str | None, channels: int):
    """The model ``--model`` names (a separate function so tests can replace it)."""
    return load_model(model, channels)


def _check_outputs(args: argparse.Namespace, analysis: str) -> None:
    """Refuse, before any work, outputs that exist (without --force) or cannot be written."""
    from ..analysis.reports import figure_paths

    outputs: dict = {"--json": args.json}
    if args.plot:
        figures = figure_paths(figure_path(args.json), analysis)
        outputs |= {f"--plot ({path.name})": path for path in figures}
    plots = [option for option in outputs if option.startswith("--plot")]
    check_output_paths(outputs, overwrite=args.force, figures=plots, in_use=read_paths(args))


def _finish(args: argparse.Namespace, inputs: dict, report, **figure_options) -> int:
    """Write the JSON report, print its summary and, with --plot, draw its figures."""
    payload = {"command": f"analyze {args.analysis}", "model": str(args.model), **inputs}
    print(f"wrote {write_json(args.json, payload | report.to_json())}")
    for line in report.summary():
        print(line)
    if args.plot:
        label = model_label(args.model)
        for path in report.save_figures(figure_path(args.json), label=label, **figure_options):
            print(f"wrote {path}")
    return 0


def _image_and_model(args: argparse.Namespace):
    x = read_tensor(args.image)
    net = _load(args.model, x.shape[1])
    check_channels(net, x.shape[1], args.image)
    return x, net


# ----------------------------------------------------------------------------- commands


def run_decomposition(args: argparse.Namespace) -> int:
    import torch

    from ..analysis.reports import analyze_decomposition

    _check_outputs(args, "decomposition")
    sigmas = parse_sigmas(args.sigmas)
    files, images = read_folder(args.data, limit=args.images)
    net = _load(args.model, images[0].shape[0])
    check_channels(net, images[0].shape[0], args.data)
    dtype = torch.float32 if args.float32 else torch.float64
    names = [f.name for f in files]
    sigmas = [s / 255.0 for s in sigmas]
    options_ = options(args, "patch", "patches", "seed", "device")
    report = analyze_decomposition(net, images, sigmas, dtype=dtype, names=names, **options_)
    return _finish(args, {"data": str(args.data)}, report)


def run_filters(args: argparse.Namespace) -> int:
    from ..analysis.reports import analyze_filters

    _check_outputs(args, "filters")
    pixels = [parse_pixel(p) for p in args.pixels]
    x, net = _image_and_model(args)
    sigma = args.sigma / 255.0
    options_ = options(args, "seed", "channel", "device")
    report = analyze_filters(net, x, pixels, sigma=sigma, **options_)
    return _finish(args, {"image": str(args.image)}, report)


def run_spectrum(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..analysis.reports import analyze_spectrum

    _check_outputs(args, "spectrum")
    sigmas = parse_sigmas(args.sigmas)
    at = None if args.at is None else parse_pixel(args.at)
    x, net = _image_and_model(args)
    max_bytes = int(args.max_gib * 2**30)
    sigmas = [s / 255.0 for s in sigmas]
    options_ = options(args, "patch", "seed", "device")
    report = analyze_spectrum(net, x, sigmas, at=at, max_bytes=max_bytes, **options_)
    return _finish(args, {"image": str(args.image)}, report, image_name=Path(args.image).name)


def run_dimension(args: argparse.Namespace) -> int:
    from ..analysis.reports import analyze_dimension

    _check_outputs(args, "dimension")
    x, net = _image_and_model(args)
    options_ = options(args, "probes", "batch", "rtol", "confidence", "top", "seed", "device")
    report = analyze_dimension(net, x, sigma=args.sigma / 255.0, **options_)
    return _finish(args, {"image": str(args.image)}, report)


def run_noise_map(args: argparse.Namespace) -> int:
    from ..analysis.reports import analyze_noise_map

    _check_outputs(args, "noise-map")
    x, net = _image_and_model(args)
    report = analyze_noise_map(net, x, sigma=args.sigma / 255.0, seed=args.seed)
    return _finish(args, {"image": str(args.image)}, report)


# ----------------------------------------------------------------------------- parser


def _sub(sub, name: str, run, help: str, description: str) -> argparse.ArgumentParser:
    """A sub-command with the options every analysis shares."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        default=None,
        help="shipped model name or checkpoint file (published checkpoints included; "
        "default: the shipped model for the image's channel count)",
    )
    add_trust_code_option(p)
    p.add_argument("--json", required=True, metavar="OUT", help="JSON file to write")
    p.add_argument("--plot", action="store_true", help="also write figures beside OUT (.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    p.add_argument("--force", action="store_true", help="overwrite OUT and its figures")
    add_device_option(p)
    if name != "decomposition":
        p.add_argument("--image", required=True, metavar="IMG", help="clean image file")
    if name in ("filters", "dimension"):
        p.add_argument("--sigma", type=float, required=True, help="noise level, 0-255 scale")
    if name == "noise-map":
        p.add_argument(
            "--sigma",
            type=float,
            required=True,
            help="Gaussian noise added to IMG, 0-255 scale; 0: IMG is already noisy (a photo)",
        )
    p.set_defaults(run=run)
    return p


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

    p = _sub(
        sub,
        "decomposition",
        run_decomposition,
        "mean norms of noise, residual, linear part and net bias against sigma",
        "First-order decomposition y - f(y) = (I - A_y) y - b_y averaged over random "
        "patches of the images in DIR (Figure 1: --patch 20 --patches 100) or over the "
        "whole images (Figure 8: --patch 0). Norms are per-image RMS on the 0-255 scale. "
        "--plot writes OUT.png (norms against sigma) and OUT_parts.png (noisy, denoised, "
        "linear part, net bias and residual of the first patch or image at up to four "
        "sigmas, Figures 9-10).",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="folder of clean images")
    p.add_argument(
        "--sigmas", default="10:100:10", help="noise levels, 0-255: 10,30,50 or 10:100:10"
    )
    p.add_argument(
        "--patch",
        type=int,
        default=20,
        help="patch side in pixels (default: 20); 0: the whole images, each the network's "
        "input (slow on CPU: one forward-mode pass per image and sigma)",
    )
    p.add_argument("--patches", type=int, default=100, help="random patches (default: 100)")
    p.add_argument("--images", type=int, default=None, metavar="N", help="first N images only")
    p.add_argument(
        "--float32",
        action="store_true",
        help="float32 arithmetic (about 2x faster on CPU; fine for networks with bias, but "
        "a bias-free network's net bias is then ~1e-5 instead of ~1e-13)",
    )

    p = _sub(
        sub,
        "filters",
        run_filters,
        "equivalent filters (rows of the Jacobian) of chosen pixels",
        "The row of A_y of each pixel of the full-size noisy image, computed exactly on a "
        "receptive-field crop; with its sum of weights and spatial extent. --plot writes "
        "OUT.png: the marked pixels and their filters, negative weights red (Figure 4).",
    )
    p.add_argument("--pixels", nargs="+", required=True, metavar="X,Y", help="pixels (column,row)")
    p.add_argument("--channel", type=int, default=0, help="output channel (RGB models)")

    p = _sub(
        sub,
        "spectrum",
        run_spectrum,
        "SVD of the Jacobian of a patch: effective dimension, signal subspace",
        "Full Jacobian of a noisy patch (the network applied to the patch), its singular "
        "values, effective dimension d = sum s_i^2, left/right cosines, the clean patch's "
        "energy in the signal subspace, and nesting of subspaces across sigma. --plot "
        "writes OUT.png (Figure 5), OUT_subspaces.png (Figure 7), OUT_vectors.png (Figure 6).",
    )
    p.add_argument("--sigmas", default="10,30,50,100", help="noise levels, 0-255")
    p.add_argument("--patch", type=int, default=40, help="patch side in pixels (default: 40)")
    p.add_argument("--at", default=None, metavar="X,Y", help="patch top-left (default: centre)")
    p.add_argument("--max-gib", type=float, default=2.0, help="largest dense Jacobian, GiB")

    p = _sub(
        sub,
        "dimension",
        run_dimension,
        "matrix-free effective dimension of a whole image, with an interval",
        "d = E||A_y z||^2 estimated from random probes (forward-mode products only), on "
        "the whole image; optionally the top singular values (block Krylov).",
    )
    p.add_argument("--probes", type=int, default=32, help="largest number of probes (default: 32)")
    p.add_argument("--batch", type=int, default=4, help="probes per pass (default: 4)")
    p.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="stop once the interval half-width is below this fraction of d (e.g. 0.05)",
    )
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    p.add_argument("--top", type=int, default=0, metavar="K", help="the K largest singular values")

    _sub(
        sub,
        "noise-map",
        run_noise_map,
        "the noise map a model's blind path feeds its network",
        "For a model with a noise-map estimator (bf-drunet-color-real, bf-drunet-gray-real): "
        "the map its blind path feeds the network (one level per image for a pooled map) "
        "and the estimator's local map, summarised in the JSON (0-255 scale); --plot writes "
        "OUT.png: noisy | map fed | local map.",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Dispatch (each sub-command sets its own ``run``; kept for the CLI contract)."""
    return args.run(args)
