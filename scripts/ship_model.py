"""Copy a finished training run into the shipped model zoo, with its model card.

    python scripts/ship_model.py runs/bf-dncnn-gray bf-dncnn-gray \
        --recipe recipes/cpu-bf-dncnn-gray.toml \
        --bsd68 benchmarks/results/bsd68_published.json   # gray models
        [--zoo benchmarks/results/zoo.json]                # color models
        [--quality benchmarks/results/denoiser_quality.json]   # side-by-side benchmark

The card of the run (architecture, recipe, validation scores) is kept and extended
with the training record of the model it was fine-tuned from (``init_from``), the
recipe file, the command that reproduces the run, and — when given — the
model's BSD68 scores read from a ``benchmarks/bsd68_published.py`` result file.
Existing shipped files are replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

from filterscope.errors import FilterscopeError
from filterscope.models import create_model
from filterscope.models.checkpoints import card_path, load_checkpoint, save_model
from filterscope.models.zoo import shipped_weights, weights_dir

REPOSITORY = Path(__file__).resolve().parent.parent
LOGS_DIR = REPOSITORY / "benchmarks" / "results" / "training_logs"


class ShipError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def with_blind_path(model, option: str):
    """The same DRUNet weights, with the blind-path ``option`` (``blind_estimate`` or
    ``pooled_noise_map``) switched on in its config."""
    if model.arch != "drunet" or not model.config.get("noise_map"):
        raise ShipError(f"{option}: needs a drunet with a noise-level input (noise_map)")
    if option == "pooled_noise_map" and not model.config.get("noise_estimator"):
        raise ShipError("pooled_noise_map: needs a drunet with a noise-map estimator")
    config = {k: v for k, v in model.config.items() if k not in ("bias", "in_channels")}
    rebuilt = create_model(
        "drunet",
        bias=model.bias,
        in_channels=model.in_channels,
        **{**config, option: True},
    )
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.card = model.card
    return rebuilt


def noise_type_scores(result_file: Path) -> dict:
    """The card fields a noise_type_choice.json sets: ``noise_type_threshold`` (its
    suggested threshold) and where it came from, with the calibration it was set on."""
    payload = json.loads(result_file.read_text())
    return {
        "noise_type_threshold": payload["suggested_threshold"],
        "noise_type_choice": {
            "benchmark": "benchmarks/noise_type_choice.py",
            "result_file": str(result_file),
            "calibration": payload["calibration"],
            "cpu": payload["machine"].get("cpu"),
        },
    }


def bsd68_scores(result_file: Path, label: str) -> dict | None:
    """Per-σ BSD68 PSNR/SSIM of ``label`` from a bsd68_published result file."""
    payload = json.loads(result_file.read_text())
    rows = [r for r in payload["results"] if r["model"] == label]
    if not rows:
        return None
    return {
        "data": "BSD68 (68 images), Gaussian noise, fixed seed per (image, sigma)",
        "benchmark": "benchmarks/bsd68_published.py",
        "precision": payload["protocol"].get("precision"),
        "per_sigma": [
            {
                "sigma": r["sigma"],
                "psnr": round(r["psnr"], 4),
                "ssim": round(r["ssim"], 5),
                "psnr_in": round(r["psnr_in"], 4),
            }
            for r in rows
        ],
    }


def zoo_scores(result_file: Path, name: str) -> dict | None:
    """Per-(set, σ) PSNR/SSIM of ``name`` from a ``benchmarks/zoo.py`` result file."""
    payload = json.loads(result_file.read_text())
    rows = [r for r in payload["color"]["results"] if r["model"] == name]
    if not rows:
        return None
    return {
        "benchmark": "benchmarks/zoo.py",
        "protocol": "Gaussian noise, fixed seed per (image, sigma), estimate clipped, range 1",
        "per_set_sigma": [
            {
                "data": r["dataset"],
                "images": r["num_images"],
                "sigma": r["sigma"],
                "psnr": round(r["psnr"], 4),
                "ssim": round(r["ssim"], 5),
                "psnr_in": round(r["psnr_in"], 4),
            }
            for r in rows
        ],
    }


def quality_scores(result_file: Path, name: str) -> dict | None:
    """Mean PSNR of ``name`` (blind, told σ, ensemble) per set and σ from
    ``benchmarks/denoiser_quality.py``'s result file, with the command that made it."""
    payload = json.loads(result_file.read_text())
    found = {}
    for part in ("gray", "color"):
        for set_name, table in payload.get(part, {}).items():
            if not isinstance(table, dict) or "rows" not in table:
                continue
            rows = {r["method"]: r for r in table["rows"] if r["method"].startswith(name + " (")}
            if rows:
                found[set_name] = {
                    "images": table["images"],
                    "psnr_by_sigma_255": {
                        method[len(name) + 2 : -1]: {k: v for k, v in row.items() if k != "method"}
                        for method, row in rows.items()
                    },
                    "command": table.get("command"),
                }
    if not found:
        return None
    return {"benchmark": "benchmarks/denoiser_quality.py", "sets": found}


def real_noise_scores(path: Path, spec: str) -> dict | None:
    """The rows of a ``benchmarks/real_noise.py`` result (PolyU-Canon) for the model run
    as ``spec`` there, with the noisy input's and CBM3D's rows beside them."""
    table = json.loads(path.read_text())
    ours = [r for r in table["rows"] if r["method"].startswith(spec + " (")]
    if not ours:
        return None
    others = [r for r in table["rows"] if r["method"].split(" ")[0] in ("noisy", "cbm3d", "bm3d")]
    keep = lambda row: {k: v for k, v in row.items() if not k.startswith("_")}  # noqa: E731
    return {
        "benchmark": "benchmarks/real_noise.py",
        "command": table.get("command"),
        "data": table.get("data"),
        "rows": [keep(r) for r in ours + others],
    }


def training_seconds(rows: list[dict]) -> float:
    """Wall seconds over every session of a run: the log's clock restarts on resume."""
    total, last = 0.0, 0.0
    for row in rows:
        seconds = float(row["seconds"])
        if seconds < last:
            total += last
        last = seconds
    return round(total + last, 1)


def shipped_name_of(init_from: str) -> str | None:
    """The shipped model whose weights file is byte for byte the file ``init_from``, so a
    run started from a copy of shipped weights gets that model's whole training record
    (its card), not only the run's own."""
    path = Path(init_from)
    if not path.is_file():
        return init_from if shipped_weights(init_from) is not None else None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for weights in sorted(weights_dir().glob("*.safetensors")):
        if hashlib.sha256(weights.read_bytes()).hexdigest() == digest:
            return weights.stem
    return None


def earlier_stage(init_from: str, card: dict, name: str) -> dict:
    """The training record of the model a fine-tuning run started from, so the card
    accounts for all the compute behind the weights.

    When the model shipped under ``name`` is this run already (shipped once, now shipped
    again with its benchmark scores), the record kept in its card is reused: the weights
    the run started from may no longer be shipped.
    """
    from filterscope.models.zoo import list_shipped

    replaced = list_shipped().get(name, {}).get("training", {})
    same_run = replaced.get("recipe") == card["training"]["recipe"] and replaced.get(
        "steps"
    ) == card["training"].get("steps")
    if same_run and "initialised_from" in replaced:
        return replaced["initialised_from"]
    return stage_record(init_from, name)


def stage_record(init_from: str, name: str) -> dict:
    """The training record of the weights ``init_from`` names. A shipped model's card
    holds its whole history; an unshipped run's card holds only its own stage, so the
    run its recipe started from is followed in turn (its log kept beside the shipped
    model's, as ``NAME.stageK.csv``), down to a shipped model or random weights."""
    from filterscope.models.zoo import load_model

    shipped = shipped_name_of(init_from)
    source = load_model(shipped or init_from).card
    earlier = dict(source.get("training", {}))
    parent = earlier.get("recipe", {}).get("init_from")
    if shipped is None and Path(init_from).is_file():
        if parent and "initialised_from" not in earlier:
            earlier["initialised_from"] = stage_record(parent, name)
        log = Path(init_from).parent / "log.csv"
        if log.exists():
            with log.open(newline="") as handle:
                earlier["seconds"] = training_seconds(list(csv.DictReader(handle)))
            earlier["log"] = keep_log(log, name + stage_suffix(earlier))
    return {
        "model": init_from if shipped in (None, init_from) else f"{init_from} (= {shipped})",
        "description": source.get("description"),
        "training": earlier,
    }


def name_recipe_files(training: dict) -> None:
    """Fill in ``recipe_file`` and ``command`` of every stage of ``training`` (its
    ``initialised_from`` chain) that lacks them (a run that was never shipped): the
    file of ``recipes/`` that holds the stage's recorded recipe, when one does.

    Both sides are compared as plain values over the fields' defaults (fields added
    since a run read as their defaults), never built into a config: validating a
    recipe imports the architecture it names, and a card or a recipe file must not
    choose code to run.
    """
    import dataclasses

    from filterscope.training import TrainConfig
    from filterscope.training.config import tomllib  # tomli on Python 3.10

    defaults = dataclasses.asdict(TrainConfig())
    recipes = {}
    for path in sorted((REPOSITORY / "recipes").glob("*.toml")):
        try:
            recipes[path.name] = {**defaults, **tomllib.loads(path.read_text())}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
    record = training
    while record:
        if not record.get("recipe_file") and record.get("recipe"):
            recorded = {**defaults, **record["recipe"]}
            name = next((n for n, values in recipes.items() if values == recorded), None)
            if name is not None:
                record["recipe_file"] = f"recipes/{name}"
                record["command"] = f"filterscope train --recipe recipes/{name} --out RUN_DIR"
        record = record.get("initialised_from", {}).get("training", {})


def keep_log(log: Path, stem: str, *, logs_dir: Path = LOGS_DIR) -> str:
    """Copy a training log into ``logs_dir`` (learning curves are evidence and stay in
    the repository); the copy's path from the repository root.

    ``STEM.csv`` holding another run's log (two runs of one stage number, such as two
    fine-tunes of the same parent) is kept: the copy is then ``STEM-RUN.csv``, RUN the
    run folder's name, and another log there too stops the script. A file that the
    log continues (the same run, since resumed) is updated.
    """
    text = log.read_text()
    logs_dir.mkdir(parents=True, exist_ok=True)
    for name in (f"{stem}.csv", f"{stem}-{log.resolve().parent.name}.csv"):
        target = logs_dir / name
        # the same run's log, or its log before the run was resumed, is updated
        if not target.exists() or text.startswith(target.read_text()):
            target.write_text(text)
            return (
                str(target.relative_to(REPOSITORY))
                if target.is_relative_to(REPOSITORY)
                else str(target)
            )
    raise ShipError(f"{log}: {target} holds another log; move it away or rename the run folder")


def stage_suffix(training: dict) -> str:
    """``""`` for a run from random weights, ``".stage2"`` for one fine-tuned from such a
    run, and so on: each stage keeps its own training log beside the others."""
    stage, record = 1, training
    while "initialised_from" in record:
        stage, record = stage + 1, record["initialised_from"].get("training", {})
    return "" if stage == 1 else f".stage{stage}"


def main(argv: list[str] | None = None) -> int:
    try:
        return ship(argv)
    except (ShipError, FilterscopeError, OSError) as exc:
        print(f"ship_model.py: error: {exc}", file=sys.stderr)
        return 2


def ship(argv: list[str] | None) -> int:
    """Parse the arguments and ship the run (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="training run folder (holds model.safetensors)")
    parser.add_argument("name", help="shipped model name, e.g. bf-dncnn-gray")
    parser.add_argument("--recipe", required=True, help="recipe file the run used")
    parser.add_argument("--bsd68", type=Path, help="bsd68_published.json holding this model")
    parser.add_argument("--zoo", type=Path, help="zoo.json (color test sets) holding this model")
    parser.add_argument("--quality", type=Path, help="denoiser_quality.json holding this model")
    parser.add_argument(
        "--real-noise",
        nargs=2,
        metavar=("FILE", "SPEC"),
        help="real_noise.json holding this model's rows, and the --models spec it ran as",
    )
    parser.add_argument(
        "--noise-type-choice",
        type=Path,
        help="noise_type_choice.json run on this model: its suggested threshold becomes the "
        "card's noise_type_threshold (when denoise takes this real-noise model)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing shipped model")
    parser.add_argument("--description", help="one-line description (default: the run's)")
    parser.add_argument(
        "--blind-estimate",
        action="store_true",
        help="a DRUNet with a noise-level input: without sigma, estimate it from the image "
        "(wavelet MAD) instead of running the trained blind mode",
    )
    parser.add_argument(
        "--pooled-noise-map",
        action="store_true",
        help="a DRUNet with a noise-map estimator: without sigma, feed each image one "
        "level, the RMS of its estimated map, instead of the map itself",
    )
    args = parser.parse_args(argv)

    model = load_checkpoint(args.run_dir / "model.safetensors")
    blind_paths = ("blind_estimate", "pooled_noise_map")
    switched = [option for option in blind_paths if getattr(args, option)]
    for option in switched:
        model = with_blind_path(model, option)
    card = dict(model.card)
    for key in ("format", "arch", "bias", "in_channels", "config"):
        card.pop(key, None)
    if switched:  # the run's own card does not know: say how the shipped config came to be
        card["training"] = {
            **card["training"],
            "switched_on_when_shipped": {option: True for option in switched},
        }
    card["name"] = args.name
    if args.description:
        card["description"] = args.description
    card["training"]["recipe_file"] = args.recipe
    card["training"]["command"] = f"filterscope train --recipe {args.recipe} --out RUN_DIR"
    init_from = card["training"]["recipe"].get("init_from")
    if init_from:
        card["training"]["initialised_from"] = earlier_stage(init_from, card, args.name)
        name_recipe_files(card["training"])  # the stages of runs that were never shipped
    log = args.run_dir / "log.csv"
    if log.exists():
        with log.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows:
            card["training"]["seconds"] = training_seconds(rows)
        card["training"]["log"] = keep_log(log, args.name + stage_suffix(card["training"]))
    if args.bsd68:
        scores = bsd68_scores(args.bsd68, args.name)
        if scores is None:
            raise ShipError(f"{args.bsd68}: no results for model {args.name!r}")
        card.setdefault("metrics", {})["bsd68"] = scores
    if args.zoo:
        scores = zoo_scores(args.zoo, args.name)
        if scores is None:
            raise ShipError(f"{args.zoo}: no results for model {args.name!r}")
        card.setdefault("metrics", {})["color_test_sets"] = scores
    if args.quality:
        scores = quality_scores(args.quality, args.name)
        if scores is None:
            raise ShipError(f"{args.quality}: no results for model {args.name!r}")
        card.setdefault("metrics", {})["side_by_side"] = scores
    if args.real_noise:
        scores = real_noise_scores(Path(args.real_noise[0]), args.real_noise[1])
        if scores is None:
            raise ShipError(f"{args.real_noise[0]}: no rows for model {args.real_noise[1]!r}")
        card.setdefault("metrics", {})["real_noise"] = scores
    if args.noise_type_choice:
        card.update(noise_type_scores(args.noise_type_choice))
    target = weights_dir() / f"{args.name}.safetensors"
    save_model(model, target, card=card, overwrite=args.force)
    print(f"shipped {target} and {card_path(target).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
