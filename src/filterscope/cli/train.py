"""``filterscope train --recipe FILE``: train a denoiser from a recipe."""

from __future__ import annotations

import argparse
import os

from ..errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a denoiser from a TOML recipe (see recipes/)",
        description="Train a denoiser. Options given here override the recipe; the "
        "resolved recipe is saved as RUN_DIR/recipe.toml. Noise levels use the 0-255 "
        "scale. Under `torchrun --nproc_per_node=N` the same command trains with "
        "DistributedDataParallel (gloo on CPU, NCCL on GPU).",
    )
    parser.add_argument(
        "--recipe",
        default=None,
        help="TOML recipe file (with --resume, defaults to the run's own recipe.toml)",
    )
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    parser.add_argument(
        "--arch",
        default=None,
        help="architecture (dncnn, drunet, rcnn, unet, sdensenet), or a Python object path "
        "package.module:attribute naming your nn.Module class or factory",
    )
    bias = parser.add_mutually_exclusive_group()
    bias.add_argument(
        "--bias", dest="bias", action="store_true", default=None, help="keep additive constants"
    )
    bias.add_argument(
        "--bias-free", dest="bias", action="store_false", help="remove every additive constant"
    )
    parser.add_argument(
        "--sigma-range",
        nargs=2,
        type=float,
        default=None,
        metavar=("LO", "HI"),
        help="training noise range, 0-255 scale",
    )
    parser.add_argument(
        "--noise",
        choices=("gaussian", "uniform", "correlated", "poisson-gaussian", "camera"),
        default=None,
        help='noise model (a per-patch mixture: --set \'noise=["gaussian", "camera"]\' '
        "with noise_weights)",
    )
    parser.add_argument(
        "--blur-range",
        nargs=2,
        type=float,
        default=None,
        metavar=("LO", "HI"),
        help="Gaussian blur width (pixels) drawn per patch before the noise",
    )
    parser.add_argument("--steps", type=int, default=None, help="number of optimizer steps")
    parser.add_argument(
        "--epochs", type=float, default=None, help="run length in epochs (needs epoch_patches)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="global batch size")
    parser.add_argument("--patch-size", type=int, default=None, help="training patch side")
    parser.add_argument("--lr", type=float, default=None, help="initial learning rate")
    parser.add_argument("--data-dir", default=None, help="folder of training images")
    parser.add_argument("--val-dir", default=None, help="folder of validation images")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="where to train (default: the recipe's, auto = cuda if available)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default=None,
        help="bfloat16: forward pass under bfloat16 autocast (float32 weights and optimizer); "
        "auto (recipes' default): bfloat16 only where this CPU or GPU runs it natively",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (0 = default)")
    parser.add_argument("--seed", type=int, default=None, help="seed of weights and patches")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any recipe key (TOML value), e.g. --set lr_schedule=plateau; repeatable",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR where it stopped"
    )
    parser.add_argument("--no-progress", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..training import load_recipe, train
    from ..training.config import parse_assignments
    from ..training.trainer import RECIPE_NAME

    named = dict(
        arch=args.arch,
        bias=args.bias,
        sigma_range=list(args.sigma_range) if args.sigma_range else None,
        noise=args.noise,
        blur_range=list(args.blur_range) if args.blur_range else None,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        data_dir=args.data_dir,
        val_dir=args.val_dir,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        seed=args.seed,
    )
    overrides = parse_assignments(args.assignments)
    overrides.update({key: value for key, value in named.items() if value is not None})
    recipe = args.recipe
    if recipe is None:
        if not args.resume:
            raise InputError("--recipe: a recipe file is needed (see recipes/)")
        recipe = os.path.join(args.out, RECIPE_NAME)
    config = load_recipe(recipe, **overrides)
    result = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    scores = ", ".join(f"{k} {v:.2f}" for k, v in result["validation"].items())
    print(
        f"trained {result['step']} steps in {result['seconds']:.0f} s "
        f"({result['pixels_per_s']:.0f} training pixels/s); {scores}"
    )
    print(f"model written to {args.out}/model.safetensors (card: model.json)")
    return 0
