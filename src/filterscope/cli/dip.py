"""``filterscope dip INPUT -o OUTPUT``: denoise one image by fitting a network to it alone.

The deep image prior (noise at the input, Adam) and its gradient-descent / image-input
variants of Tachella et al. (CVPR 2021, Table 1). σ is on the 0–255 scale on the command
line and in the JSON report.
"""

from __future__ import annotations

import argparse
import math

from .._files import check_output_paths
from ..errors import InputError
from ._common import add_device_option, read_paths, write_json


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "dip",
        help="denoise one image by training a network on it alone (deep image prior)",
        description=(
            "Fit a vanilla CNN, U-Net or autoencoder to one noisy image, from fixed noise "
            "or from the image itself, with Adam or plain gradient descent, and keep the "
            "best iterate (oracle with --clean, SURE with --sigma, or the last one)."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="noisy image file")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="output image")
    parser.add_argument(
        "--arch",
        default="autoencoder",
        metavar="vanilla|unet|autoencoder",
        help="network: one-hidden-layer CNN, U-Net or autoencoder (default autoencoder)",
    )
    parser.add_argument(
        "--input",
        choices=("noise", "image"),
        default="noise",
        dest="net_input",
        help="network input: fixed i.i.d. noise (the DIP) or the noisy image (default noise)",
    )
    parser.add_argument(
        "--optimizer",
        choices=("adam", "gd"),
        default="adam",
        help="Adam, or plain gradient descent as in the NTK theory (default adam)",
    )
    parser.add_argument("--iters", type=int, default=3000, metavar="N", help="steps (3000)")
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        metavar="LR",
        help="Adam: learning rate (default 3e-4 vanilla; unet/autoencoder 2e-3 with noise "
        "input, 5e-5/1e-3 with image input); gd: "
        "width-free rate, the step is LR/width (default: n / (2 lambda_max) from the NTK at "
        "initialisation, half the linearised stability limit; it falls like 1/width)",
    )
    parser.add_argument("--width", type=int, default=128, metavar="C", help="channels (128)")
    parser.add_argument(
        "--sigma", type=float, default=None, help="noise std on the 0-255 scale (for SURE)"
    )
    parser.add_argument("--clean", default=None, metavar="CLEAN", help="clean image (PSNR)")
    parser.add_argument(
        "--stop",
        choices=("sure", "oracle", "none"),
        default=None,
        help="which iterate to keep (default: oracle with --clean, else sure with --sigma, "
        "else none = the last)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        metavar="N",
        help="end when the stopping criterion has not improved for N steps",
    )
    parser.add_argument(
        "--parameterization",
        choices=("standard", "ntk"),
        default="standard",
        help="weight scaling: standard, or ntk (weights scaled by 1/sqrt(fan-in) in the "
        "forward pass, as in the theory; default standard)",
    )
    parser.add_argument(
        "--weight-log",
        type=int,
        default=0,
        metavar="K",
        help="record the weight change every K steps in the JSON report",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and input noise")
    add_device_option(parser, default="cpu")
    parser.add_argument("--json", default=None, metavar="OUT", help="write a JSON report")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT and the report")
    parser.add_argument("--no-progress", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..dip import FitConfig, fit_single_image
    from ..io import check_output_path, read_image, to_tensor, write_image

    if args.sigma is not None and not (math.isfinite(args.sigma) and args.sigma > 0):
        raise InputError(f"--sigma must be positive (0-255 scale), got {args.sigma}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise InputError(f"--lr must be positive, got {args.lr}")  # 0 would train nothing
    stop = args.stop or ("oracle" if args.clean else "sure" if args.sigma else "none")
    if stop == "oracle" and args.clean is None:
        raise InputError("--stop oracle needs the clean image --clean")
    config = FitConfig(  # checks every option before any work
        arch=args.arch,
        input=args.net_input,
        optimizer=args.optimizer,
        iters=args.iters,
        lr=args.lr,
        width=args.width,
        sigma=None if args.sigma is None else args.sigma / 255.0,
        stop=stop,
        patience=args.patience,
        seed=args.seed,
        parameterization=args.parameterization,
        weight_log_every=args.weight_log,
        device=args.device,
    )
    check_output_paths(
        {"-o": args.output, "--json": args.json},
        overwrite=args.force,
        in_use=read_paths(args),
    )
    noisy, info = read_image(args.input)
    dtype = check_output_path(
        args.output, overwrite=args.force, dtype=info.dtype, channels=noisy.shape[2]
    )
    clean = None if args.clean is None else to_tensor(read_image(args.clean)[0])
    progress = not args.no_progress
    result = fit_single_image(to_tensor(noisy), config, clean=clean, progress=progress)
    image = result.x_hat.permute(1, 2, 0).numpy()
    write_image(args.output, image, dtype=dtype, overwrite=args.force)
    if args.json:
        write_json(
            args.json, {"input": str(args.input), "output": str(args.output)} | result.to_dict()
        )
    if result.config["diverged_at"] is not None:
        print(
            f"note: training diverged at iteration {result.config['diverged_at']} "
            "(try a smaller --lr or a wider network); the last finite iterate was kept"
        )
    psnr = result.choices.get("psnr")
    psnr_text = f", PSNR {psnr:.2f} dB" if psnr is not None else ""
    timing = result.timing
    print(
        f"wrote {args.output} ({args.arch}, {args.net_input} input, {args.optimizer}; "
        f"iteration {result.iteration} of {timing['iterations']} kept by {stop}{psnr_text}; "
        f"{timing['iterations_per_s']:.1f} it/s, {timing['total_s']:.1f} s)"
    )
    return 0
