"""``filterscope experiment generalization``: bias against bias-free, beyond the training range."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from ._common import add_device_option, add_trust_code_option


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "experiment",
        help="run one of the papers' experiments end to end",
        description="Run an experiment of the papers end to end: training, evaluation, "
        "table and figure.",
    )
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    experiments.required = True
    gen = experiments.add_parser(
        "generalization",
        help="train a DnCNN with and without bias on low noise, test on high noise",
        description="Train a DnCNN with additive bias and its bias-free twin on the same "
        "noise range (sigma in [0, 10], 0-255 scale), evaluate both on BSD68 at sigma "
        "10..100 and draw output against input PSNR/SSIM (Mohan et al., ICLR 2020, "
        "Figure 3). --quick: a small network, under 15 minutes on 2 CPU cores.",
    )
    gen.add_argument("--quick", action="store_true", help="small network (minutes, not hours)")
    gen.add_argument("--out", default="experiment_generalization", help="output folder")
    gen.add_argument(
        "--sigma-range",
        nargs=2,
        type=float,
        default=(0.0, 10.0),
        metavar=("LO", "HI"),
        help="training noise range of both networks, 0-255 scale (default: 0 10)",
    )
    gen.add_argument("--data-dir", default="../shared/data/BSD400", help="training images")
    gen.add_argument("--test-dir", default="../shared/data/BSD68", help="test images")
    gen.add_argument("--val-dir", default="../shared/data/Set12", help="validation images")
    gen.add_argument("--test-images", type=int, default=None, help="use the first N test images")
    gen.add_argument("--steps", type=int, default=None, help="training steps per network")
    gen.add_argument(
        "--baselines",
        default="",
        metavar="B1,B2",
        help="classical baselines to evaluate beside the networks, e.g. nlm,bm3d (default "
        "none: on all of BSD68, NLM adds about 6 minutes, BM3D about an hour)",
    )
    gen.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: 1 with --quick, so the run is reproducible bit for bit "
        "on a CPU; 0 = torch's default)",
    )
    gen.add_argument("--force", action="store_true", help="replace earlier results in --out")
    gen.add_argument("--no-progress", "--quiet", action="store_true", help="no progress bars")
    add_device_option(gen, what="training and evaluation")
    gen.set_defaults(run=run)

    rest = experiments.add_parser(
        "restoration",
        help="bias vs bias-free DnCNN on a grid of blur x noise levels (Figure 20)",
        description="Evaluate a DnCNN with bias and its bias-free twin, both trained on "
        "blur + noise (filterscope train --recipe recipes/cpu-restoration-dncnn.toml "
        "[--bias]), on a grid of Gaussian blur widths x noise levels; write the PSNR "
        "grid (JSON) and Figure 20 of Mohan et al. (ICLR 2020): the difference in PSNR "
        "as a heat map with the training region outlined, and the slice at one blur.",
    )
    rest.add_argument("--bias-model", required=True, metavar="M", help="network with bias")
    rest.add_argument("--bias-free-model", required=True, metavar="M", help="bias-free network")
    rest.add_argument("--test-dir", default="../shared/data/BSD68", help="test images")
    rest.add_argument("--out", default="experiment_restoration", help="output folder")
    rest.add_argument(
        "--sigmas", default=None, metavar="LIST", help="noise levels, 0-255: 10,30,50 or 10:100:10"
    )
    rest.add_argument("--blurs", default=None, metavar="LIST", help="blur widths, pixels")
    rest.add_argument("--slice-blur", type=float, default=2.0, help="blur of the right panel")
    rest.add_argument("--test-images", type=int, default=None, help="use the first N images")
    rest.add_argument("--force", action="store_true", help="replace earlier results in --out")
    rest.add_argument("--no-progress", "--quiet", action="store_true", help="no progress bars")
    add_device_option(rest, what="the networks")
    add_trust_code_option(rest)
    rest.set_defaults(run=run_restoration)
    return parser


def _blur_widths(text: str | None, default) -> tuple[float, ...]:
    if text is None:
        return tuple(default)
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--blurs: expected numbers separated by commas, got {text!r}") from None


def run_restoration(args: argparse.Namespace) -> int:
    from ..experiments.restoration import (
        DEFAULT_BLURS,
        DEFAULT_SIGMAS,
        format_grid,
        run_restoration_experiment,
    )
    from ._common import parse_sigmas

    grid = run_restoration_experiment(
        args.bias_model,
        args.bias_free_model,
        args.test_dir,
        args.out,
        sigmas_255=DEFAULT_SIGMAS if args.sigmas is None else parse_sigmas(args.sigmas),
        blurs=_blur_widths(args.blurs, DEFAULT_BLURS),
        test_images=args.test_images,
        slice_blur=args.slice_blur,
        overwrite=args.force,
        progress=not args.no_progress,
        device=args.device,
    )
    print(format_grid(grid))
    print(f"written: {args.out}/restoration.json, {args.out}/restoration.png")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..experiments.generalization import (
        OUTPUT_NAMES,
        existing_outputs,
        run_generalization_experiment,
    )

    existing = existing_outputs(args.out)
    if existing and not args.force:
        raise InputError(f"{existing[0]}: exists; use --force to replace it")

    outcome = run_generalization_experiment(
        args.out,
        quick=args.quick,
        sigma_range=tuple(args.sigma_range),
        data_dir=args.data_dir,
        test_dir=args.test_dir,
        val_dir=args.val_dir,
        test_images=args.test_images,
        baselines=[b.strip() for b in args.baselines.split(",") if b.strip()],
        steps=args.steps,
        threads=(1 if args.quick else 0) if args.threads is None else args.threads,
        overwrite=args.force,
        progress=not args.no_progress,
        device=args.device,
    )
    print(outcome["table"])
    gaps = ", ".join(f"{sigma:g}: {gap:+.2f}" for sigma, gap in outcome["gap_db"].items())
    print(f"PSNR(bias-free) - PSNR(bias) in dB by sigma: {gaps}")
    print("seconds: " + json.dumps({k: round(v) for k, v in outcome["seconds"].items()}))
    print(f"written: {', '.join(f'{args.out}/{name}' for name in OUTPUT_NAMES)}")
    return 0
