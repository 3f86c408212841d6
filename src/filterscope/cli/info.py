"""``filterscope info``: versions, the CPU and what it runs fast, and the path each command
takes here (the first thing to paste into a bug report)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info",
        help="versions, CPU, capabilities, threads and the numeric path of each command here",
        description=(
            "Print filterscope's and torch's versions, the CPU (model, torch's capability, "
            "the instruction-set flags that decide bfloat16 and int8), cores and threads, "
            "and the arithmetic each command takes by default (precision auto) on this "
            "machine. Answers from a per-user cache after the first run."
        ),
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="OUT",
        help="the report as JSON: on standard output, or into OUT",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="measure again instead of reading the cached report (imports torch: seconds)",
    )
    parser.set_defaults(run=run)
    return parser


def _path_text(path: dict[str, Any]) -> str:
    parts = []
    if "precision" in path:
        parts.append(path["precision"])
    if "products" in path:
        parts.append(f"{path['products']} patch products")
    if path.get("channels_last") is not None:
        parts.append("channels-last" if path["channels_last"] else "contiguous layout")
    return ", ".join(parts)


def report_text(info: dict[str, Any]) -> str:
    """The report as the lines ``filterscope info`` prints."""
    flags = info["flags"]
    flag_text = "unreadable" if flags is None else (" ".join(flags) or "none that matter")
    lines = [
        f"filterscope {info['filterscope']}, Python {info['python']}, torch {info['torch']}",
        f"CPU         {info['cpu']}",
        f"capability  {info['capability']} (torch); flags: {flag_text}",
        f"cores       {info['cores']} usable of {info['cpu_count']}; torch threads "
        f"{info['threads']}",
        f"GPU         {info['cuda'] or 'none'}",
        "default paths here (precision auto; an explicit --precision wins):",
    ]
    width = max(len(op) for op in info["paths"])
    lines += [f"  {op:<{width}}  {_path_text(p)}" for op, p in info["paths"].items()]
    origin = "cached" if info["cached"] else "measured now"
    lines.append(f"({origin}: {info['cache']}; --refresh measures again)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .._files import check_output_paths
    from ..machine import report
    from ._common import write_json

    to_file = args.json not in (None, "-")
    if to_file:
        check_output_paths({"--json": args.json}, overwrite=args.force)
    info = report(refresh=args.refresh)
    if args.json == "-":
        print(json.dumps(info, indent=2))
        return 0
    print(report_text(info))
    if to_file:
        write_json(args.json, info)
        print(f"wrote {args.json}")
    return 0
