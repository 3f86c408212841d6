"""Entry point of the ``filterscope`` command.

Each command lives in its own module with two functions: ``add_parser(subparsers)``
declares its options, and ``run(args)`` unpacks them into plain arguments for a
library function. Errors the user can fix (:class:`~filterscope.errors.FilterscopeError`)
become one line on stderr and exit status 2; notices about the user's data
(:class:`~filterscope.errors.FilterscopeWarning`) one line ``filterscope: warning: ...``.
A command that loads models takes ``--trust-code``; the whole command then runs
inside :func:`filterscope.models.user.trusting_code`.

The command modules import PyTorch and the library inside ``run``, never at the top,
so that ``--help``, ``--version`` and ``models`` answer at once
(``benchmarks/startup.py``; ``tests/test_packaging.py`` checks that building the
parser imports no torch).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import threading
import warnings

from .. import __version__
from ..errors import FilterscopeError, FilterscopeWarning
from ._common import cli_message

# command name -> module (imported lazily so `filterscope --help` stays fast)
COMMANDS = {
    "analyze": "filterscope.cli.analyze",
    "demo": "filterscope.cli.demo",
    "evaluate": "filterscope.cli.evaluate",
    "experiment": "filterscope.cli.experiment",
    "explore": "filterscope.cli.explore",
    "info": "filterscope.cli.info",
    "denoise": "filterscope.cli.denoise",
    "dip": "filterscope.cli.dip",
    "models": "filterscope.cli.models",
    "ntk": "filterscope.cli.ntk",
    "train": "filterscope.cli.train",
    "train-gpu": "filterscope.cli.train_gpu",
}


class _Parser(argparse.ArgumentParser):
    """argparse, reading every word that starts with ``-`` and a digit (or ``-inf``,
    ``-nan``) as a value.

    Python 3.11's argparse takes only ``-5`` or ``-0.5`` for a number, so that
    ``--sigmas -10,20`` or ``--sigma -inf`` failed with "expected one argument" instead of
    reaching the check that reports the value. No option of filterscope starts with a
    digit, "inf" or "nan".
    Subparsers are made by the same class, so every command gets this.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\.?\d|inf|nan)", re.IGNORECASE)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks and the temporary
    files of atomic writes are cleaned up as for Ctrl-C (a plain SIGTERM kills at once)."""


def _raise_terminated(signum, frame):
    raise _Terminated


def _run_command(args: argparse.Namespace):
    """``args.run(args)`` with every :class:`FilterscopeWarning` shown as one line, each
    time it is raised; other warnings keep Python's format. ``catch_warnings`` puts the
    previous ``warnings.showwarning`` and filters back afterwards."""
    python_format = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, FilterscopeWarning):
            python_format(message, category, filename, lineno, file, line)
            return
        from tqdm import tqdm  # tqdm.write keeps the line clear of a running progress bar

        tqdm.write(f"filterscope: warning: {message}", file=sys.stderr)

    from ..models.user import trusting_code

    with warnings.catch_warnings(), trusting_code(getattr(args, "trust_code", False)):
        warnings.simplefilter("always", FilterscopeWarning)
        warnings.showwarning = show
        return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="filterscope",
        description="Blind image denoising you can look inside.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        result = _run_command(args)
    except FilterscopeError as exc:
        print(f"filterscope: error: {cli_message(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("filterscope: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("filterscope: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        # The reader of our output went away (`filterscope models | head`): not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout must stay usable at exit
        return 0
    except OSError as exc:
        # The machine refused (disk full, name too long, permission denied): its own words,
        # on one line. Writes are atomic, so nothing half-written is left behind.
        where = f"{exc.filename}: " if exc.filename else ""
        message = cli_message(exc.strerror or str(exc))
        print(f"filterscope: error: {where}{message}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
