"""The package as its users get it: metadata, one version, lazy imports, optional extras,
and installing into an environment that already holds PyTorch."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

import filterscope
from filterscope.errors import FilterscopeError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE = ROOT / "src" / "filterscope"


def _python(code: str, *, python: str = sys.executable, cwd: Path = ROOT) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (fails the test on an error)."""
    done = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _requirement(name: str) -> str:
    found = [d for d in PYPROJECT["project"]["dependencies"] if re.match(rf"{name}\b", d)]
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------ metadata


def test_version_is_written_once():
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "filterscope.__version__"
    }
    # setuptools reads the attribute statically: it must stay a plain string literal
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    literals = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "__version__" for t in node.targets)
        and isinstance(node.value, ast.Constant)
    ]
    assert literals == [filterscope.__version__]
    assert re.fullmatch(r"\d+\.\d+\.\d+", filterscope.__version__)


def test_version_option_and_python_m():
    for command in (
        [sys.executable, "-m", "filterscope", "--version"],
        [str(Path(sys.executable).with_name("filterscope")), "--version"],
    ):
        if not Path(command[0]).exists():
            continue
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"filterscope {filterscope.__version__}"


def test_license_and_typing_marker_are_shipped():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (PACKAGE / "py.typed").exists()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["filterscope"]
    assert "Typing :: Typed" in PYPROJECT["project"]["classifiers"]


def test_torch_is_a_range_and_only_the_makefile_pins_it():
    from packaging.requirements import Requirement

    spec = Requirement(_requirement("torch")).specifier
    for version in (torch.__version__, "2.5.1+cu121", "2.13.0", "2.20.0"):
        assert spec.contains(version, prereleases=True), version
    assert not spec.contains("2.4.1")  # no torch.serialization.safe_globals
    for dependency in PYPROJECT["project"]["dependencies"]:
        assert "==" not in dependency, dependency
    assert re.search(r"^TORCH_PIN := torch==\d", (ROOT / "Makefile").read_text(), re.M)


def test_bm3d_is_an_optional_extra():
    assert not any(d.startswith("bm3d") for d in PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(d.startswith("bm3d") for d in extras["baselines"])
    assert any("baselines" in d for d in extras["dev"])  # `make test` covers BM3D


def test_missing_bm3d_names_the_extra(monkeypatch):
    from filterscope.evaluation.baselines import create_baseline

    monkeypatch.setitem(sys.modules, "bm3d", None)  # `import bm3d` now fails
    with pytest.raises(FilterscopeError, match=r"pip install 'filterscope\[baselines\]'"):
        create_baseline("bm3d")
    assert create_baseline("nlm") is not None  # the rest works without it


def test_missing_bm3d_on_the_command_line(tmp_path):
    """``evaluate --model bm3d`` without the package: one line naming the extra, exit 2."""
    from PIL import Image

    folder = tmp_path / "data"
    folder.mkdir()
    Image.new("L", (37, 31), 128).save(folder / "a.png")
    code = (
        "import sys; sys.modules['bm3d'] = None\n"
        "from filterscope.cli.main import main\n"
        f"sys.exit(main(['evaluate', '--model', 'bm3d', '--data', {str(folder)!r}, "
        "'--sigmas', '25', '--json', " + repr(str(tmp_path / "r.json")) + "]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'filterscope[baselines]'" in lines[0], done.stderr
    assert not (tmp_path / "r.json").exists()


# ------------------------------------------------------------------ public API, lazily


def test_public_names_agree_and_resolve():
    source = ast.parse((PACKAGE / "__init__.py").read_text())
    checked: set[str] = set()
    for node in ast.walk(source):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            checked |= {a.name for n in node.body for a in n.names}
    eager = {"CheckpointError", "FilterscopeError", "InputError"}
    assert sorted(filterscope.__all__) == filterscope.__all__
    assert set(filterscope.__all__) == eager | set(filterscope._LAZY) == eager | checked
    for name in filterscope.__all__:
        assert getattr(filterscope, name) is not None
    assert "read_image" in dir(filterscope)
    assert filterscope.io.to_tensor is not None  # submodules resolve on use too
    with pytest.raises(AttributeError):
        filterscope.no_such_name  # noqa: B018


def test_architecture_table_matches_the_registrations():
    import importlib

    from filterscope.models import registry

    for module in registry.BUILTIN_ARCHITECTURES.values():
        importlib.import_module(module)
    assert set(registry._REGISTRY) >= set(registry.BUILTIN_ARCHITECTURES)
    for name, module in registry.BUILTIN_ARCHITECTURES.items():
        assert registry._REGISTRY[name].__module__ == module


@pytest.mark.parametrize(
    "call",
    [
        "from filterscope.cli.main import build_parser; build_parser()",
        "import filterscope, filterscope.errors",
        "from filterscope.cli.main import main; main(['models'])",
    ],
)
def test_startup_imports_no_torch(call):
    """``--help``, ``--version`` and ``models`` must not pay for PyTorch (about 2 s);
    ``benchmarks/startup.py`` measures the time."""
    out = _python(
        f"import sys\n{call}\n"
        "print('\\nHEAVY', sorted(m for m in ('torch', 'numpy', 'matplotlib', 'skimage') "
        "if m in sys.modules))"
    )
    assert out.strip().splitlines()[-1] == "HEAVY []", out


def test_int8_product_fallback_is_exact(monkeypatch):
    """Without the private ``torch._int_mm`` the NTK's int8 products are the same integers."""
    from filterscope.ntk.kernels import _int8_product

    generator = torch.Generator().manual_seed(0)
    left = torch.randint(-127, 128, (37, 363), generator=generator, dtype=torch.int8)
    right = torch.randint(-127, 128, (363, 31), generator=generator, dtype=torch.int8)
    exact = left.long() @ right.long()
    fast = _int8_product(left, right, out=torch.empty(37, 31, dtype=torch.int32))
    monkeypatch.delattr(torch, "_int_mm")
    slow = _int8_product(left, right, out=torch.empty(37, 31, dtype=torch.int32))
    assert torch.equal(fast.long(), exact) and torch.equal(slow.long(), exact)


# ------------------------------------------------------------------ installing


def _pip_offline(python: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """pip without the network: every dependency must already be there."""
    return subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--no-build-isolation", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_installing_keeps_the_torch_already_there(tmp_path):
    """pip's own plan for installing filterscope here: filterscope only, torch untouched."""
    pytest.importorskip("setuptools", reason="building the package offline needs setuptools")
    report = tmp_path / "report.json"
    done = _pip_offline(sys.executable, "--dry-run", "--quiet", "--report", str(report), ".")
    assert done.returncode == 0, done.stderr
    planned = {
        item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]
    }
    assert planned == {"filterscope"}


@pytest.mark.slow
def test_real_install_into_an_environment_with_torch(tmp_path):
    """A wheel of the package installed (not editable) into a fresh environment that
    sees this environment's torch: torch stays the same version and build, and the
    installed package answers ``--version``, ships its weights, licence and py.typed."""
    pytest.importorskip("setuptools", reason="building the package offline needs setuptools")
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = str(env / "bin" / "python")
    purelib = Path(
        _python("import sysconfig; print(sysconfig.get_paths()['purelib'])", python=python).strip()
    )
    # this environment's packages (torch, pip, the dependencies) are visible, read-only
    (purelib / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    before = _python("import torch; print(torch.__version__, torch.__file__)", python=python)
    done = _pip_offline(python, "--no-cache-dir", "--quiet", str(ROOT), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    after = _python("import torch; print(torch.__version__, torch.__file__)", python=python)
    assert after == before
    installed = Path(
        _python(
            "import filterscope; print(filterscope.__file__)", python=python, cwd=tmp_path
        ).strip()
    ).parent
    assert installed.is_relative_to(purelib)  # the wheel, not this checkout
    assert (installed / "py.typed").exists()
    assert list((installed / "weights").glob("*.safetensors"))
    licences = list(purelib.glob("filterscope-*.dist-info/licenses/LICENSE"))
    assert licences and licences[0].read_text().startswith("MIT License")
    version = subprocess.run(
        [python, "-m", "filterscope", "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert version.stdout.strip() == f"filterscope {filterscope.__version__}", version.stderr


def test_missing_bm3d_stops_the_experiment_before_training(tmp_path, monkeypatch):
    """``experiment generalization --baselines bm3d`` says so before 15 minutes of training."""
    from filterscope.experiments.generalization import run_generalization_experiment

    monkeypatch.setitem(sys.modules, "bm3d", None)
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(FilterscopeError, match=r"filterscope\[baselines\]"):
        run_generalization_experiment(
            tmp_path / "out", baselines=["bm3d"], data_dir=folder, test_dir=folder
        )
    assert not (tmp_path / "out").exists()
