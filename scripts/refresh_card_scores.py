"""Rewrite the side-by-side scores in a shipped model's card from a newer benchmark run.

    python scripts/refresh_card_scores.py bf-drunet-gray \
        --quality benchmarks/results/denoiser_quality.json

The weights and every other card field stay as they are: this is for a model that was
scored again (on more images, say), not for new weights (``scripts/ship_model.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from filterscope._files import atomic_write
from filterscope.models.checkpoints import card_path
from filterscope.models.zoo import shipped_weights
from ship_model import quality_scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="shipped model name, e.g. bf-drunet-gray")
    parser.add_argument("--quality", type=Path, required=True, help="denoiser_quality.json")
    args = parser.parse_args(argv)

    weights = shipped_weights(args.name)
    if weights is None:
        print(f"{args.name}: not a shipped model", file=sys.stderr)
        return 2
    if not args.quality.is_file():
        print(f"{args.quality}: no such file", file=sys.stderr)
        return 2
    scores = quality_scores(args.quality, args.name)
    if scores is None:
        print(f"{args.quality}: no results for model {args.name!r}", file=sys.stderr)
        return 2
    card_file = card_path(weights)
    card = json.loads(card_file.read_text())
    card.setdefault("metrics", {})["side_by_side"] = scores
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(card_file, lambda tmp: Path(tmp).write_text(text))
    images = {name: table["images"] for name, table in scores["sets"].items()}
    print(f"{card_file}: side-by-side scores now from {images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
