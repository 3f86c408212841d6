"""``filterscope denoise INPUT -o OUTPUT``: blind denoising of one image file."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "denoise",
        help="denoise an image file (blind: no noise level needed)",
        description=(
            "Denoise a gray or RGB image (PNG, TIFF or JPEG; 8-bit, 16-bit or float TIFF) "
            "without knowing its noise level. The result has the input's mode and bit "
            "depth. Large images are processed in overlapping tiles, so memory stays bounded."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="noisy image file")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTPUT", help="output image file (.png/.tif/.jpg)"
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        default=None,
        help="shipped model name (see `filterscope models`) or checkpoint file path "
        "(default: the shipped model for the image's channel count)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite OUTPUT if it already exists"
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=512,
        metavar="N",
        help="tile side in pixels; larger images are processed tile by tile (default: 512)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=None,
        metavar="N",
        help="context in pixels added on each side of a tile and discarded afterwards "
        "(default: the model's receptive radius, or 32)",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default=None,
        help="arithmetic of the network (default: bfloat16 where the CPU runs it natively, "
        "else float32)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device to run the network on, e.g. cpu or cuda (default: cuda if "
        "available, else cpu)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..inference import denoise_file

    result = denoise_file(
        args.input,
        args.output,
        model=args.model,
        overwrite=args.force,
        tile=args.tile,
        overlap=args.overlap,
        precision=args.precision,
        device=args.device,
        progress=True,
    )
    height, width, channels = result["shape"]
    print(
        f"wrote {result['output']} ({width}x{height} pixels, {channels} channel(s), "
        f"{result['tiles']} tile(s), {result['precision']}, {result['seconds']:.1f} s)"
    )
    return 0
