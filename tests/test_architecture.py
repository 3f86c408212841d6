"""The package's layering (src/filterscope/ARCHITECTURE.md) holds: imports go one way,
no import cycle between modules, no public function with more than 10 parameters
(issue 31).

The imports are read with ``ast`` from the source, those inside functions and under
``TYPE_CHECKING`` included, relative imports resolved, so a lazy import is no way
around the layering.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "filterscope"
ARCHITECTURE = PACKAGE / "ARCHITECTURE.md"
MAX_PARAMETERS = 10


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: set[str]) -> dict[str, int]:
    """Modules of the package that ``name`` imports, each with the line of its first import.

    ``from pkg import sub`` counts as an import of ``pkg.sub`` when that is a module;
    ``from filterscope import __version__`` is not counted (the one allowed exception).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names = [alias.name for alias in node.names]
            if source == "filterscope" and names == ["__version__"]:
                continue
            for imported in names:
                candidate = f"{source}.{imported}"
                targets.append(candidate if candidate in modules else source)
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a non-module c
                target = target.rpartition(".")[0]
            if target and target != name:
                found.setdefault(target, node.lineno)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """Module -> {imported module: line}, over every module of the package."""
    modules = package_modules(root)
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def find_cycles(graph: dict[str, dict[str, int]] | dict[str, set[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component of more than one
    module (Tarjan's algorithm, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(_cycle_through(graph, component) for component in components)


def _cycle_through(graph, component: list[str]) -> list[str]:
    """A shortest cycle from the first module of ``component`` back to itself."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, start]
            if child in members and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def documented_layers(modules: set[str]) -> dict[str, int]:
    """Module or package -> layer, from the table of ARCHITECTURE.md (the names in
    backticks of its second column that are modules of the package)."""
    layers = {}
    for line in ARCHITECTURE.read_text().splitlines():
        match = re.match(r"^\|\s*(\d+)[^|]*\|([^|]*)\|", line)
        if not match:
            continue
        for word in re.findall(r"`([\w.]+)`", match.group(2)):
            name = "filterscope" if word == "filterscope" else f"filterscope.{word}"
            if name in modules:
                layers[name] = int(match.group(1))
    return layers


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of the most specific documented name that holds ``module``."""
    while module:
        if module in layers:
            return layers[module]
        module = module.rpartition(".")[0]
    return None


def layer_violations(graph, layers: dict[str, int]) -> list[str]:
    """Every import of a module from a higher layer, as ``a (layer) -> b (layer) line N``."""
    found = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, layers)
        for target, line in sorted(targets.items()):
            theirs = layer_of(target, layers)
            if mine is not None and theirs is not None and theirs > mine:
                found.append(f"{module} (layer {mine}) -> {target} (layer {theirs}) line {line}")
    return found


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_every_module_has_a_documented_layer(graph):
    layers = documented_layers(set(graph))
    assert {"filterscope.hub", "filterscope.models", "filterscope.devices"} <= set(layers)
    missing = [module for module in graph if layer_of(module, layers) is None]
    assert not missing, f"add these to the table of ARCHITECTURE.md: {missing}"


def test_imports_follow_the_layers(graph):
    violations = layer_violations(graph, documented_layers(set(graph)))
    assert not violations, "imports against ARCHITECTURE.md:\n" + "\n".join(violations)


def test_building_blocks_never_import_the_registry_or_what_runs_models(graph):
    blocks = ("nn", "models", "noise", "io", "metrics", "ntk", "dip")
    above = ("hub", "inference", "api", "cli")
    bad = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if module.split(".")[1:2] and module.split(".")[1] in blocks
        if target.split(".")[1:2] and target.split(".")[1] in above
    ]
    assert not bad


def test_no_import_cycle_between_modules(graph):
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_finds_a_cycle_and_an_upward_import():
    fake = {
        "filterscope.nn.a": {"filterscope.hub": 3},
        "filterscope.hub": {"filterscope.models.b": 5},
        "filterscope.models.b": {"filterscope.nn.a": 7, "filterscope.errors": 8},
        "filterscope.errors": {},
        "filterscope.io": {"filterscope.io": 1},
    }
    assert find_cycles(fake) == [
        ["filterscope.hub", "filterscope.models.b", "filterscope.nn.a", "filterscope.hub"]
    ]
    layers = {"filterscope.errors": 0, "filterscope.nn": 1, "filterscope.models": 1}
    layers["filterscope.hub"] = 2
    assert layer_violations(fake, layers) == [
        "filterscope.nn.a (layer 1) -> filterscope.hub (layer 2) line 3"
    ]
    acyclic = {"a": {"b": 1}, "b": {"c": 1}, "c": {}}
    assert find_cycles(acyclic) == []


def test_the_parser_sees_lazy_and_relative_imports(tmp_path):
    root = tmp_path / "filterscope"
    (root / "models").mkdir(parents=True)
    (root / "__init__.py").write_text("__version__ = '0'\n")
    (root / "hub.py").write_text("")
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "base.py").write_text(
        "from filterscope import __version__\n"
        "def f():\n    from .. import hub\n    return hub\n"
        "class C:\n    def g(self):\n        from ..hub import x\n"
    )
    graph = import_graph(root)
    assert graph["filterscope.models.base"] == {"filterscope.hub": 3}


def long_signatures(source: str, where: str = "") -> list[str]:
    """Public functions and methods of ``source`` with more than :data:`MAX_PARAMETERS`
    parameters (``self``/``cls``, ``*args`` and ``**kwargs`` not counted), as
    ``where:function (N)``; the command line's ``add_parser`` functions are left out."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if node.name.startswith("_") or node.name == "add_parser":
            continue
        args = node.args
        names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
        count = len(names) - (names[:1] in (["self"], ["cls"]))
        if count > MAX_PARAMETERS:
            found.append(f"{where}:{node.name} ({count})")
    return found


def test_no_public_function_has_more_than_ten_parameters():
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        for hit in long_signatures(path.read_text(), module_name(path))
    ]
    assert not found, "use an options dataclass (see filterscope._options): " + ", ".join(found)


def test_the_signature_check_counts_what_it_should():
    eleven = ", ".join(f"a{i}" for i in range(11))
    source = (
        f"def wide({eleven}): pass\n"
        f"def _private({eleven}): pass\n"
        f"def add_parser({eleven}): pass\n"
        "class C:\n"
        f"    def method(self, {', '.join(f'b{i}' for i in range(10))}, *args, **kwargs): pass\n"
        f"    def wider(self, *, {eleven}): pass\n"
    )
    assert long_signatures(source, "m") == ["m:wide (11)", "m:wider (11)"]
