"""``filterscope experiment generalization``: bias against bias-free, beyond the training range."""

from __future__ import annotations

import argparse
import json

from ..experiments.generalization import OUTPUT_NAMES, run_generalization_experiment


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
        "--sigma-range", nargs=2, type=float, default=(0.0, 10.0), metavar=("LO", "HI")
    )
    gen.add_argument("--data-dir", default="../shared/data/BSD400", help="training images")
    gen.add_argument("--test-dir", default="../shared/data/BSD68", help="test images")
    gen.add_argument("--val-dir", default="../shared/data/Set12", help="validation images")
    gen.add_argument("--test-images", type=int, default=None, help="use the first N test images")
    gen.add_argument("--steps", type=int, default=None, help="training steps per network")
    gen.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    gen.add_argument("--force", action="store_true", help="replace earlier results in --out")
    gen.add_argument("--no-progress", action="store_true")
    gen.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    outcome = run_generalization_experiment(
        args.out,
        quick=args.quick,
        sigma_range=tuple(args.sigma_range),
        data_dir=args.data_dir,
        test_dir=args.test_dir,
        val_dir=args.val_dir,
        test_images=args.test_images,
        steps=args.steps,
        threads=args.threads,
        overwrite=args.force,
        progress=not args.no_progress,
    )
    print(outcome["table"])
    gaps = ", ".join(f"{sigma:g}: {gap:+.2f}" for sigma, gap in outcome["gap_db"].items())
    print(f"PSNR(bias-free) - PSNR(bias) in dB by sigma: {gaps}")
    print("seconds: " + json.dumps({k: round(v) for k, v in outcome["seconds"].items()}))
    print(f"written: {', '.join(f'{args.out}/{name}' for name in OUTPUT_NAMES)}")
    return 0
