"""``filterscope ntk ...``: neural-tangent (and NLM) non-local filters without training.

``denoise`` (Nyström filter + twicing, in tiles beyond ``--max-gib``), ``eigenimages``
(Figure 1), ``filters`` (the weights around chosen pixels, Figure 2) and ``matrix`` (the
full kernel matrix of a small image), each a call of :mod:`filterscope.ntk`. σ is on
the 0–255 scale on the command line and in the JSON output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._files import check_output_paths
from ..errors import InputError
from ._common import options, parse_pixel, read_paths, read_tensor, write_json

#: Exact columns compared with the Nyström approximation by ``--nystrom-error``.
ERROR_COLUMNS = 32


def _stop(value: str):
    if value in ("sure", "sure-trace", "oracle"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--stop must be sure, sure-trace, oracle or a number of steps, not {value!r}"
        ) from None


#: Sub-command -> (help, input image, output).
SUBCOMMANDS = {
    "denoise": ("denoise an image with the NTK (or NLM) filter", "noisy image", "OUTPUT"),
    "eigenimages": ("the leading eigenimages of the filter", "image", "OUT.npy|FOLDER"),
    "filters": ("draw the filter weights around chosen pixels (Figure 2)", "image", "FIG.png"),
    "matrix": ("the full d x d kernel matrix (up to 64x64)", "image", "OUT.npy"),
}


def _sub(sub, name: str, run, *, kernel: int = 11):
    """A sub-command with its input image, ``-o``, the kernel's architecture and --force."""
    help, image, output = SUBCOMMANDS[name]
    p = sub.add_parser(name, help=help)
    p.add_argument("input", metavar="INPUT", help=image)
    p.add_argument("-o", "--output", required=True, metavar=output, help="output file")
    p.set_defaults(run=run)
    p.add_argument("--depth", type=int, default=2, metavar="L", help="convolution layers L (2)")
    p.add_argument(
        "--kernel", type=int, default=kernel, metavar="r", help=f"kernel side ({kernel})"
    )
    p.add_argument(
        "--output-kernel",
        default="1",
        metavar="1|r",
        help="output layer kernel: 1 (equation 16, default) or r (same as the hidden layers)",
    )
    p.add_argument("--padding", choices=("circular", "zero"), default="circular", help="padding")
    p.add_argument(
        "--input", choices=("image", "noise"), default="image", dest="net_input", help="net input"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    if name in ("denoise", "filters"):
        p.add_argument("--method", choices=("ntk", "nlm"), default="ntk", help="filter (ntk)")
        p.add_argument("--sigma", type=float, help="noise std, 0-255 scale (NLM: h = sigma/2)")
    if name in ("denoise", "eigenimages"):
        p.add_argument("--json", metavar="OUT", help="write a JSON report")
    return p


def _nystrom(p: argparse.ArgumentParser, *, error: bool = False) -> None:
    """The options of the Nyström approximation of the filter."""
    columns = "fraction of pixels used as Nyström columns, in (0, 1] (default 0.02)"
    p.add_argument("--columns", type=float, default=0.02, metavar="FRACTION", help=columns)
    p.add_argument("--seed", type=int, default=0, help="seed of the column positions")
    precision = (
        "Nyström product: int8 patch products, float32 (single) or float64; auto (default): "
        "int8 only where this CPU multiplies int8 fast (VNNI, AMX), else single"
    )
    p.add_argument("--precision", default="auto", metavar="auto|int8|single|double", help=precision)
    if error:
        what = f"the Nyström error: {ERROR_COLUMNS} exact columns against the low-rank filter"
        p.add_argument("--nystrom-error", action="store_true", help=what)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ntk",
        help="neural-tangent non-local filters (closed form, Nyström, twicing)",
        description="Non-local filters given in closed form by a CNN's neural tangent kernel.",
    )
    sub = parser.add_subparsers(dest="ntk_command", metavar="SUBCOMMAND")
    sub.required = True

    den = _sub(sub, "denoise", run_denoise)
    den.add_argument("--clean", default=None, metavar="CLEAN", help="clean image (oracle, PSNR)")
    _nystrom(den, error=True)
    den.add_argument("--rank", type=int, default=64, help="leading eigenpairs kept (default 64)")
    rule = "stopping rule, or twicing steps >= 1 (default: oracle with --clean, else sure)"
    stops = "sure|sure-trace|oracle|STEPS"
    den.add_argument("--stop", type=_stop, metavar=stops, help=rule)
    den.add_argument(
        "--normalize", choices=("max", "row", "sinkhorn", "none"), help="default: ntk max, nlm row"
    )
    budget = "memory budget, GiB (default 4); larger images are denoised in overlapping tiles"
    den.add_argument("--max-gib", type=float, default=4.0, help=budget)

    eig = _sub(sub, "eigenimages", run_eigenimages)
    eig.add_argument("-n", "--count", type=int, default=8, help="eigenimages (default 8)")
    _nystrom(eig, error=True)
    eig.add_argument("--plot", default=None, metavar="FIG.png", help="also draw them (Figure 1)")

    fil = _sub(sub, "filters", run_filters)
    fil.add_argument(
        "--pixels",
        nargs="+",
        required=True,
        metavar="X,Y",
        help="pixels as x,y = column,row (as image tools count), e.g. 100,60 40,200",
    )
    _nystrom(fil)
    fil.add_argument("--window", type=int, default=None, help="show a WINDOW x WINDOW crop")
    fil.add_argument(
        "--steps", type=float, default=None, metavar="T", help="the filter I - (I - W)^T, not W"
    )

    mat = _sub(sub, "matrix", run_matrix, kernel=3)
    mat.add_argument("--kind", choices=("ntk", "nngp"), default="ntk", help="NTK or NNGP kernel")
    return parser


def _arch(args: argparse.Namespace) -> dict:
    """The architecture options of :class:`filterscope.ntk.kernels.CNNKernel`."""
    output_kernel = args.kernel if args.output_kernel == "r" else args.output_kernel
    try:
        output_kernel = int(output_kernel)
    except ValueError:
        raise InputError(f"--output-kernel must be 1 or r, got {args.output_kernel!r}") from None
    arch = dict(depth=args.depth, kernel_size=args.kernel, output_kernel=output_kernel)
    return arch | dict(padding=args.padding, input=args.net_input)


def _sigma(args: argparse.Namespace) -> float | None:
    return None if args.sigma is None else args.sigma / 255.0


def run_denoise(args: argparse.Namespace) -> int:
    from ..io import check_output_path, write_image
    from ..ntk.reports import denoise_image

    check_output_paths(
        {"-o": args.output, "--json": args.json},
        overwrite=args.force,
        in_use=read_paths(args),
    )
    y, input_info = read_tensor(args.input, with_info=True)
    # Written as `denoise` writes: the input's bit depth, colour profile and metadata.
    out_dtype = check_output_path(
        args.output, overwrite=args.force, dtype=input_info.dtype, channels=input_info.channels
    )
    result = denoise_image(
        y[0],
        sigma=_sigma(args),
        clean=read_tensor(args.clean)[0] if args.clean else None,
        stop=args.stop,  # None: the default rule; a number of steps (>= 1, checked there)
        error_columns=ERROR_COLUMNS * args.nystrom_error,
        max_bytes=int(args.max_gib * 2**30),
        **options(args, "method", "columns", "rank", "normalize", "seed", "precision"),
        **_arch(args),
    )
    image = result.x_hat.permute(1, 2, 0).numpy()
    metadata = input_info.metadata
    write_image(args.output, image, dtype=out_dtype, overwrite=args.force, metadata=metadata)
    if args.json:
        write_json(args.json, {"input": args.input, "output": args.output} | result.to_json())
    print(f"wrote {args.output} ({result.summary()})")
    return 0


def run_eigenimages(args: argparse.Namespace) -> int:
    from ..ntk.denoiser import filter_basis
    from ..ntk.reports import basis_report, eigenimage_paths, nystrom_error_text, save_eigenimages

    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    out = Path(args.output)
    files = eigenimage_paths(out, args.count).items()  # PNGs of a new folder: nothing to check
    outputs = {f"-o ({role})": path for role, path in files if path.parent.is_dir()}
    check_output_paths(
        outputs | {"--plot": args.plot, "--json": args.json},
        overwrite=args.force,
        figures=("--plot",),
        in_use=read_paths(args),
    )
    basis = filter_basis(
        read_tensor(args.input)[0],
        error_columns=ERROR_COLUMNS * args.nystrom_error,
        **options(args, "columns", "seed", "precision"),
        **_arch(args),
    )
    count = save_eigenimages(basis, out, args.count)
    if args.plot:
        from ..plotting.ntk import plot_eigenimages

        title = f"{Path(args.input).name}: leading eigenimages of the NTK filter"
        plot_eigenimages(basis.eigenimages(args.count), basis.eigvals, args.plot, title=title)
        print(f"wrote {args.plot}")
    if args.json:
        write_json(args.json, {"input": str(args.input)} | basis_report(basis))
    print(f"wrote {count} eigenimages to {out}{nystrom_error_text(basis.info)}")
    return 0


def run_filters(args: argparse.Namespace) -> int:
    from ..ntk.reports import filter_rows
    from ..plotting.ntk import plot_filter_rows

    if args.window is not None and args.window < 1:
        raise InputError(f"--window must be positive, got {args.window}")
    check_output_paths(
        {"-o": args.output}, overwrite=args.force, figures=("-o",), in_use=read_paths(args)
    )
    y = read_tensor(args.input)[0]
    pixels = [parse_pixel(text) for text in args.pixels]
    names = ("method", "columns", "steps", "seed", "precision")
    rows = filter_rows(y, pixels, sigma=_sigma(args), **options(args, *names), **_arch(args))
    what = "W" if args.steps is None else f"I - (I - W)^{args.steps:g}"
    title = f"{args.method.upper()} filter rows ({what})"
    plot_filter_rows(y, rows, pixels, args.output, window=args.window, title=title)
    print(f"wrote {args.output}")
    return 0


def run_matrix(args: argparse.Namespace) -> int:
    import numpy as np

    from ..ntk.kernels import kernel_matrix

    out = Path(args.output)
    if out.suffix != ".npy":
        raise InputError(f"{out}: the matrix is written as .npy")
    check_output_paths({"-o": out}, overwrite=args.force, in_use=read_paths(args))
    matrix = kernel_matrix(read_tensor(args.input)[0], kind=args.kind, **_arch(args))
    np.save(out, matrix.numpy())
    print(f"wrote {out} ({matrix.shape[0]}x{matrix.shape[1]}, {args.kind})")
    return 0
