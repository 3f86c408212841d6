"""``filterscope evaluate``: models × noise levels on a folder of clean images.

σ is on the 0–255 scale on the command line and in the outputs.
"""

from __future__ import annotations

import argparse
import math

from ..errors import InputError
from ._common import add_device_option, add_trust_code_option, read_paths

# filterscope.noise.NOISE_MODELS, written out so that --help does not import torch.
NOISE_CHOICES = ("gaussian", "uniform", "correlated", "poisson-gaussian", "camera")


def parse_blur(text: str) -> float:
    """``"2"`` -> 2.0 pixels; InputError unless a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"cannot read blur width {text!r}; give a number of pixels >= 0") from None
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"blur width must be a number of pixels >= 0, got {text}")
    return value


def _sigmas_255(text: str) -> list[float]:
    """``--sigmas`` on the 0-255 scale; InputError for a value above 255."""
    from ._common import parse_sigmas

    sigmas = parse_sigmas(text)
    for sigma in sigmas:
        if math.isfinite(sigma) and sigma > 255:
            raise InputError(f"--sigmas are on the 0-255 scale; {sigma:g} is above 255")
    return sigmas


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="PSNR/SSIM of models across noise levels on a folder of clean images",
        description=(
            "Add noise to every clean image of a folder at each noise level (one draw per "
            "image and level, fixed by --seed, shared by all models), denoise it with each "
            "model and report mean input and output PSNR/SSIM, with per-image values in "
            "the JSON. The protocol is that of the published metrics of Mohan et al. "
            "(ICLR 2020): noisy input not clipped, estimate clipped to [0, 1], data range "
            "1, SSIM with a 7x7 uniform window. Noise levels are on the 0-255 scale."
        ),
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="M",
        help="a model of `filterscope models` (shipped name, bm3d, nlm, bm3d:estimate, "
        "nlm:estimate, ntk, nlm-twicing, dip, an architecture), a checkpoint path "
        "(filterscope .safetensors/.pt or a published .pt), or a Python object path "
        "package.module:attribute; repeat for several models, all run on the same noisy "
        "images. Results name a model exactly as given here",
    )
    add_trust_code_option(parser)
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="folder of clean images, all gray or all RGB; a network for gray images is "
        "refused on RGB images (and vice versa), baselines take either",
    )
    parser.add_argument(
        "--sigmas",
        default="10:100:10",
        metavar="LIST",
        help="noise standard deviations on the 0-255 scale, e.g. 10,30,50 or 10:100:10 "
        "(start:stop:step, stop included; default: 10,20,...,100)",
    )
    parser.add_argument(
        "--noise",
        default="gaussian",
        metavar="{" + ",".join(NOISE_CHOICES) + "}",
        help="noise model: gaussian, uniform and correlated have standard deviation sigma; "
        "poisson-gaussian and camera are signal-dependent, with shot noise of std sigma at "
        "white (camera: through a camera pipeline, stored in 8 bits; default: gaussian)",
    )
    parser.add_argument(
        "--blur",
        default="0",
        metavar="S",
        help="blur each clean image with a Gaussian of S pixels (standard deviation) before "
        "adding noise; metrics are against the unblurred image (default: 0, no blur)",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of the noise (default: 0)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        metavar="N",
        help="images of the same size per network pass (default: 1)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="arithmetic of the networks; auto (default) is float32 on every machine, "
        "which reproduces the published numbers; baselines always run in float64",
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="use only the first N images"
    )
    parser.add_argument("--json", metavar="OUT", help="write the full result (per-image values)")
    parser.add_argument("--csv", metavar="OUT", help="write the summary table as CSV")
    parser.add_argument(
        "--plot",
        metavar="OUT.png",
        help="write the generalization figure: output against input PSNR and SSIM, "
        "training ranges shaded",
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="run every model as a self-ensemble: the mean over the 8 flips and rotations "
        "of the noisy image (8 times the cost)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--no-progress", "--quiet", action="store_true", help="no progress bar")
    add_device_option(parser, default="cpu", what="the networks")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from .._files import check_output_paths
    from ..evaluation.runner import EvaluationOptions, evaluate_models, format_table

    if args.noise not in NOISE_CHOICES:
        raise InputError(
            f"unknown noise kind {args.noise!r}; choose from {', '.join(NOISE_CHOICES)}"
        )
    # Checked here too so that the messages name the flags; the library names parameters.
    check_output_paths(
        {"--json": args.json, "--csv": args.csv, "--plot": args.plot},
        overwrite=args.force,
        figures=("--plot",),
        in_use=read_paths(args),
    )
    options = EvaluationOptions(
        noise=args.noise,
        blur=parse_blur(args.blur),
        seed=args.seed,
        batch_size=args.batch_size,
        precision=args.precision,
        limit=args.limit,
        json_path=args.json,
        csv_path=args.csv,
        plot_path=args.plot,
        overwrite=args.force,
        progress=not args.no_progress,
        ensemble=args.ensemble,
        device=args.device,
    )
    sigmas = [s / 255.0 for s in _sigmas_255(args.sigmas)]
    result = evaluate_models(args.model, args.data, sigmas, options)
    protocol = result["protocol"]
    blur = f", blur {protocol['blur']:g} px" if protocol["blur"] else ""
    print(
        f"{protocol['num_images']} images from {protocol['data']}, {protocol['noise']} noise"
        f"{blur}, seed {protocol['seed']}, networks in {protocol['precision']}"
    )
    print(format_table(result))
    for path in (args.json, args.csv, args.plot):
        if path:
            print(f"wrote {path}")
    return 0
