"""``filterscope train --recipe FILE``: train a denoiser from a recipe."""

from __future__ import annotations

import argparse

from ..training import load_recipe, train


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a denoiser from a TOML recipe (see recipes/)",
        description="Train a denoiser. Options given here override the recipe; the "
        "resolved recipe is saved as OUT/config.json. Noise levels use the 0-255 scale.",
    )
    parser.add_argument("--recipe", required=True, help="TOML recipe file")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    parser.add_argument("--arch", default=None, help="architecture (dncnn, rcnn, unet, sdensenet)")
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
    parser.add_argument("--steps", type=int, default=None, help="number of optimizer steps")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--data-dir", default=None, help="folder of training images")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR where it stopped"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    config = load_recipe(
        args.recipe,
        arch=args.arch,
        bias=args.bias,
        sigma_range=list(args.sigma_range) if args.sigma_range else None,
        steps=args.steps,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        seed=args.seed,
    )
    result = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    scores = ", ".join(f"{k} {v:.2f}" for k, v in result["validation"].items() if k != "step")
    print(f"trained {result['step']} steps in {result['seconds']:.0f} s; {scores}")
    print(f"model written to {args.out}/model.safetensors (card: model.json)")
    return 0
