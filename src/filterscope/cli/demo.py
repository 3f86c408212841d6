"""``filterscope demo``: the main job on a built-in image (what ``make run`` runs)."""

from __future__ import annotations

import argparse

from ._common import add_device_option, add_trust_code_option


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="denoise a built-in image at sigma 90 (0-255 scale) and save a comparison",
        description="Adds Gaussian noise to scikit-image's 'camera' photograph, denoises it "
        "blindly (the model is not told sigma) with the default gray model and writes "
        "clean | noisy | denoised side by side as OUT/demo.png.",
    )
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument(
        "--sigma",
        type=float,
        default=90.0,
        help="noise standard deviation on the 0-255 scale (default: 90)",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME_OR_PATH",
        help="shipped model name or checkpoint path",
    )
    add_trust_code_option(parser)
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="network arithmetic (default auto: bfloat16 where this CPU or GPU runs it "
        "natively, else float32)",
    )
    add_device_option(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..errors import InputError

    if args.sigma < 0:
        raise InputError(f"--sigma must be non-negative, got {args.sigma}")
    result = run_demo(
        args.out,
        sigma_255=args.sigma,
        model=args.model,
        seed=args.seed,
        precision=args.precision,
        device=args.device,
    )
    print(f"model {result['model']}, Gaussian noise sigma = {result['sigma']:g} (0-255 scale)")
    print(f"noisy    PSNR {result['psnr_in']:6.2f} dB   SSIM {result['ssim_in']:.3f}")
    print(f"denoised PSNR {result['psnr_out']:6.2f} dB   SSIM {result['ssim_out']:.3f}")
    print(f"wrote {result['image']} (clean | noisy | denoised)")
    return 0
