"""``filterscope ntk ...``: neural-tangent (and NLM) non-local filters without training.

- ``ntk denoise INPUT --sigma 25 -o OUTPUT``: Nyström filter + twicing.
- ``ntk eigenimages INPUT -o FOLDER``: the leading eigenimages of the filter (Figure 1).
- ``ntk filters INPUT --pixels ROW,COL ... -o FIG.png``: the filter weights around
  chosen pixels (Figure 2).
- ``ntk matrix INPUT -o OUT.npy``: the full ``d × d`` kernel matrix of a small image.

σ is on the 0–255 scale on the command line and in the JSON output.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .._files import check_output_paths
from ..errors import InputError

#: Exact columns compared with the Nyström approximation by ``--nystrom-error``.
ERROR_COLUMNS = 32


def _stop(value: str):
    if value in ("sure", "sure-trace", "oracle"):
        return value
    try:
        steps = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--stop must be sure, sure-trace, oracle or a number of steps, not {value!r}"
        ) from None
    return steps


def _architecture(parser: argparse.ArgumentParser, *, depth: int = 2, kernel: int = 11) -> None:
    parser.add_argument(
        "--depth",
        type=int,
        default=depth,
        metavar="L",
        help=f"convolution layers L (2 = one hidden layer; default {depth})",
    )
    parser.add_argument(
        "--kernel", type=int, default=kernel, metavar="r", help=f"kernel side r (default {kernel})"
    )
    parser.add_argument(
        "--output-kernel",
        default="1",
        metavar="1|r",
        help="output layer kernel: 1 (equation 16, default) or r (same as the hidden layers)",
    )
    parser.add_argument("--padding", choices=("circular", "zero"), default="circular")
    parser.add_argument("--input", choices=("image", "noise"), default="image", dest="net_input")


def _precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=("int8", "single", "double"),
        default="int8",
        help="arithmetic of the Nyström product: int8 patch products (default, fastest), "
        "float32, or float64 (reference)",
    )


def _nystrom_error_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nystrom-error",
        action="store_true",
        help=f"report the Nyström approximation error: {ERROR_COLUMNS} exact columns at "
        "random pixels against the low-rank filter (relative Frobenius error)",
    )


def _error_text(info: dict) -> str:
    error = info.get("nystrom_error")
    if error is None:
        return ""
    return (
        f"; Nyström error {error['relative_frobenius']:.3g} (relative Frobenius, "
        f"{error['num_test']} exact columns)"
    )


def _output_kernel(args) -> int:
    if args.output_kernel == "r":
        return args.kernel
    try:
        return int(args.output_kernel)
    except ValueError:
        raise InputError(f"--output-kernel must be 1 or r, got {args.output_kernel!r}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ntk",
        help="neural-tangent non-local filters (closed form, Nyström, twicing)",
        description="Non-local filters given in closed form by a CNN's neural tangent kernel.",
    )
    sub = parser.add_subparsers(dest="ntk_command", metavar="SUBCOMMAND")
    sub.required = True

    den = sub.add_parser("denoise", help="denoise an image with the NTK (or NLM) filter")
    den.add_argument("input", metavar="INPUT", help="noisy image file")
    den.add_argument("-o", "--output", required=True, metavar="OUTPUT")
    den.add_argument("--sigma", type=float, default=None, help="noise std on the 0-255 scale")
    den.add_argument("--clean", default=None, metavar="CLEAN", help="clean image (oracle, PSNR)")
    _architecture(den)
    den.add_argument(
        "--columns",
        type=float,
        default=0.02,
        metavar="FRACTION",
        help="fraction of pixels used as Nyström columns, in (0, 1] (default 0.02)",
    )
    den.add_argument("--rank", type=int, default=64, help="leading eigenpairs kept (default 64)")
    den.add_argument(
        "--stop",
        type=_stop,
        default=None,
        metavar="sure|sure-trace|oracle|STEPS",
        help="stopping rule (default: oracle with --clean, else sure)",
    )
    den.add_argument("--method", choices=("ntk", "nlm"), default="ntk")
    den.add_argument("--normalize", choices=("max", "row", "sinkhorn", "none"), default=None)
    den.add_argument("--seed", type=int, default=0, help="seed of the column positions")
    _precision(den)
    _nystrom_error_flag(den)
    den.add_argument("--json", default=None, metavar="OUT", help="write a JSON report")
    den.add_argument("--force", action="store_true", help="overwrite OUTPUT and the JSON report")
    den.set_defaults(run=run_denoise)

    eig = sub.add_parser("eigenimages", help="write the leading eigenimages of the filter")
    eig.add_argument("input", metavar="INPUT")
    eig.add_argument("-o", "--output", required=True, metavar="OUT", help=".npy or a folder")
    eig.add_argument("-n", "--count", type=int, default=8, help="eigenimages (default 8)")
    _architecture(eig)
    eig.add_argument("--columns", type=float, default=0.02, metavar="FRACTION")
    eig.add_argument("--seed", type=int, default=0)
    _precision(eig)
    _nystrom_error_flag(eig)
    eig.add_argument(
        "--plot", default=None, metavar="FIG.png", help="also draw them (Figure 1) into FIG.png"
    )
    eig.add_argument(
        "--json",
        default=None,
        metavar="OUT",
        help="write the eigenvalues, rank, columns and timings (and the Nyström error)",
    )
    eig.add_argument("--force", action="store_true", help="overwrite existing outputs")
    eig.set_defaults(run=run_eigenimages)

    fil = sub.add_parser("filters", help="draw the filter weights around chosen pixels (Figure 2)")
    fil.add_argument("input", metavar="INPUT", help="(noisy) image file")
    fil.add_argument("-o", "--output", required=True, metavar="FIG.png")
    fil.add_argument(
        "--pixels",
        nargs="+",
        required=True,
        metavar="ROW,COL",
        help="pixels whose filter rows are drawn, e.g. --pixels 60,100 200,40",
    )
    _architecture(fil)
    fil.add_argument("--method", choices=("ntk", "nlm"), default="ntk")
    fil.add_argument("--sigma", type=float, default=None, help="noise std 0-255 (NLM: h = σ/2)")
    fil.add_argument(
        "--columns",
        type=float,
        default=0.02,
        metavar="FRACTION",
        help="Nyström column fraction in (0, 1]; 1 on images up to 64x64 uses the full matrix",
    )
    fil.add_argument("--seed", type=int, default=0)
    _precision(fil)
    fil.add_argument(
        "--window", type=int, default=None, help="show a WINDOW x WINDOW crop around each pixel"
    )
    fil.add_argument(
        "--steps",
        type=float,
        default=None,
        metavar="T",
        help="draw the twicing filter I - (I - W)^T instead of W",
    )
    fil.add_argument("--force", action="store_true", help="overwrite FIG.png")
    fil.set_defaults(run=run_filters)

    mat = sub.add_parser("matrix", help="write the full d x d kernel matrix (up to 64x64)")
    mat.add_argument("input", metavar="INPUT")
    mat.add_argument("-o", "--output", required=True, metavar="OUT.npy")
    _architecture(mat, depth=2, kernel=3)
    mat.add_argument("--kind", choices=("ntk", "nngp"), default="ntk")
    mat.add_argument("--force", action="store_true", help="overwrite OUT.npy")
    mat.set_defaults(run=run_matrix)
    return parser


def _read(path, *, with_info: bool = False):
    """(C, H, W) float64 tensor of an image file; with its ImageInfo when asked."""
    import numpy as np
    import torch

    from ..io import read_image

    image, info = read_image(path)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).double()
    return (tensor, info) if with_info else tensor


def _arch_kwargs(args) -> dict:
    if args.depth < 2:
        raise InputError(f"--depth must be at least 2 (one hidden layer), got {args.depth}")
    return dict(
        depth=args.depth,
        kernel_size=args.kernel,
        output_kernel=_output_kernel(args),
        padding=args.padding,
        input=args.net_input,
    )


def run_denoise(args: argparse.Namespace) -> int:
    from ..io import check_output_path, write_image
    from ..metrics import psnr
    from ..ntk.denoiser import denoise

    if args.sigma is not None and (math.isnan(args.sigma) or args.sigma <= 0):
        raise InputError(f"--sigma must be positive (0-255 scale), got {args.sigma}")
    if not 0 < args.columns <= 1:
        raise InputError(f"--columns must be in (0, 1], got {args.columns}")
    if args.rank < 1:
        raise InputError(f"--rank must be at least 1, got {args.rank}")
    stop = args.stop or ("oracle" if args.clean else "sure")
    check_output_path(args.output, overwrite=args.force)
    check_output_paths({"-o": args.output, "--json": args.json}, overwrite=args.force, figures=())
    y, input_info = _read(args.input, with_info=True)
    # Written as `denoise` writes: the input's bit depth, colour profile and metadata.
    out_dtype = check_output_path(
        args.output, overwrite=args.force, dtype=input_info.dtype, channels=input_info.channels
    )
    clean = _read(args.clean) if args.clean else None
    if clean is not None and clean.shape != y.shape:
        raise InputError(f"{args.clean}: shape {tuple(clean.shape)} differs from the input's")
    sigma = None if args.sigma is None else args.sigma / 255.0
    options = _arch_kwargs(args)
    if args.method == "nlm":
        options = {"kernel_size": args.kernel, "padding": args.padding}
    x_hat, info = denoise(
        y,
        sigma=sigma,
        clean=clean,
        stop=stop,
        method=args.method,
        columns=args.columns,
        rank=args.rank,
        normalize=args.normalize,
        seed=args.seed,
        precision=args.precision,
        error_columns=ERROR_COLUMNS if args.nystrom_error else 0,
        **options,
    )
    write_image(
        args.output,
        x_hat.permute(1, 2, 0).numpy(),
        dtype=out_dtype,
        overwrite=args.force,
        metadata=input_info.metadata,
    )
    report = {
        "input": str(args.input),
        "output": str(args.output),
        "sigma_255": args.sigma,
        "method": args.method,
        **{k: v for k, v in info.items() if isinstance(v, (int, float, str)) or v is None},
    }
    if "nystrom_error" in info:
        report["nystrom_error"] = info["nystrom_error"]
    if clean is not None:
        report["psnr"] = float(psnr(x_hat[None].float(), clean[None].float()))
    if args.json:
        _write_json(args.json, report)
    psnr_text = f", PSNR {report['psnr']:.2f} dB" if "psnr" in report else ""
    print(
        f"wrote {args.output} (t = {info['t']:.4g}, stop {info['stop']}, rank {info['rank']}, "
        f"{info['seconds']:.1f} s{psnr_text}{_error_text(info)})"
    )
    return 0


def run_eigenimages(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io import write_image
    from ..ntk.denoiser import filter_basis

    if not 0 < args.columns <= 1:
        raise InputError(f"--columns must be in (0, 1], got {args.columns}")
    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    out = Path(args.output)
    _check_eigenimage_outputs(out, args)
    y = _read(args.input)
    basis = filter_basis(
        y,
        columns=args.columns,
        seed=args.seed,
        precision=args.precision,
        error_columns=ERROR_COLUMNS if args.nystrom_error else 0,
        **_arch_kwargs(args),
    )
    images = basis.eigenimages(args.count).numpy()
    if out.suffix == ".npy":
        np.save(out, images)
        np.save(_eigvals_path(out), basis.eigvals[: len(images)].numpy())
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            span = max(abs(img.min()), abs(img.max())) or 1.0
            write_image(out / f"eigenimage_{i:02d}.png", 0.5 + 0.5 * img / span, overwrite=True)
    if args.plot:
        from ..plotting.ntk import plot_eigenimages

        plot_eigenimages(
            basis.eigenimages(args.count),
            basis.eigvals,
            args.plot,
            title=f"{Path(args.input).name}: leading eigenimages of the NTK filter",
        )
        print(f"wrote {args.plot}")
    if args.json:
        report = {
            "input": str(args.input),
            "eigenvalues": basis.eigvals.tolist(),
            **{k: v for k, v in basis.info.items() if isinstance(v, (int, float, str, dict))},
            "rank": basis.rank,
        }
        _write_json(args.json, report)
    print(f"wrote {len(images)} eigenimages to {out}{_error_text(basis.info)}")
    return 0


def _eigvals_path(out: Path) -> Path:
    return out.with_name(out.stem + "_eigvals.npy")


def _check_eigenimage_outputs(out: Path, args: argparse.Namespace) -> None:
    """Every file ``ntk eigenimages`` would write is writable and, without --force, new."""
    outputs: dict = {"--plot": args.plot, "--json": args.json}
    if out.suffix == ".npy":
        outputs = {"-o": out, "-o (eigenvalues)": _eigvals_path(out), **outputs}
    elif out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; give a folder or a .npy file for -o")
    elif not out.parent.is_dir():
        raise InputError(f"{out.parent}: output folder does not exist (-o)")
    elif out.is_dir():  # a new folder is made; an existing one may hold earlier eigenimages
        names = [f"eigenimage_{i:02d}.png" for i in range(args.count)]
        outputs.update({f"-o ({name})": out / name for name in names})
    check_output_paths(outputs, overwrite=args.force)


def _write_json(path: str, report: dict) -> None:
    from .._files import atomic_write

    text = json.dumps(report, indent=2) + "\n"
    atomic_write(path, lambda name: Path(name).write_text(text))


def _pixel(text: str, height: int, width: int) -> tuple[int, int]:
    try:
        row, col = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--pixels takes ROW,COL pairs, got {text!r}") from None
    if not (0 <= row < height and 0 <= col < width):
        raise InputError(f"pixel {text} lies outside the {width}x{height} image")
    return row, col


def run_filters(args: argparse.Namespace) -> int:
    from ..ntk.denoiser import filter_basis
    from ..ntk.kernels import MAX_MATRIX_PIXELS
    from ..plotting.ntk import plot_filter_rows

    if not 0 < args.columns <= 1:
        raise InputError(f"--columns must be in (0, 1], got {args.columns}")
    if args.sigma is not None and (math.isnan(args.sigma) or args.sigma <= 0):
        raise InputError(f"--sigma must be positive (0-255 scale), got {args.sigma}")
    if args.method == "nlm" and args.sigma is None:
        raise InputError("the NLM filter needs --sigma (its bandwidth is h = sigma/2)")
    if args.window is not None and args.window < 1:
        raise InputError(f"--window must be positive, got {args.window}")
    if args.steps is not None and not args.steps >= 0:
        raise InputError(f"--steps must be >= 0, got {args.steps}")
    check_output_paths({"-o": args.output}, overwrite=args.force, figures=("-o",))
    y = _read(args.input)
    _, height, width = y.shape
    pixels = [_pixel(text, height, width) for text in args.pixels]
    options = _arch_kwargs(args)
    if args.method == "nlm":
        options = {"kernel_size": args.kernel, "padding": args.padding}
    full = args.columns == 1 and height * width <= MAX_MATRIX_PIXELS
    basis = filter_basis(
        y,
        method=args.method,
        sigma=None if args.sigma is None else args.sigma / 255.0,
        columns=None if full else args.columns,
        seed=args.seed,
        precision=args.precision,
        **options,
    )
    what = "W" if args.steps is None else f"I - (I - W)^{args.steps:g}"
    plot_filter_rows(
        y,
        basis.rows(pixels, t=args.steps),
        pixels,
        args.output,
        window=args.window,
        title=f"{args.method.upper()} filter rows ({what})",
    )
    print(f"wrote {args.output}")
    return 0


def run_matrix(args: argparse.Namespace) -> int:
    import numpy as np

    from ..ntk.kernels import kernel_matrix

    out = Path(args.output)
    if out.suffix != ".npy":
        raise InputError(f"{out}: the matrix is written as .npy")
    check_output_paths({"-o": out}, overwrite=args.force, figures=())
    y = _read(args.input)
    matrix = kernel_matrix(y, kind=args.kind, **_arch_kwargs(args))
    np.save(out, matrix.numpy())
    print(f"wrote {out} ({matrix.shape[0]}x{matrix.shape[1]}, {args.kind})")
    return 0
