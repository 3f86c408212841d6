"""Faults a user can provoke (issue 19): each gives one line on stderr, exit status 2
(143 for SIGTERM), and leaves nothing partial: no temporary file, no half-written or
empty output, the user's own files untouched."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from filterscope.cli.main import main

# a fresh interpreter that runs the command line (for faults that need a process)
RUN_CLI = "import sys; from filterscope.cli.main import main; sys.exit(main(sys.argv[1:]))"


def gray_png(path: Path, size: tuple[int, int] = (37, 31), seed: int = 0) -> Path:
    """A random 8-bit gray PNG of ``size`` = (width, height)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size[::-1], dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def run(capsys, *argv: object) -> tuple[int, list[str]]:
    """Exit status and stderr lines of ``filterscope ARGV`` run in this process."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


def one_line(code: int, err: list[str], *fragments: str) -> None:
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("filterscope: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err


def leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes left in ``folder`` (and below)."""
    return sorted(p.name for p in folder.rglob(".filterscope-tmp-*"))


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for k in range(3):
        gray_png(folder / f"im{k}.png", (41, 37), seed=k)
    return folder


def tiny_recipe(tmp_path: Path, data: Path, **extra: str) -> Path:
    """A recipe that trains a 3-layer DnCNN for 2 steps (a checkpoint after each)."""
    lines = {
        "arch": '"dncnn"',
        "arch_options": "{ num_layers = 3, hidden = 4 }",
        "data_dir": f'"{data}"',
        "val_dir": f'"{data}"',
        "val_images": "1",
        "val_sigmas": "[25.0]",
        "patch_size": "16",
        "batch_size": "2",
        "steps": "2",
        "checkpoint_every": "1",
        "threads": "1",
        "tensorboard": "false",
        **extra,
    }
    path = tmp_path / "recipe.toml"
    path.write_text("".join(f"{key} = {value}\n" for key, value in lines.items()))
    return path


class Evil:
    def __reduce__(self):
        return (os.system, ("echo PWNED",))


# ------------------------------------------------------------------ 8: converted inputs


def palette_png(path: Path, size: tuple[int, int] = (37, 31)) -> Path:
    """A gray image stored as a palette PNG (read back as gray, with a notice)."""
    Image.open(gray_png(path, size)).convert("P").save(path)
    return path


@pytest.mark.parametrize("command", ["analyze filters", "ntk matrix"])
def test_a_converted_input_gives_one_warning_line_in_every_command(
    tmp_path, capsys, tiny_model_path, command
):
    import warnings

    image = palette_png(tmp_path / "p.png", (11, 9))
    argv = {
        "analyze filters": ["analyze", "filters", "--model", tiny_model_path, "--image", image,
                            "--sigma", "25", "--pixels", "3,4", "--json", tmp_path / "r.json"],
        "ntk matrix": ["ntk", "matrix", image, "-o", tmp_path / "k.npy"],
    }[command]  # fmt: skip
    before = warnings.showwarning
    code, err = run(capsys, *argv)
    assert code == 0, err
    assert len(err) == 1 and err[0].startswith(f"filterscope: warning: {image}: "), err
    assert "palette image converted to gray" in err[0]
    assert warnings.showwarning is before  # Python's own way is back afterwards


# ------------------------------------------------------------------ 11: SIGTERM


def test_sigterm_during_an_image_write_leaves_nothing(tmp_path):
    """The writer is stopped half-way (after 100 bytes) and SIGTERM arrives: no hidden
    temporary file, no output, exit 143 with one line."""
    source = gray_png(tmp_path / "in.png")
    out = tmp_path / "out.png"
    slow_writer = (
        "import sys, time\n"
        "from PIL import Image\n"
        "def save(self, fp, *args, **kwargs):\n"
        "    with open(fp, 'wb') as handle:\n"
        "        handle.write(b'x' * 100)\n"
        "    print('WRITING', flush=True)\n"
        "    time.sleep(60)\n"
        "Image.Image.save = save\n"
        "from filterscope.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", slow_writer, "denoise", str(source), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == "WRITING", process.stderr.read()
        assert leftovers(tmp_path)  # the temporary file exists while writing
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines() == ["filterscope: terminated"]
    assert leftovers(tmp_path) == []
    assert not out.exists()


# ------------------------------------------------------------------ 12: outputs


def test_train_out_on_an_existing_file(tmp_path, data, capsys):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    code, err = run(capsys, "train", "--recipe", tiny_recipe(tmp_path, data), "--out", target)
    one_line(code, err, "is a file")
    assert target.read_text() == "mine"


def test_demo_out_on_an_existing_file(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    code, err = run(capsys, "demo", "--out", target)
    one_line(code, err, "is a file")
    assert target.read_text() == "mine"


@pytest.mark.parametrize(
    "kind", ["random", "malicious", "malicious-plain-pickle", "pickle-protocol-4", "not-a-dict"]
)
def test_resume_from_a_bad_checkpoint(tmp_path, data, capsys, kind):
    """Never the advice to load with weights_only=False, never a warning line first."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoint = run_dir / "checkpoint.pt"
    if kind == "random":
        checkpoint.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "malicious":
        torch.save({"train_config": Evil()}, checkpoint)
    elif kind == "malicious-plain-pickle":
        checkpoint.write_bytes(pickle.dumps({"train_config": Evil()}, protocol=2))
    elif kind == "pickle-protocol-4":  # torch warns about the protocol, then cannot read it
        checkpoint.write_bytes(pickle.dumps({"train_config": Evil()}, protocol=4))
    else:
        torch.save([1, 2, 3], checkpoint)
    before = checkpoint.read_bytes()
    recipe = tiny_recipe(tmp_path, data)
    code, err = run(capsys, "train", "--recipe", recipe, "--out", run_dir, "--resume")
    one_line(code, err, "checkpoint.pt")
    assert "weights_only" not in err[0]
    if kind.startswith("malicious"):
        assert "could run code" in err[0]
    else:
        assert "not a" in err[0] and "could run code" not in err[0]
    assert checkpoint.read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]


def _train_with_file_size_limit(tmp_path: Path, data: Path, limit: int):
    """``filterscope train`` in a process that may not write files over ``limit`` bytes:
    writes beyond it fail as on a full disk (EFBIG instead of ENOSPC)."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, do not kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", RUN_CLI, "train", "--recipe", str(tiny_recipe(tmp_path, data))]
        + ["--out", str(run_dir), "--no-progress"],
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        timeout=300,
    )
    return done, run_dir


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
@pytest.mark.parametrize("limit", [0, 3000])
def test_full_disk_during_training(tmp_path, data, limit):
    """Limit 0: the very first file fails; 3000 bytes: the recipe and config fit, the
    checkpoint does not. One line; no empty recipe.toml, no temporary file."""
    done, run_dir = _train_with_file_size_limit(tmp_path, data, limit)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("filterscope: error: "), done.stderr
    assert leftovers(tmp_path) == []
    for written in run_dir.glob("*"):
        assert written.stat().st_size > 0, written
    if limit == 0:
        assert not (run_dir / "recipe.toml").exists()
    assert not (run_dir / "checkpoint.pt").exists()


def test_output_name_too_long(tmp_path, capsys):
    source = gray_png(tmp_path / "in.png")
    code, err = run(capsys, "denoise", source, "-o", tmp_path / ("a" * 300 + ".png"))
    one_line(code, err, "too long")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


# ------------------------------------------------------------------ 13: refused values


@pytest.mark.parametrize("command", ["filters", "dimension"])
def test_analyze_negative_sigma(tmp_path, capsys, tiny_model_path, command):
    image = gray_png(tmp_path / "in.png")
    report = tmp_path / "r.json"
    extra = ["--pixels", "10,10"] if command == "filters" else ["--probes", "2"]
    code, err = run(
        capsys, "analyze", command, "--model", tiny_model_path, "--image", image,
        "--sigma", "-5", "--json", report, *extra,
    )  # fmt: skip
    one_line(code, err, "-5")
    assert not report.exists()


def test_ntk_denoise_stop_zero_is_refused(tmp_path, capsys):
    """Zero twicing steps is the zero filter: a black image, so fewer than 1 is refused."""
    image = gray_png(tmp_path / "in.png")
    out = tmp_path / "o.png"
    argv = ["ntk", "denoise", image, "--sigma", "25", "-o", out, "--stop"]
    for steps in ("0", "0.5"):
        code, err = run(capsys, *argv, steps)
        one_line(code, err, "stop must be at least 1", steps)
        assert "--stop" not in err[0]  # the library names its parameter
        assert not out.exists()
    code, _ = run(capsys, *argv, "1")
    assert code == 0 and out.exists()


def test_train_with_a_missing_validation_folder(tmp_path, data, capsys):
    recipe = tiny_recipe(tmp_path, data, val_dir=f'"{tmp_path / "nowhere"}"')
    code, err = run(capsys, "train", "--recipe", recipe, "--out", tmp_path / "run")
    one_line(code, err, "val_dir", "nowhere")
    assert not (tmp_path / "run").exists()


def test_denoise_tile_floor(tmp_path, capsys, tiny_model_path):
    source = gray_png(tmp_path / "in.png")
    out = tmp_path / "out.png"
    code, err = run(capsys, "denoise", source, "-o", out, "--model", tiny_model_path, "--tile", "1")
    one_line(code, err, "tile must be at least", "work")
    assert not out.exists()


# ------------------------------------------------------------------ 14: the right words


def test_random_bytes_as_a_model_is_not_a_checkpoint(tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(np.random.default_rng(1).bytes(4096))
    code, err = run(capsys, "denoise", gray_png(tmp_path / "in.png"), "-o", tmp_path / "o.png",
                    "--model", model)  # fmt: skip
    one_line(code, err, "not a checkpoint")
    assert "could run code" not in err[0]


def test_malicious_pickle_gives_one_line_and_no_warning(tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(pickle.dumps({"state_dict": Evil()}, protocol=2))
    code, err = run(capsys, "denoise", gray_png(tmp_path / "in.png"), "-o", tmp_path / "o.png",
                    "--model", model)  # fmt: skip
    one_line(code, err, "could run code")


def test_train_on_a_folder_of_non_images(tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    for k in range(3):
        (junk / f"photo{k}.png").write_bytes(b"not an image at all")
    recipe = tiny_recipe(tmp_path, junk, val_dir='""')
    code, err = run(capsys, "train", "--recipe", recipe, "--out", tmp_path / "run")
    one_line(code, err, "no image could be read")


def test_card_with_a_word_for_a_number(tmp_path, capsys, tiny_model_path):
    import json

    card_path = tiny_model_path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["config"]["hidden"] = "sixty-four"
    card_path.write_text(json.dumps(card))
    code, err = run(capsys, "denoise", gray_png(tmp_path / "in.png"), "-o", tmp_path / "o.png",
                    "--model", tiny_model_path)  # fmt: skip
    one_line(code, err, "hidden", "integer", "sixty-four")
    assert "string formatting" not in err[0]


def test_negative_sigmas_reach_the_check(tmp_path, capsys, data):
    """argparse takes ``-10,20`` and ``-5`` as values; the command reports the negative."""
    code, err = run(capsys, "evaluate", "--model", "nlm", "--data", data, "--sigmas", "-10,20",
                    "--json", tmp_path / "r.json")  # fmt: skip
    one_line(code, err, "-10")
    recipe = tiny_recipe(tmp_path, data)
    code, err = run(capsys, "train", "--recipe", recipe, "--sigma-range", "-5", "10",
                    "--out", tmp_path / "run")  # fmt: skip
    one_line(code, err, "sigma_range", "-5")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ 15: consistency


def _all_actions():
    import argparse

    from filterscope.cli.main import build_parser

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*prefix, name])
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                yield " ".join(prefix), action

    yield from walk(build_parser(), [])


def test_every_option_has_help_text():
    missing = [
        f"{command} {'/'.join(action.option_strings) or action.dest}"
        for command, action in _all_actions()
        if not action.help
    ]
    assert missing == []


def test_plotting_returns_figures_and_leaves_matplotlib_alone(tmp_path):
    """Without a path a plotting function returns its figure; with one it writes it. A
    notebook's backend stays selected and pyplot is never imported."""
    matplotlib = pytest.importorskip("matplotlib")
    code = (
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "from filterscope.plotting import plot_dimension\n"
        "result = {'samples': [10.0, 12.0, 11.0], 'interval': [9.5, 12.5], 'confidence': 0.95}\n"
        f"plot_dimension(result, {str(tmp_path / 'd.png')!r})\n"
        "figure = plot_dimension(result)\n"  # no path: the figure itself
        "import sys\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules,"
        " type(figure).__name__, len(figure.axes))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False", "Figure", "1"]
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend()  # this process's backend untouched too


def test_commands_that_run_a_network_take_device():
    options: dict[str, set[str]] = {}
    for command, action in _all_actions():
        options.setdefault(command, set()).update(action.option_strings)
    runs_a_network = {
        command
        for command, names in options.items()
        if names & {"--model", "--arch", "--recipe", "--bias-model"}
    } | {"experiment generalization"}  # trains its own two networks
    assert {"denoise", "demo", "dip", "train", "analyze filters", "explore"} <= runs_a_network
    missing = sorted(c for c in runs_a_network if "--device" not in options[c])
    assert not missing, missing


def test_quiet_silences_progress_bars():
    """Every command that draws a progress bar can be silenced with --quiet."""
    options: dict[str, dict[str, str]] = {}
    for command, action in _all_actions():
        for name in action.option_strings:
            options.setdefault(command, {})[name] = action.dest
    with_bars = {"denoise", "dip", "evaluate", "experiment generalization", "train"}
    for command in with_bars:
        assert "--quiet" in options[command], command
    for command, names in options.items():
        if "--no-progress" in names:  # one switch under two names
            assert names.get("--quiet") == names["--no-progress"], command


#: A short run of each command that takes --device, writing to OUT (explore writes
#: nothing and serves until stopped: it is only run to be refused).
DEVICE_RUNS = {
    "denoise": "denoise IMG -o OUT --model MODEL",
    "demo": "demo --out OUT --model MODEL",
    "dip": "dip IMG -o OUT --sigma 25 --iters 2 --width 4",
    "evaluate": "evaluate --model MODEL --data DATA --sigmas 25 --json OUT",
    "analyze decomposition": "analyze decomposition --model MODEL --data DATA --sigmas 25 "
    "--patches 3 --json OUT",
    "analyze dimension": "analyze dimension --model MODEL --image IMG --sigma 25 --probes 2 "
    "--json OUT",
    "analyze filters": "analyze filters --model MODEL --image IMG --sigma 25 --pixels 3,4 "
    "--json OUT",
    "analyze spectrum": "analyze spectrum --model MODEL --image IMG --sigmas 25 --patch 6 "
    "--json OUT",
    "experiment generalization": "experiment generalization --quick --steps 2 --data-dir DATA "
    "--test-dir DATA --val-dir DATA --out OUT",
    "experiment restoration": "experiment restoration --bias-model MODEL --bias-free-model "
    "MODEL --test-dir DATA --sigmas 25 --blurs 0,2 --out OUT",
    "explore": "explore IMG --model MODEL --no-browser --port 0",
}


def device_argv(command: str, tmp_path: Path, data: Path, model: Path) -> tuple[list, Path]:
    out = tmp_path / "out"
    words = {"IMG": data / "im0.png", "OUT": out, "MODEL": model, "DATA": data}
    return [words.get(word, word) for word in DEVICE_RUNS[command].split()], out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", sorted(DEVICE_RUNS))
def test_an_absent_device_is_refused_before_any_work(
    tmp_path, capsys, data, tiny_model_path, command
):
    argv, out = device_argv(command, tmp_path, data, tiny_model_path)
    code, err = run(capsys, *argv, "--device", "cuda")
    one_line(code, err, "cuda")
    assert not out.exists()


@pytest.mark.parametrize("command", ["analyze filters", "analyze spectrum", "analyze dimension"])
def test_device_auto_and_cpu_give_the_same_report(tmp_path, capsys, data, tiny_model_path, command):
    """On this machine auto is the CPU: the same numbers either way; a name that is no
    device is one line."""
    import json

    reports = []
    for device in ("auto", "cpu"):
        argv, out = device_argv(command, tmp_path / device, data, tiny_model_path)
        (tmp_path / device).mkdir()
        assert main([str(a) for a in [*argv, "--device", device]]) == 0
        reports.append({k: v for k, v in json.loads(out.read_text()).items() if "seconds" not in k})
    assert reports[0] == reports[1]
    argv, out = device_argv(command, tmp_path / "auto", data, tiny_model_path)
    code, err = run(capsys, *argv, "--force", "--device", "gpu7")
    one_line(code, err, "gpu7")
