"""``filterscope denoise`` and ``filterscope models``: results, messages, exit codes."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import filterscope
from filterscope import read_image, write_image
from filterscope.cli import main as cli_main
from filterscope.models import zoo
from test_io import BAD_INPUTS, make_bad_input

ALL_COMMANDS = dict(cli_main.COMMANDS)


@pytest.fixture(autouse=True)
def only_our_commands(monkeypatch):
    # Other command modules may be unfinished; these tests exercise denoise and models only.
    monkeypatch.setattr(
        cli_main,
        "COMMANDS",
        {"denoise": "filterscope.cli.denoise", "models": "filterscope.cli.models"},
    )


@pytest.fixture
def empty_weights(tmp_path, monkeypatch) -> Path:
    """Pretend no weights ship with filterscope (deterministic whatever is installed)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(zoo, "weights_dir", lambda: folder)
    return folder


def gray_png(path: Path, height: int = 20, width: int = 18) -> Path:
    image = np.random.default_rng(0).random((height, width, 1), dtype=np.float32)
    write_image(path, image)
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- denoise


def test_denoise_gray_png(tmp_path, tiny_model_path, capsys):
    source = gray_png(tmp_path / "in.png")
    out = tmp_path / "out.png"
    code, stdout, err = run_cli(
        capsys, "denoise", source, "-o", out, "--model", tiny_model_path, "--tile", "8"
    )
    assert code == 0, err
    assert "wrote" in stdout and "9 tile(s)" in stdout
    image, info = read_image(out)
    assert image.shape == (20, 18, 1)
    assert (info.dtype, info.channels) == ("uint8", 1)
    assert "denoising" in err  # progress bar with several tiles


def test_denoise_rgb_16_bit_tiff_with_gray_model(tmp_path, tiny_model_path, capsys):
    image = np.random.default_rng(1).random((12, 10, 3), dtype=np.float32)
    write_image(tmp_path / "in.tif", image, dtype="uint16")
    out = tmp_path / "out.tif"
    code, _, err = run_cli(
        capsys,
        "denoise",
        tmp_path / "in.tif",
        "-o",
        out,
        "--model",
        tiny_model_path,
        "--precision",
        "float32",
    )
    assert code == 0, err
    result, info = read_image(out)
    assert (info.dtype, info.channels) == ("uint16", 3)
    assert result.shape == (12, 10, 3)


def test_denoise_with_shipped_name(tmp_path, tiny_model_path, empty_weights, capsys):
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_model_path.with_suffix(suffix), empty_weights / f"tiny{suffix}")
    source = gray_png(tmp_path / "in.png")
    code, _, err = run_cli(capsys, "denoise", source, "-o", tmp_path / "o.png", "--model", "tiny")
    assert code == 0, err
    assert (tmp_path / "o.png").exists()


def test_force_overwrites(tmp_path, tiny_model_path, capsys):
    source = gray_png(tmp_path / "in.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    code, _, err = run_cli(
        capsys, "denoise", source, "-o", out, "--model", tiny_model_path, "--force"
    )
    assert code == 0, err
    assert read_image(out)[0].shape == (20, 18, 1)


def test_missing_default_model_is_one_line(tmp_path, empty_weights, capsys):
    source = gray_png(tmp_path / "in.png")
    code, _, err = run_cli(capsys, "denoise", source, "-o", tmp_path / "out.png")
    assert code == 2
    assert err.startswith("filterscope: error: ") and err.count("\n") == 1
    assert "default model" in err
    assert not (tmp_path / "out.png").exists()


def test_help_states_units(capsys):
    with pytest.raises(SystemExit):
        cli_main.main(["denoise", "--help"])
    text = capsys.readouterr().out
    assert "pixels" in text and "--precision" in text and "--force" in text


# ---------------------------------------------------------------- bad input


def unknown_arch_checkpoint(folder: Path) -> Path:
    path = folder / "foo.safetensors"
    filterscope.save_model(filterscope.create_model("dncnn", num_layers=3, hidden=4), path, card={})
    card = json.loads(path.with_suffix(".json").read_text())
    card["arch"] = "foo"
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


class RunsCode:
    """Unpickling this would create a marker file through os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_file_is_one_line_exit_2(tmp_path, tiny_model_path, capsys, kind):
    source = make_bad_input(kind, tmp_path)
    out = tmp_path / "out.png"
    code, stdout, err = run_cli(capsys, "denoise", source, "-o", out, "--model", tiny_model_path)
    assert code == 2
    assert err.startswith("filterscope: error: ") and err.count("\n") == 1, err
    assert BAD_INPUTS[kind] in err
    assert not out.exists()
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_existing_output_is_untouched(tmp_path, tiny_model_path, capsys):
    source = gray_png(tmp_path / "in.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "denoise", source, "-o", out, "--model", tiny_model_path)
    assert code == 2
    assert err.startswith("filterscope: error: ") and err.count("\n") == 1
    assert "--force" in err
    assert out.read_bytes() == b"precious"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("pickler", ["pickle", "torch.save"])
def test_pickle_that_runs_code_is_refused(tmp_path, capsys, pickler):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pt"
    if pickler == "pickle":
        checkpoint.write_bytes(pickle.dumps({"arch": "dncnn", "payload": RunsCode(marker)}))
    else:
        torch.save({"arch": "dncnn", "payload": RunsCode(marker)}, checkpoint)
    source = gray_png(tmp_path / "in.png")
    code, _, err = run_cli(
        capsys, "denoise", source, "-o", tmp_path / "out.png", "--model", checkpoint
    )
    assert code == 2
    assert err.startswith("filterscope: error: ") and err.count("\n") == 1, err
    assert not marker.exists()
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("case", ["unknown_arch", "missing_file", "not_a_checkpoint"])
def test_bad_checkpoint_is_one_line_exit_2(tmp_path, capsys, case):
    if case == "unknown_arch":
        checkpoint, message = unknown_arch_checkpoint(tmp_path), "unknown architecture"
    elif case == "missing_file":
        checkpoint, message = tmp_path / "nothing.pt", "neither a shipped model"
    else:
        checkpoint, message = tmp_path / "junk.pt", "not a readable checkpoint"
        checkpoint.write_text("junk")
    source = gray_png(tmp_path / "in.png")
    code, _, err = run_cli(
        capsys, "denoise", source, "-o", tmp_path / "out.png", "--model", checkpoint
    )
    assert code == 2
    assert err.startswith("filterscope: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("option", "value"), [("--tile", "0"), ("--overlap", "-3"), ("--device", "nonsense")]
)
def test_bad_tiling_option(tmp_path, tiny_model_path, capsys, option, value):
    source = gray_png(tmp_path / "in.png")
    out = tmp_path / "out.png"
    code, _, err = run_cli(
        capsys, "denoise", source, "-o", out, "--model", tiny_model_path, option, value
    )
    assert code == 2 and err.count("\n") == 1
    assert not out.exists()


def test_console_script_prints_no_traceback(tmp_path):
    script = Path(sys.executable).parent / "filterscope"
    if not script.exists():
        pytest.skip("the filterscope console script is not installed next to this Python")
    missing = [m for m in ALL_COMMANDS.values() if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"command modules not written yet: {', '.join(missing)}")
    source = make_bad_input("truncated_png", tmp_path)
    proc = subprocess.run(
        [str(script), "denoise", str(source), "-o", str(tmp_path / "out.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("filterscope: error: ") and proc.stderr.count("\n") == 1


# ---------------------------------------------------------------- models


def test_models_with_none_shipped(empty_weights, capsys):
    code, stdout, _ = run_cli(capsys, "models")
    assert code == 0
    assert "none shipped yet" in stdout
    for arch in filterscope.list_models():
        assert arch in stdout
    assert "--model path/" in stdout


def test_models_lists_shipped_cards(tiny_model_path, empty_weights, capsys):
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_model_path.with_suffix(suffix), empty_weights / f"tiny-gray{suffix}")
    code, stdout, _ = run_cli(capsys, "models")
    assert code == 0
    line = next(line for line in stdout.splitlines() if "tiny-gray" in line)
    for text in ("dncnn", "bias-free", "gray", "0-55", "psnr", "20.00 dB"):
        assert text in line, line
