"""``filterscope denoise INPUT... -o OUTPUT``: denoising of image files and folders."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import InputError
from ._common import add_device_option, add_trust_code_option


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "denoise",
        help="denoise image files or folders (blind: no noise level needed)",
        description=(
            "Denoise gray or RGB images (PNG, TIFF or JPEG; 8-bit, 16-bit or float TIFF) "
            "without knowing their noise level. Each result has its input's mode, bit "
            "depth, colour profile, resolution and EXIF; photos are turned upright by "
            "their EXIF orientation. Large images are processed in overlapping tiles, so "
            "memory stays bounded. With several inputs or a folder, OUTPUT is a folder "
            "(made if missing) that receives each result under its input's name; a file "
            "that fails is reported by name and the others go on (exit status 2 if any "
            "failed). A colour model is refused on gray images; a gray model denoises "
            "each channel of an RGB image separately."
        ),
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="noisy image file, or folder of images (not searched recursively)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="output image file (.png/.tif/.jpg) for one input file; otherwise a folder",
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        default=None,
        help="a model of `filterscope models` (shipped name, bm3d, nlm, ntk...), a "
        "checkpoint file path, or a Python object path package.module:attribute "
        "(default: the shipped model for each image's channel count)",
    )
    add_trust_code_option(parser)
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        metavar="S",
        help="noise level of the inputs on the 0-255 scale, given to the model: a model "
        "with a noise-level input (drunet) becomes non-blind; blind models (dncnn) "
        "ignore it (default: not given, blind)",
    )
    parser.add_argument(
        "--noise-type",
        choices=("auto", "gaussian", "real"),
        default="auto",
        help="with no --model: 'real' takes the shipped real-camera-noise model "
        "(bf-drunet-color-real, bf-drunet-gray-real), 'gaussian' the default, 'auto' chooses "
        "per image by how much more noise the real model's noise-map estimator sees than a "
        "white-noise estimate (a given --sigma means Gaussian). The choice is printed "
        "and in --json (default: auto)",
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="average the model over the 8 flips and rotations of each image "
        "(self-ensemble): a little better, 8 times slower",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite output files (and --json) that exist"
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help="write a JSON summary per file: size, tiles, seconds, estimated noise level "
        "of the input (0-255 scale), for a model with a noise-map estimator the mean, "
        "min and max of the map its network was fed (noise_map_255), or the error",
    )
    parser.add_argument(
        "--save-noise-map",
        metavar="FILE",
        default=None,
        help="write the noise map the model's network was fed (one input image; "
        "models with a noise-map estimator) as an image whose intensity is the noise "
        "level: in an 8-bit file, pixel value 10 = sigma 10 on the 0-255 scale",
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
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="arithmetic of the network (default auto: bfloat16 where the CPU or GPU runs "
        "it natively, else float32; `filterscope info` shows which)",
    )
    add_device_option(parser)
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars and no line per file written (errors and warnings still shown)",
    )
    parser.set_defaults(run=run)
    return parser


def _describe(record: dict) -> str:
    chosen = ""
    if "noise_type" in record:
        chosen = f", {record['model']} for {record['noise_type']} noise"
    return (
        f"wrote {record['output']} ({record['width']}x{record['height']} pixels, "
        f"{record['channels']} channel(s), {record['tiles']} tile(s), {record['precision']}"
        f"{chosen}, {record['seconds']:.1f} s)"
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .._files import check_output_paths
    from ..inference import DenoiseOptions, denoise_files, plan_outputs
    from ._common import cli_message, read_paths, write_json

    if args.sigma is not None and not 0 <= args.sigma <= 255:
        raise InputError(f"--sigma must be from 0 to 255 (0-255 scale), got {args.sigma:g}")
    pairs, _ = plan_outputs(args.inputs, args.output)
    in_use = read_paths(args) | {"an output image": [target for _, target in pairs]}
    if args.save_noise_map is not None and len(pairs) != 1:
        raise InputError(f"--save-noise-map: takes one input image, got {len(pairs)}")
    check_output_paths(
        {"--json": args.json, "--save-noise-map": args.save_noise_map},
        overwrite=args.force,
        in_use=in_use,
    )

    def report(record: dict) -> None:
        # tqdm.write keeps the lines clear of a running progress bar.
        if record["status"] == "failed":
            tqdm.write(f"filterscope: error: {cli_message(record['error'])}", file=sys.stderr)
        elif not args.quiet:
            tqdm.write(_describe(record), file=sys.stdout)

    start = time.perf_counter()
    options = DenoiseOptions(
        model=args.model,
        sigma=None if args.sigma is None else args.sigma / 255.0,
        ensemble=args.ensemble,
        overwrite=args.force,
        tile=args.tile,
        overlap=args.overlap,
        precision=args.precision,
        device=args.device,
        progress=not args.quiet,
        estimate_noise=args.json is not None,
        noise_map_path=args.save_noise_map,
        noise_type=args.noise_type,
    )
    records = denoise_files(args.inputs, args.output, options, on_result=report)
    failed = sum(record["status"] == "failed" for record in records)
    if args.json is not None:
        write_json(
            args.json,
            {
                "model": args.model,
                "sigma_255": args.sigma,
                "ensemble": args.ensemble,
                "images": len(records),
                "failed": failed,
                "seconds": time.perf_counter() - start,
                "files": records,
            },
        )
    if failed and len(records) > 1:
        print(
            f"filterscope: {failed} of {len(records)} images failed (listed above)",
            file=sys.stderr,
        )
    return 2 if failed else 0
