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
from filterscope.models import shipped
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
    monkeypatch.setattr(shipped, "weights_dir", lambda: folder)
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


# ---------------------------------------------------------------- many files


def test_folder_of_three_images_gives_three_outputs(tmp_path, tiny_model_path, capsys):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        gray_png(tmp_path / "in" / name)
    code, stdout, err = run_cli(
        capsys, "denoise", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_model_path
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]
    assert stdout.count("wrote") == 3
    assert "denoising" in err and "image" in err  # a progress bar over the files


def test_each_failure_is_one_line_and_the_rest_go_on(tmp_path, tiny_model_path, capsys):
    good = [gray_png(tmp_path / "a.png"), gray_png(tmp_path / "c.png")]
    bad = make_bad_input("truncated_png", tmp_path)
    report = tmp_path / "summary.json"
    code, stdout, err = run_cli(
        capsys,
        "denoise",
        good[0],
        bad,
        good[1],
        "-o",
        tmp_path / "out",
        "--model",
        tiny_model_path,
        "--json",
        report,
        "--quiet",
    )
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("filterscope: error: ")]
    assert len(errors) == 1 and "truncated.png" in errors[0]
    assert "1 of 3 images failed" in err
    assert "denoising" not in err and stdout == ""  # --quiet: no bars, no lines per file
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    summary = json.loads(report.read_text())
    assert (summary["images"], summary["failed"]) == (3, 1)
    ok = summary["files"][0]
    assert ok["status"] == "ok" and ok["width"] == 18 and ok["height"] == 20
    assert ok["tiles"] == 1 and ok["seconds"] >= 0 and ok["input_bytes"] > 0
    assert ok["estimated_noise_255"] > 0
    assert summary["files"][1]["status"] == "failed" and "truncated" in summary["files"][1]["error"]


def test_many_files_never_overwrite_without_force(tmp_path, tiny_model_path, capsys):
    sources = [gray_png(tmp_path / "a.png"), gray_png(tmp_path / "b.png")]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"precious")
    code, _, err = run_cli(
        capsys, "denoise", *sources, "-o", tmp_path / "out", "--model", tiny_model_path
    )
    assert code == 2 and "--force" in err
    assert (tmp_path / "out" / "a.png").read_bytes() == b"precious"
    assert (tmp_path / "out" / "b.png").exists()
    code, _, err = run_cli(
        capsys, "denoise", *sources, "-o", tmp_path / "out", "--model", tiny_model_path, "--force"
    )
    assert code == 0, err
    assert read_image(tmp_path / "out" / "a.png")[0].shape == (20, 18, 1)


def test_existing_json_is_refused_before_any_work(tmp_path, tiny_model_path, capsys):
    source = gray_png(tmp_path / "a.png")
    (tmp_path / "s.json").write_text("{}")
    code, _, err = run_cli(
        capsys, "denoise", source, "-o", tmp_path / "o.png", "--json", tmp_path / "s.json"
    )
    assert code == 2 and err.count("\n") == 1 and "already exists (use --force" in err
    assert not (tmp_path / "o.png").exists() and (tmp_path / "s.json").read_text() == "{}"


def test_colour_model_on_gray_image_is_one_line(tmp_path, tiny_color_model_path, capsys):
    source = gray_png(tmp_path / "gray.png")
    code, _, err = run_cli(
        capsys, "denoise", source, "-o", tmp_path / "o.png", "--model", tiny_color_model_path
    )
    assert code == 2 and err.count("\n") == 1
    assert "gray.png" in err and "3 channels" in err and "1 channel" in err
    assert not (tmp_path / "o.png").exists()


def test_cmyk_input_gives_a_one_line_warning(tmp_path, tiny_model_path, capsys):
    from PIL import Image

    cmyk = (np.random.default_rng(0).random((31, 37, 4)) * 255).astype(np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "print.jpg")
    code, _, err = run_cli(
        capsys,
        "denoise",
        tmp_path / "print.jpg",
        "-o",
        tmp_path / "o.png",
        "--model",
        tiny_model_path,
    )
    assert code == 0, err
    assert err.count("filterscope: warning: ") == 1
    assert "print.jpg: CMYK image converted to RGB" in err
    assert read_image(tmp_path / "o.png")[1].channels == 3


def test_sigma_and_ensemble_reach_the_library(tmp_path, tiny_model_path, capsys, monkeypatch):
    from filterscope import inference

    seen = {}

    def fake_denoise_files(inputs, output, options, **keywords):
        seen.update(vars(options))  # the command builds one DenoiseOptions
        return []

    monkeypatch.setattr(inference, "denoise_files", fake_denoise_files)
    source = gray_png(tmp_path / "a.png")
    code, _, err = run_cli(
        capsys, "denoise", source, "-o", tmp_path / "o.png", "--sigma", "25", "--ensemble"
    )
    assert code == 0, err
    assert seen["sigma"] == pytest.approx(25 / 255) and seen["ensemble"] is True


def test_negative_sigma_is_refused(tmp_path, capsys):
    source = gray_png(tmp_path / "a.png")
    code, _, err = run_cli(capsys, "denoise", source, "-o", tmp_path / "o.png", "--sigma", "-5")
    assert code == 2 and err.count("\n") == 1 and "0-255" in err


def test_help_explains_sigma_for_blind_models(capsys):
    with pytest.raises(SystemExit):
        cli_main.main(["denoise", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0-255 scale" in text and "blind models (dncnn) ignore it" in text
    assert "--ensemble" in text and "--quiet" in text and "--json" in text


def test_ntk_denoise_keeps_the_bit_depth_like_denoise(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(cli_main.COMMANDS, "ntk", "filterscope.cli.ntk")
    image = np.random.default_rng(0).random((13, 11, 1), dtype=np.float32)
    write_image(tmp_path / "in.png", image, dtype="uint16")
    out = tmp_path / "out.png"
    argv = ["ntk", "denoise", tmp_path / "in.png", "--sigma", "25", "--kernel", "3"]
    code, _, err = run_cli(capsys, *argv, "--columns", "0.5", "-o", out)
    assert code == 0, err
    assert read_image(out)[1].dtype == "uint16"


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
    # A folder is an input the command takes: this one holds no image.
    assert (BAD_INPUTS[kind] if kind != "directory" else "no image files") in err
    assert not out.exists()
    assert not any(p.name.startswith(".filterscope-tmp-") for p in tmp_path.iterdir())


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
        checkpoint, message = tmp_path / "nothing.pt", "no such checkpoint file"
    else:
        checkpoint, message = tmp_path / "junk.pt", "not a "  # "not a (readable) checkpoint"
        checkpoint.write_text("junk")
    source = gray_png(tmp_path / "in.png")
    code, _, err = run_cli(
        capsys, "denoise", source, "-o", tmp_path / "out.png", "--model", checkpoint
    )
    assert code == 2
    assert err.startswith("filterscope: error: ") and err.count("\n") == 1, err
    assert message in err and (case != "not_a_checkpoint" or "checkpoint" in err)
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


def test_default_model_denoises_an_image_too_small_to_estimate_its_noise(tmp_path, capsys):
    # The default gray model estimates σ from 8 pixels a side up; below, its blind mode.
    source = gray_png(tmp_path / "tiny.png", height=5, width=6)
    out, summary = tmp_path / "out.png", tmp_path / "summary.json"
    code, _, err = run_cli(capsys, "denoise", source, "-o", out, "--json", summary)
    assert code == 0, err
    assert read_image(out)[0].shape == (5, 6, 1)
    (record,) = json.loads(summary.read_text())["files"]
    assert record["estimated_noise_255"] is None
