"""Learning curves of the shipped models, and what they predict for longer runs.

Run from the repository root::

    python benchmarks/learning_curve.py

Reads the training logs kept beside the benchmark results
(``benchmarks/results/training_logs/NAME.csv``, copied there by
``scripts/ship_model.py``): validation PSNR at σ = 25 and 50 (the recipe's
``val_sigmas``, on the first 4 images of the validation folder) every 100 steps.

Within one short run the curve says little about longer runs: the validation PSNR
on 4 images fluctuates by about 1 dB between validations at a constant learning rate,
and its rise at the end comes mostly from the learning-rate drops. So the prediction
anchors the curve at two runs of the same network and recipe family: ours (patches
seen ``n0``, BSD68 gap ``g0`` to the published model at its worst σ) and the
published BF-DnCNN [0, 55] (70 × 541,600 = 37.9M patches, gap 0). With PSNR linear in
log10(patches) between them, getting within 0.3 dB takes
``n0 · (N_pub / n0) ** ((g0 − 0.3) / g0)`` patches, and proportionally more CPU time
than our run. Results go to ``benchmarks/results/learning_curve.json``.
"""

from __future__ import annotations

import csv
import json
import math
import sys

from _common import RESULTS_DIR, print_table, write_results

LOGS = RESULTS_DIR / "training_logs"
PUBLISHED_PATCHES = 70 * 541_600
TARGET_DB = 0.3


def read_log(path) -> tuple[list[dict], dict]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    validations = [r for r in rows if r.get("val_psnr_25")]
    return validations, rows[-1]


def main() -> int:
    if not LOGS.is_dir():
        print(f"no training logs in {LOGS}", file=sys.stderr)
        return 2
    gap = None
    zoo = RESULTS_DIR / "zoo.json"
    if zoo.exists():
        gray = json.loads(zoo.read_text()).get("gray_vs_published")
        if gray:
            gap = gray["max_gap_db"]
    rows = []
    seconds_by_model = {}
    for path in sorted(LOGS.glob("*.csv")):
        validations, last = read_log(path)
        seconds_by_model[path.stem] = float(last["seconds"])
        weights = RESULTS_DIR.parent.parent / "src/filterscope/weights"
        card = json.loads((weights / f"{path.stem}.json").read_text())
        batch = int(card["training"]["recipe"]["batch_size"])
        for r in validations:
            rows.append(
                {
                    "model": path.stem,
                    "step": int(r["step"]),
                    "patches": int(r["step"]) * batch,
                    "lr": float(r["lr"]),
                    "val_psnr_25": float(r["val_psnr_25"]),
                    "val_psnr_50": float(r["val_psnr_50"]),
                }
            )
    prediction = None
    gray = [r for r in rows if r["model"] == "bf-dncnn-gray"]
    if gap is not None and gray:
        n0 = gray[-1]["patches"]
        seconds = seconds_by_model["bf-dncnn-gray"]
        factor = (PUBLISHED_PATCHES / n0) ** ((gap - TARGET_DB) / gap) if gap > TARGET_DB else 1.0
        prediction = {
            "patches_seen": n0,
            "gap_db": gap,
            "target_db": TARGET_DB,
            "db_per_decade_between_ours_and_published": gap / math.log10(PUBLISHED_PATCHES / n0),
            "patches_needed": n0 * factor,
            "cpu_hours_needed": seconds * factor / 3600,
        }
    write_results(
        "learning_curve",
        {
            "command": "python benchmarks/learning_curve.py",
            "curves": rows,
            "prediction": prediction,
        },
    )
    print_table(rows, ["model", "step", "patches", "lr", "val_psnr_25", "val_psnr_50"])
    if prediction is not None:
        p = prediction
        print(
            f"\nbf-dncnn-gray: {p['gap_db']:.2f} dB behind the published model after "
            f"{p['patches_seen']} patches; log-linear between the two runs "
            f"({p['db_per_decade_between_ours_and_published']:.2f} dB per 10x patches), "
            f"within {TARGET_DB} dB needs about {p['patches_needed']:.3g} patches, "
            f"~{p['cpu_hours_needed']:.0f} hours on these 2 cores."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
