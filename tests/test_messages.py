"""Library messages name Python parameters; only the command line names its flags."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import filterscope
from filterscope import errors
from filterscope.cli._common import cli_message

LIBRARY = Path(filterscope.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z]")
ADVICE = [value for name, value in vars(errors).items() if name.endswith("_ADVICE")]


def _called_name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _message_texts(tree: ast.AST):
    """(line, text) of the string pieces of every ``raise`` and every call of ``fail`` or
    ``warn``: the messages a user of the library reads."""
    for node in ast.walk(tree):
        is_call = isinstance(node, ast.Call) and _called_name(node.func) in {"fail", "warn"}
        if isinstance(node, ast.Raise) or is_call:
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    yield part.lineno, part.value


def test_library_messages_name_no_command_line_flags():
    found = []
    for path in sorted(LIBRARY.rglob("*.py")):
        if path.relative_to(LIBRARY).parts[0] == "cli":
            continue
        for line, text in _message_texts(ast.parse(path.read_text(encoding="utf-8"))):
            if FLAG.search(text):
                found.append(f"{path.relative_to(LIBRARY)}:{line}: {text!r}")
    assert not found, "\n".join(found)


def test_the_scan_sees_a_flag_in_a_raise_and_in_a_warning():
    tree = ast.parse('raise InputError(f"{path}: use --force")\nwarnings.warn("try --tile")')
    assert [text for _, text in _message_texts(tree) if FLAG.search(text)] == [
        ": use --force",
        "try --tile",
    ]
    assert not FLAG.search("a 3--5 range, or an em—dash")


def test_each_advice_reads_in_flags_on_the_command_line():
    assert len(ADVICE) >= 2
    for advice in ADVICE:
        worded = cli_message(f"out.png: already exists ({advice})")
        assert advice not in worded and FLAG.search(worded), worded
    assert cli_message("nothing to advise") == "nothing to advise"
