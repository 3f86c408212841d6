"""A model file never chooses code; an object path never names an arbitrary callable
(issue 34, part 1).

Hostile cases: a card (safetensors + JSON, and a ``.pt`` dict) whose ``arch`` is
``sympy:sympify`` with a config that would run a shell command; a card naming a
module with side effects in the current folder or on ``PYTHONPATH``; object paths
``os:abort``, ``sys:exit``, ``os:getcwd``, ``builtins:input``, ``os:system`` and
``subprocess:Popen`` given to every command that takes a model and to the Python API.
Each must be refused in one line, with no marker file created and nothing called.
Cases that would kill the process if they ran (``os:abort``) run in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import filterscope as fs
from conftest import make_image_folder, make_tiny_dncnn
from filterscope.cli.main import main
from filterscope.errors import CheckpointError, ModelImportError
from filterscope.models.adapter import as_denoiser

HOSTILE_PATHS = [
    "os:abort",
    "sys:exit",
    "os:getcwd",
    "builtins:input",
    "os:system",
    "subprocess:Popen",
]

SIDE_EFFECT_MODULE = """
from pathlib import Path

import torch
from torch import nn

Path({marker!r}).touch()  # runs when the module is imported


class Net(nn.Module):
    def __init__(self, in_channels=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False)

    def forward(self, y):
        return self.conv(y)
"""


@pytest.fixture(autouse=True)
def fresh_registry(fresh_architectures):
    """Registrations made by a test are undone afterwards."""


def _gray_image(path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (31, 37), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _card_file(folder: Path, arch: str, config: dict, *, suffix: str) -> Path:
    """A tiny model file whose card names ``arch`` with ``config``."""
    folder.mkdir(parents=True, exist_ok=True)
    card = {"arch": arch, "config": config, "bias": True, "in_channels": 1}
    model = make_tiny_dncnn(1)
    if suffix == ".safetensors":
        return fs.save_model(model, folder / "model.safetensors", card=card)
    path = folder / "model.pt"
    torch.save({**card, "state_dict": model.state_dict()}, path)
    return path


def _shell_config(marker: Path) -> dict:
    return {"a": f"__import__('os').system('touch {marker}')"}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_card_naming_a_function_of_an_installed_package_runs_nothing(tmp_path, suffix, capsys):
    marker = tmp_path / "MARKER"
    path = _card_file(tmp_path / "m", "sympy:sympify", _shell_config(marker), suffix=suffix)
    image = np.zeros((31, 37), np.float32)
    loaders = [
        fs.load_checkpoint,
        fs.load_model,
        lambda p: fs.denoise(image, model=str(p)),
    ]
    for load in loaders:
        with pytest.raises(CheckpointError, match="names code .*trust_code=True") as caught:
            load(path)
        assert "\n" not in str(caught.value)
    # Even a caller who trusts the file gets no call of a function another package
    # re-exports: sympify is defined in sympy.core.sympify, not in the module named.
    with pytest.raises(CheckpointError, match="not a network factory"):
        fs.load_checkpoint(path, trust_code=True)
    img = _gray_image(tmp_path / "in.png")
    for args in (
        ["denoise", str(img), "-o", str(tmp_path / "out.png"), "--model", str(path)],
        ["evaluate", "--model", str(path), "--data", str(make_image_folder(tmp_path / "d"))]
        + ["--sigmas", "25"],
    ):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("filterscope: error:") and "\n" not in err
        assert "add --trust-code" in err and "trust_code" not in err
    assert not marker.exists() and not (tmp_path / "out.png").exists()


def test_a_card_naming_a_module_in_the_current_folder_is_not_imported(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    work = tmp_path / "work"
    work.mkdir()
    (work / "fs_sidefx.py").write_text(SIDE_EFFECT_MODULE.format(marker=str(marker)))
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))  # as `python -m` puts the current folder first
    monkeypatch.delitem(sys.modules, "fs_sidefx", raising=False)

    class Same(torch.nn.Module):  # the same layers as fs_sidefx.Net, for its weights
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)

    card = {"arch": "fs_sidefx:Net", "config": {}, "bias": True, "in_channels": 1}
    path = fs.save_model(as_denoiser(Same()), work / "model.safetensors", card=card)
    for load in (fs.load_checkpoint, fs.load_model):
        with pytest.raises(CheckpointError, match="names code"):
            load(path)
    assert "fs_sidefx" not in sys.modules and not marker.exists()
    # Trusted deliberately, the card's code runs (its import made the marker) and loads.
    model = fs.load_checkpoint(path, trust_code=True)
    assert marker.exists() and model.in_channels == 1


def test_python_m_filterscope_refuses_side_effect_modules_on_every_path(tmp_path):
    """The real entry point: the current folder and PYTHONPATH hold the named modules."""
    work, lib = tmp_path / "work", tmp_path / "lib"
    work.mkdir()
    lib.mkdir()
    markers = {name: tmp_path / f"MARKER_{name}" for name in ("here", "path")}
    (work / "fs_sidefx_here.py").write_text(SIDE_EFFECT_MODULE.format(marker=str(markers["here"])))
    (lib / "fs_sidefx_path.py").write_text(SIDE_EFFECT_MODULE.format(marker=str(markers["path"])))
    image = _gray_image(work / "in.png")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lib), *sys.path])}
    for name in ("here", "path"):
        model = _card_file(work / name, f"fs_sidefx_{name}:Net", {}, suffix=".safetensors")
        args = ["denoise", str(image), "-o", str(work / f"{name}.png"), "--model", str(model)]
        done = subprocess.run(
            [sys.executable, "-m", "filterscope", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        err = done.stderr.strip()
        assert done.returncode == 2, err
        assert err.startswith("filterscope: error:") and "\n" not in err
        assert "names code" in err and "--trust-code" in err
        assert not markers[name].exists() and not (work / f"{name}.png").exists()


# One subprocess runs every hostile object path through every command and API call:
# were one of them called, os:abort would end that process, not pytest.
HOSTILE_SCRIPT = """
import contextlib, io, json, sys
import numpy as np
import filterscope as fs
from filterscope import hub
from filterscope.cli.main import main
from filterscope.errors import FilterscopeError

cases = json.loads(sys.argv[1])
image = np.zeros((31, 37), np.float32)
api = {
    "load_model": lambda p, o: fs.load_model(p, **o),
    "load_checkpoint": lambda p, o: fs.load_checkpoint(p),
    "denoise": lambda p, o: fs.denoise(image, model=p),
    "load_object": lambda p, o: hub.load_object(p, **o),
    "build_network": lambda p, o: hub.build_network(p, o),
}
for kind, target, extra in cases:
    err = io.StringIO()
    try:
        if kind == "cli":
            with contextlib.redirect_stderr(err):
                code = main(extra)
            result = {"code": code, "err": err.getvalue().strip()}
        else:
            api[kind](target, extra)
            result = {"error": None}
    except FilterscopeError as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    except BaseException as exc:
        result = {"escaped": repr(exc)}
    print(json.dumps(result), flush=True)
"""


def _cli_cases(path: str, tmp: Path, image: Path, data: Path) -> list[list]:
    out = str(tmp / "out")
    return [
        ["denoise", str(image), "-o", f"{out}.png", "--model", path],
        ["evaluate", "--model", path, "--data", str(data), "--sigmas", "25"],
        ["analyze", "filters", "--model", path, "--image", str(image), "--sigma", "25"]
        + ["--pixels", "3,4", "--json", f"{out}.json"],
        ["explore", str(image), "--model", path, "--port", "0", "--no-browser"],
        ["demo", "--model", path, "--out", f"{out}_demo"],
        ["experiment", "restoration", "--bias-model", path, "--bias-free-model", path]
        + ["--test-dir", str(data), "--out", f"{out}_rest", "--sigmas", "25", "--blurs", "2"],
    ]


def test_hostile_object_paths_are_refused_unrun_by_every_command_and_the_api(tmp_path):
    marker = tmp_path / "MARKER"
    image = _gray_image(tmp_path / "in.png")
    data = make_image_folder(tmp_path / "data", count=1)
    cases = []
    for path in HOSTILE_PATHS:
        cases += [["cli", path, args] for args in _cli_cases(path, tmp_path, image, data)]
        cases += [[kind, path, {}] for kind in ("load_model", "load_checkpoint", "denoise")]
        cases += [["build_network", path, {}]]
    touch = ["touch", str(marker)]
    cases += [
        ["load_model", "os:system", {"command": " ".join(touch)}],
        ["load_object", "os:system", {"command": " ".join(touch)}],
        ["load_model", "subprocess:Popen", {"args": touch}],
        ["load_object", "subprocess:Popen", {"args": touch}],
        ["load_model", "subprocess:run", {"args": touch}],
        ["build_network", "os:system", {"command": " ".join(touch)}],
    ]
    done = subprocess.run(
        [sys.executable, "-c", HOSTILE_SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    results = [json.loads(line) for line in done.stdout.splitlines()]
    reached = cases[len(results)] if len(results) < len(cases) else None
    assert done.returncode == 0 and reached is None, (reached, done.stderr[-2000:])
    for (kind, path, extra), result in zip(cases, results, strict=True):
        assert "escaped" not in result, (kind, path, extra, result)
        if kind == "cli":
            err = result["err"]
            assert result["code"] == 2, (extra, err)
            assert err.startswith("filterscope: error:") and "\n" not in err, (extra, err)
            assert path in err, (extra, err)
        else:
            assert result["error"] is not None, (kind, path, extra)
            assert "\n" not in result["message"]
        if kind in ("load_model", "denoise", "load_object", "build_network"):
            # Refused for what it is, before a call: never "returned a ...".
            assert "register_architecture" in result["message"], (kind, path, result)
    assert not marker.exists()
    assert not any(tmp_path.glob("out*")), sorted(p.name for p in tmp_path.glob("out*"))


USER_MODULE = """
import torch
from torch import nn

import filterscope


class Box(nn.Module):
    def __init__(self, in_channels=1, width=3, path="unused"):
        super().__init__()
        self.path = path
        self.conv = nn.Conv2d(in_channels, in_channels, width, padding=width // 2, bias=False)

    def forward(self, y):
        return self.conv(y)


@filterscope.register_architecture("fs-test-box")
def box(in_channels=1, width=3):
    return Box(in_channels, width)


def unregistered(in_channels=1):
    return Box(in_channels)
"""


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "fs_safety_nets.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(sys.modules, "fs_safety_nets", raising=False)
    return "fs_safety_nets"


def test_a_user_trained_network_loads_only_when_trusted(user_code, tmp_path, capsys):
    from filterscope.models.user import build_network

    torch.manual_seed(0)
    trained = build_network(f"{user_code}:Box", {"width": 5}, in_channels=1, bias=True)
    card = {"arch": f"{user_code}:Box", "config": {"width": 5}, "bias": True, "in_channels": 1}
    path = fs.save_model(trained, tmp_path / "m.safetensors", card=card)
    with pytest.raises(CheckpointError, match="names code"):
        fs.load_checkpoint(path)
    y = torch.rand(1, 1, 31, 37, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(fs.load_checkpoint(path, trust_code=True)(y), trained(y))
        assert torch.equal(fs.load_model(path, trust_code=True)(y), trained(y))
    image = _gray_image(tmp_path / "in.png")
    args = ["denoise", str(image), "-o", str(tmp_path / "out.png"), "--model", str(path)]
    assert main(args) == 2 and "--trust-code" in capsys.readouterr().err
    assert main([*args, "--trust-code"]) == 0 and (tmp_path / "out.png").exists()
    # An unregistered factory of the user's own module loads from a trusted card,
    # but not typed as an object path (only a class or a registered factory is).
    with pytest.raises(ModelImportError, match="register_architecture"):
        fs.load_model(f"{user_code}:unregistered")


def test_register_architecture_round_trip(user_code, tmp_path):
    import importlib

    importlib.import_module(user_code)  # the user's code registers "fs-test-box"
    assert "fs-test-box" in fs.list_models(kind="architecture")
    model = fs.load_model("fs-test-box", width=5, bias=True)
    by_path = fs.load_model(f"{user_code}:box", width=5)  # a registered factory by path
    assert by_path.module.conv.kernel_size == (5, 5)
    card = {"arch": "fs-test-box", "config": {"width": 5}, "bias": True, "in_channels": 1}
    path = fs.save_model(model, tmp_path / "box.safetensors", card=card)
    y = torch.rand(2, 1, 31, 37, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(fs.load_checkpoint(path)(y), model(y))  # no trust_code needed
    # An option named `path` reaches the class (it is no parameter of the loader).
    assert fs.load_model(f"{user_code}:Box", path="a/b").module.path == "a/b"
    assert fs.hub.load_object(f"{user_code}:Box", path="c").module.path == "c"


def test_register_architecture_refuses_what_it_cannot_build(user_code):
    import importlib

    module = importlib.import_module(user_code)
    with pytest.raises(ValueError, match="built in"):
        fs.register_architecture("dncnn")(module.Box)
    with pytest.raises(ValueError, match="registered twice"):
        fs.register_architecture("fs-test-box")(module.Box)
    with pytest.raises(ValueError, match="nn.Module subclass or a factory"):
        fs.register_architecture("fs-test-int")(int)
    with pytest.raises(ValueError, match="letters, digits"):
        fs.register_architecture("pkg.mod:Net")
