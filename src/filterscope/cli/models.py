"""``filterscope models``: every registered denoiser (shipped models first), by kind."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list every model --model accepts: shipped, classical, non-local, DIP, architectures",
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


#: Heading of each kind of registered model, in the order listed.
KIND_HEADINGS = {
    "shipped": "Shipped models (trained weights; use with --model NAME)",
    "classical": "Classical methods (NAME:estimate estimates sigma from each image)",
    "nonlocal": "Non-local filters with twicing (Tachella et al. 2021)",
    "dip": "Deep image prior",
    "architecture": "Architectures with random weights (filterscope.create_model)",
}


def run(args: argparse.Namespace) -> int:
    from .. import hub

    for kind, heading in KIND_HEADINGS.items():
        names = hub.list_models(kind)
        print(f"{heading}:")
        if kind == "shipped":
            for name in names:
                print(describe_card(name, hub.model_info(name).card or {}))
            if not names:
                print("  none shipped yet")
        else:
            for name in names:
                info = hub.model_info(name)
                licence = f" [{info.license}]" if info.license else ""
                print(f"  {name}  {info.description}{licence}")
        print()
    print("Also accepted by --model: a checkpoint file (filterscope .safetensors with its")
    print(".json card, a trainer .pt, or a published checkpoint of Mohan et al. 2020), e.g.")
    print("  filterscope denoise noisy.png -o clean.png --model path/to/dncnn/bias_free/0-55.pt")
    print("or a Python object path package.module:attribute (an nn.Module class, or a factory")
    print("registered with @filterscope.register_architecture). A checkpoint whose card names")
    print("code (an object path) is loaded only with --trust-code.")
    return 0
