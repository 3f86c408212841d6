"""``filterscope models``: the shipped models and the registered architectures."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list the shipped models and the available architectures",
        description=(
            "List the models shipped with filterscope (architecture, bias or bias-free, "
            "channels, training noise range on the 0-255 scale, key metric) and the "
            "architectures a checkpoint can use."
        ),
    )
    parser.set_defaults(run=run)
    return parser


def _key_metric(card: dict[str, Any]) -> str:
    """One metric from a model card: a PSNR, at σ = 25 when there is one."""
    found: list[tuple[str, float]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}/{key}" if prefix else str(key), item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append((prefix, float(value)))

    walk("", card.get("metrics", {}))
    psnrs = [(k, v) for k, v in found if "psnr" in k.lower()]
    if not psnrs:
        return ""
    at_25 = [(k, v) for k, v in psnrs if k.endswith("25") or "_25" in k or "25/" in k]
    key, value = (at_25 or psnrs)[0]
    return f"{key} {value:.2f} dB"


def describe_card(name: str, card: dict[str, Any]) -> str:
    """One line about a shipped model, from its model card."""
    arch = card.get("arch", "?")
    bias = card.get("bias")
    kind = "bias" if bias else ("bias-free" if bias is not None else "?")
    channels = card.get("in_channels")
    color = {1: "gray", 3: "RGB"}.get(channels, "?")
    sigma_range = card.get("training", {}).get("sigma_range_255")
    if isinstance(sigma_range, (list, tuple)) and len(sigma_range) == 2:
        trained = f"trained σ {sigma_range[0]:g}-{sigma_range[1]:g} (0-255)"
    else:
        trained = "trained σ ?"
    parts = [name, arch, kind, color, trained]
    metric = _key_metric(card)
    if metric:
        parts.append(metric)
    return "  " + "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    from .. import list_models
    from ..models import zoo

    shipped = zoo.list_shipped()
    print("Shipped models (use with --model NAME):")
    if shipped:
        for name, card in shipped.items():
            print(describe_card(name, card))
    else:
        print("  none shipped yet")
    print()
    print("Architectures (filterscope.create_model):", ", ".join(list_models()))
    print()
    print("A checkpoint file (filterscope .safetensors with its .json card, a trainer .pt,")
    print("or a published checkpoint of Mohan et al. 2020) loads by path:")
    print("  filterscope denoise noisy.png -o clean.png --model path/to/dncnn/bias_free/0-55.pt")
    return 0
