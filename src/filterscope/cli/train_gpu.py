"""``filterscope train-gpu --recipe A.toml [--recipe B.toml] --out DIR``: timed GPU training."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train-gpu",
        help="train one or more recipes on one GPU, each for a fixed time (recipes/gpu-*.toml)",
        description="Train each recipe in turn on one device for --minutes of training "
        "time, with all training images on the device and patches and noise drawn there "
        "(bfloat16 autocast, channels-last as the recipe says). Each recipe gets its "
        "own run folder OUT/RECIPE_NAME with the layout of `filterscope train` "
        "(model.safetensors + model.json at the end, resumable checkpoint.pt).",
    )
    parser.add_argument(
        "--recipe", action="append", required=True, help="TOML recipe file; repeatable"
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for one run folder per recipe"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=5.25,
        help="training time per recipe in minutes (default 5.25: two recipes and their data "
        "loading fit in 12 minutes; loading, validation and checkpoints are not counted)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="where to train (default: the recipe's, auto = cuda if available)",
    )
    parser.add_argument("--steps", type=int, default=None, help="cap on optimizer steps")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key in every recipe (TOML value); repeatable",
    )
    parser.add_argument("--log-every", type=int, default=100, help="steps between log lines")
    parser.add_argument("--resume", action="store_true", help="continue the runs in DIR")
    parser.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    # Imported here: building the parser must not import torch (fast --help).
    from ..training import load_recipe
    from ..training.config import parse_assignments
    from ..training.gpu import train_on_device

    overrides = parse_assignments(args.assignments)
    overrides.update(
        {k: v for k, v in dict(device=args.device, steps=args.steps).items() if v is not None}
    )
    names = [Path(recipe).stem for recipe in args.recipe]
    if len(set(names)) != len(names):
        raise InputError("--recipe: two recipes have the same file name (run folder)")
    # Every recipe is read and checked before the first one starts training.
    configs = [load_recipe(recipe, **overrides) for recipe in args.recipe]
    for name, config in zip(names, configs, strict=True):
        out_dir = Path(args.out) / name
        result = train_on_device(
            config,
            out_dir,
            minutes=args.minutes,
            resume=args.resume,
            log_every=args.log_every,
            progress=not args.quiet,
        )
        scores = ", ".join(f"{k} {v:.2f}" for k, v in result["validation"].items())
        print(
            f"{name}: {result['step']} steps, {result['train_seconds']:.0f} s of training on "
            f"{result['device']} ({result['pixels_per_s'] / 1e6:.2f} Mpx/s); {scores}"
        )
        print(f"model written to {out_dir}/model.safetensors (card: model.json)")
    return 0
