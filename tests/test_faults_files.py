"""Faults through the command line (issue 34, parts 3 and 4): bad image files, outputs
that would replace an input or another output, bad noise levels, and models without a
Jacobian, over every command that reads an image.

Every case runs ``filterscope`` in this process (``main(argv)``) and checks the same
promise: exit status 2, one line ``filterscope: error: ...`` on stderr (so no
traceback), and the folder exactly as it was (nothing created, nothing overwritten).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from filterscope.cli.main import main

#: One short run per command that reads an image file: IMG is the image, OUT the
#: output's stem (a suffix follows), MODEL a tiny DnCNN checkpoint.
IMAGE_COMMANDS = {
    "denoise": "denoise IMG -o OUT.png --model MODEL",
    "dip": "dip IMG -o OUT.png --sigma 25 --iters 2 --width 4",
    "ntk denoise": "ntk denoise IMG -o OUT.png --sigma 25 --kernel 3",
    "ntk matrix": "ntk matrix IMG -o OUT.npy --kernel 3",
    "ntk eigenimages": "ntk eigenimages IMG -o OUT.npy --kernel 3 -n 2",
    "analyze filters": "analyze filters --model MODEL --image IMG --sigma 25 --pixels 3,4 "
    "--json OUT.json",
    "analyze spectrum": "analyze spectrum --model MODEL --image IMG --sigmas 25 --patch 6 "
    "--json OUT.json",
    "analyze dimension": "analyze dimension --model MODEL --image IMG --sigma 25 --probes 2 "
    "--json OUT.json",
}

#: Commands that read a folder of images (DATA).
FOLDER_COMMANDS = {
    "denoise folder": "denoise DATA -o OUT --model MODEL",
    "evaluate": "evaluate --model MODEL --data DATA --sigmas 25 --json OUT.json",
    "analyze decomposition": "analyze decomposition --model MODEL --data DATA --sigmas 25 "
    "--patches 2 --json OUT.json",
}


def gray_png(path: Path, size: tuple[int, int] = (23, 19), seed: int = 0) -> Path:
    """A random 8-bit gray PNG of ``size`` = (width, height)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size[::-1], dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry below ``folder`` (links not followed) with a digest of its bytes."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                entries[key] = "link:" + os.readlink(path)
            elif path.is_dir():
                entries[key] = "dir"
            else:
                entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def argv_of(template: str, **words: object) -> list[str]:
    out = []
    for word in template.split():
        for key, value in words.items():
            word = word.replace(key, str(value))
        out.append(word)
    return out


def refused(capsys, argv: list[str], folder: Path, *fragments: str) -> str:
    """Run ``argv``; assert exit 2, one error line naming ``fragments``, ``folder`` unchanged."""
    before = snapshot(folder)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    errors = [line for line in err if line.startswith("filterscope: error: ")]
    assert len(errors) >= 1 and len(err) <= 2, err  # a folder adds "1 of N images failed"
    assert not any("Traceback" in line for line in err), err
    for fragment in fragments:
        assert fragment in errors[0], err
    assert snapshot(folder) == before
    return errors[0]


@pytest.fixture
def work(tmp_path, tiny_model_path) -> Path:
    """A folder with a good image, a folder of images and a tiny model."""
    gray_png(tmp_path / "good.png")
    data = tmp_path / "data"
    data.mkdir()
    for k in range(2):
        gray_png(data / f"p{k}.png", seed=k + 1)
    return tmp_path


# ----------------------------------------------------------------- bad image files


def _write_bad(kind: str, folder: Path) -> Path:
    path = folder / f"bad-{kind}.png"
    if kind == "missing":
        return folder / "missing.png"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(2048))
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "truncated":
        good = gray_png(folder / "whole.png", (64, 64))
        path.write_bytes(good.read_bytes()[:200])
        good.unlink()
    elif kind == "one-pixel":
        Image.fromarray(np.zeros((1, 1), np.uint8)).save(path)
    elif kind == "one-row":
        Image.fromarray(np.zeros((1, 40), np.uint8)).save(path)
    elif kind == "one-column":
        Image.fromarray(np.zeros((40, 1), np.uint8)).save(path)
    elif kind == "alpha":
        Image.fromarray(np.zeros((20, 20, 4), np.uint8), mode="RGBA").save(path)
    elif kind == "gray-alpha":
        Image.fromarray(np.zeros((20, 20), np.uint8)).convert("LA").save(path)
    elif kind in ("nan-tiff", "inf-tiff"):
        import tifffile

        path = folder / f"bad-{kind}.tif"
        pixels = np.full((20, 21), 0.5, np.float32)
        pixels[3, 5] = np.nan if kind == "nan-tiff" else np.inf
        tifffile.imwrite(path, pixels)
    elif kind == "link-loop":
        os.symlink(path.name, path)
    elif kind == "broken-link":
        os.symlink("nowhere.png", path)
    else:
        raise AssertionError(kind)
    return path


BAD_IMAGES = {
    "missing": "no such file",
    "directory": "directory",
    "empty": "",
    "random-bytes": "",
    "text": "",
    "truncated": "",
    "one-pixel": "each side needs at least 2",
    "one-row": "each side needs at least 2",
    "one-column": "each side needs at least 2",
    "alpha": "alpha",
    "gray-alpha": "alpha",
    "nan-tiff": "(x, y) = (5, 3)",
    "inf-tiff": "(x, y) = (5, 3)",
    "link-loop": "link",
    "broken-link": "link",
}


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
@pytest.mark.parametrize("command", sorted(IMAGE_COMMANDS))
def test_a_bad_image_is_one_line(work, capsys, tiny_model_path, command, kind):
    image = _write_bad(kind, work)
    argv = argv_of(IMAGE_COMMANDS[command], IMG=image, OUT=work / "out", MODEL=tiny_model_path)
    message = refused(capsys, argv, work, BAD_IMAGES[kind])
    assert image.name in message


@pytest.mark.parametrize("kind", ["link-loop", "broken-link", "empty", "text", "one-row"])
def test_a_bad_file_in_a_folder_fails_alone(work, capsys, tiny_model_path, kind):
    """denoise of a folder: the bad file is one line, the good ones are written."""
    bad = _write_bad(kind, work / "data")
    out = work / "out"
    code = main(["denoise", str(work / "data"), "-o", str(out), "--model", str(tiny_model_path),
                 "--precision", "float32", "-q"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[0].startswith("filterscope: error: ") and bad.name in err[0], err
    assert err[1:] == ["filterscope: 1 of 3 images failed (listed above)"]
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]


def test_temporary_files_of_a_killed_write_are_not_inputs(work, capsys, tiny_model_path):
    """A 0-byte temporary file left by SIGKILL is skipped when the folder is read; the
    temporary files of writes carry a recognisable name."""
    from filterscope._files import TMP_PREFIX, atomic_write, is_temporary
    from filterscope.io import list_images

    stale = work / "data" / f"{TMP_PREFIX}abc123.png"
    stale.write_bytes(b"")
    (work / "data" / ".tmp-old.png").write_bytes(b"")  # the name older versions used
    assert [p.name for p in list_images(work / "data")] == ["p0.png", "p1.png"]
    seen = []
    atomic_write(work / "x.txt", lambda name: seen.append(Path(name).name) or None)
    assert seen[0].startswith(TMP_PREFIX) and is_temporary(seen[0])
    assert not is_temporary(work / "x.txt")


def test_stale_temporary_files_are_cleaned_and_fresh_ones_left(tmp_path):
    """A write into a folder removes our temporary files older than a day (a killed
    process left them); a fresh one (a write running elsewhere) and other files stay."""
    from filterscope import _files

    stale = tmp_path / f"{_files.TMP_PREFIX}old.png"
    fresh = tmp_path / f"{_files.TMP_PREFIX}new.png"
    mine = tmp_path / "old-photo.png"
    for path in (stale, fresh, mine):
        path.write_bytes(b"")
    day_ago = os.stat(stale).st_mtime - _files.STALE_AFTER_S - 60
    for path in (stale, mine):
        os.utime(path, (day_ago, day_ago))
    _files._swept.discard(tmp_path)
    _files.atomic_write(tmp_path / "r.txt", lambda name: Path(name).write_text("x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, mine.name, "r.txt"])


# ----------------------------------------------------------------- outputs


#: (command, the options that name outputs) for the output clashes below.
OUTPUT_COMMANDS = {
    "denoise": ("denoise IMG -o OUT --model MODEL --json JSON", "--json"),
    "dip": ("dip IMG -o OUT --sigma 25 --iters 2 --width 4 --json JSON", "--json"),
    "ntk denoise": ("ntk denoise IMG -o OUT --sigma 25 --kernel 3 --json JSON", "--json"),
    "analyze filters": ("analyze filters --model MODEL --image IMG --sigma 25 --pixels 3,4 "
                        "--json JSON", "--json"),
    "analyze spectrum": ("analyze spectrum --model MODEL --image IMG --sigmas 25 --patch 6 "
                         "--json JSON", "--json"),
    "analyze dimension": ("analyze dimension --model MODEL --image IMG --sigma 25 --probes 2 "
                          "--json JSON", "--json"),
    "evaluate": ("evaluate --model MODEL --data DATA --sigmas 25 --json JSON", "--json"),
    "analyze decomposition": ("analyze decomposition --model MODEL --data DATA --sigmas 25 "
                              "--patches 2 --json JSON", "--json"),
}  # fmt: skip


def _clash_argv(command: str, work: Path, model: Path, json_target: Path, out: Path) -> list:
    template, _ = OUTPUT_COMMANDS[command]
    return argv_of(
        template, IMG=work / "good.png", OUT=out, MODEL=model, DATA=work / "data",
        JSON=json_target,
    )  # fmt: skip


#: What each --json target below is, and the word of the templates that reads it.
READS = {"the image": "IMG", "a folder image": "DATA", "the model": "MODEL", "the card": "MODEL"}


def _json_on_input_cases():
    for command, (template, _) in sorted(OUTPUT_COMMANDS.items()):
        for target, word in READS.items():
            if word in template.split():  # only what the command reads
                yield command, target


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("command, target", list(_json_on_input_cases()))
def test_json_on_an_input_is_refused_even_with_force(
    work, capsys, tiny_model_path, command, target, force
):
    paths = {
        "the image": work / "good.png",
        "a folder image": work / "data" / "p1.png",
        "the model": tiny_model_path,
        "the card": tiny_model_path.with_suffix(".json"),
    }
    argv = _clash_argv(command, work, tiny_model_path, paths[target], work / "out.png")
    refused(capsys, argv + (["--force"] if force else []), work, "is an input", "--json")


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("command", ["denoise", "dip", "ntk denoise"])
def test_json_on_the_output_image_is_refused(work, capsys, tiny_model_path, command, force):
    out = work / "out.png"
    argv = _clash_argv(command, work, tiny_model_path, out, out)
    refused(capsys, argv + (["--force"] if force else []), work, "out.png")


@pytest.mark.parametrize("force", [False, True])
def test_denoise_json_on_an_image_of_the_output_folder(work, capsys, tiny_model_path, force):
    out = work / "OUT"
    argv = ["denoise", work / "data", "-o", out, "--model", tiny_model_path,
            "--json", out / "p0.png", *(["--force"] if force else [])]  # fmt: skip
    refused(capsys, argv, work, "is an output image", "--json")


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("command", ["denoise", "dip", "ntk denoise"])
def test_output_image_on_its_input_is_refused(work, capsys, tiny_model_path, command, force):
    image = work / "good.png"
    argv = _clash_argv(command, work, tiny_model_path, work / "r.json", image)
    refused(capsys, argv + (["--force"] if force else []), work, "good.png")


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_json_in_a_missing_folder(work, capsys, tiny_model_path, command):
    argv = _clash_argv(command, work, tiny_model_path, work / "no" / "r.json", work / "o.png")
    refused(capsys, argv, work, "does not exist")


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_json_on_a_folder(work, capsys, tiny_model_path, command):
    (work / "adir").mkdir()
    argv = _clash_argv(command, work, tiny_model_path, work / "adir", work / "o.png")
    refused(capsys, argv, work, "directory")


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_existing_json_without_force(work, capsys, tiny_model_path, command):
    (work / "r.json").write_text("mine")
    argv = _clash_argv(command, work, tiny_model_path, work / "r.json", work / "o.png")
    refused(capsys, argv, work, "already exists", "--force")


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_json_through_a_link_loop(work, capsys, tiny_model_path, command):
    loop = work / "loop.json"
    os.symlink(loop.name, loop)
    argv = _clash_argv(command, work, tiny_model_path, loop, work / "o.png")
    refused(capsys, argv, work, "loop.json")


def test_evaluate_csv_and_plot_on_inputs(work, capsys, tiny_model_path):
    base = ["evaluate", "--model", tiny_model_path, "--data", work / "data", "--sigmas", "25"]
    refused(capsys, [*base, "--csv", work / "data" / "p0.png", "--force"], work, "--csv")
    refused(capsys, [*base, "--plot", tiny_model_path.with_suffix(".json")], work, "--plot")
    refused(capsys, [*base, "--json", work / "r.json", "--csv", work / "r.json"], work, "both")


def test_ntk_outputs_on_their_input(work, capsys):
    image = work / "good.png"
    for argv in (
        ["ntk", "matrix", image, "-o", work / "good.npy", "--json", image],
        ["ntk", "eigenimages", image, "-o", work / "e.npy", "--json", image, "--force"],
        ["ntk", "denoise", image, "-o", work / "o.png", "--sigma", "25", "--json", image],
    ):
        if argv[1] == "matrix":  # matrix has no --json: its -o is checked instead
            argv = ["ntk", "matrix", image, "-o", work / "good.npy", "--force"]
            assert main([str(a) for a in argv]) == 0
            (work / "good.npy").unlink()
            capsys.readouterr()
            continue
        refused(capsys, argv, work, "is an input")


# ----------------------------------------------------------------- noise levels


BAD_SIGMA_LISTS = ["10:0:10", "100:10:10", "10:100:0", "10:100:-5", "1:2:3:4", "a,b", ",",
                   "-5", "10,-1", "nan", "25:30"]  # fmt: skip
SIGMA_LIST_COMMANDS = {
    "evaluate": "evaluate --model MODEL --data DATA --sigmas S --json OUT.json",
    "analyze spectrum": "analyze spectrum --model MODEL --image IMG --sigmas S --patch 6 "
    "--json OUT.json",
    "analyze decomposition": "analyze decomposition --model MODEL --data DATA --sigmas S "
    "--patches 2 --json OUT.json",
}


@pytest.mark.parametrize("sigmas", BAD_SIGMA_LISTS)
@pytest.mark.parametrize("command", sorted(SIGMA_LIST_COMMANDS))
def test_bad_sigma_lists(work, capsys, tiny_model_path, command, sigmas):
    argv = argv_of(SIGMA_LIST_COMMANDS[command], MODEL=tiny_model_path, DATA=work / "data",
                   IMG=work / "good.png", OUT=work / "out")  # fmt: skip
    argv[argv.index("S")] = sigmas
    refused(capsys, argv, work)


SIGMA_COMMANDS = {
    "denoise": "denoise IMG -o OUT.png --model MODEL --sigma S",
    "dip": "dip IMG -o OUT.png --iters 2 --width 4 --sigma S",
    "ntk denoise": "ntk denoise IMG -o OUT.png --kernel 3 --sigma S",
    "analyze filters": "analyze filters --model MODEL --image IMG --pixels 3,4 --json OUT.json "
    "--sigma S",
    "analyze dimension": "analyze dimension --model MODEL --image IMG --probes 2 --json OUT.json "
    "--sigma S",
}


@pytest.mark.parametrize("sigma", ["-5", "nan", "inf", "-inf"])
@pytest.mark.parametrize("command", sorted(SIGMA_COMMANDS))
def test_bad_sigma(work, capsys, tiny_model_path, command, sigma):
    argv = argv_of(SIGMA_COMMANDS[command], MODEL=tiny_model_path, IMG=work / "good.png",
                   OUT=work / "out")  # fmt: skip
    argv[argv.index("S")] = sigma
    refused(capsys, argv, work)


def test_denoise_sigma_above_255(work, capsys, tiny_model_path):
    argv = ["denoise", work / "good.png", "-o", work / "o.png", "--sigma", "300"]
    refused(capsys, argv, work, "0 to 255")


# ----------------------------------------------------------------- models without a Jacobian


ANALYSES = {
    "filters": "analyze filters --image IMG --sigma 25 --pixels 3,4 --json OUT.json",
    "spectrum": "analyze spectrum --image IMG --sigmas 25 --patch 6 --json OUT.json",
    "dimension": "analyze dimension --image IMG --sigma 25 --probes 2 --json OUT.json",
    "decomposition": "analyze decomposition --data DATA --sigmas 25 --patches 2 --patch 6 "
    "--json OUT.json",
}


@pytest.mark.parametrize(
    "model", ["bm3d", "bm3d:estimate", "nlm", "nlm:estimate", "ntk", "nlm-twicing"]
)
@pytest.mark.parametrize("analysis", sorted(ANALYSES))
def test_a_model_without_a_jacobian_is_one_line(work, capsys, analysis, model):
    """Non-blind models get sigma (no "needs the noise level" error), and a model torch
    cannot differentiate says so in one line (no deepcopy traceback for BM3D)."""
    argv = argv_of(ANALYSES[analysis], IMG=work / "good.png", DATA=work / "data",
                   OUT=work / "out")  # fmt: skip
    message = refused(capsys, [*argv, "--model", model], work, "has no Jacobian")
    assert "needs the noise level" not in message


def test_a_non_blind_model_is_given_sigma_in_the_analyses():
    """with_sigma gives a non-blind denoiser the sigma on every call; blind ones as they are."""
    import torch

    from filterscope.models.base import Denoiser, GivenSigma, with_sigma

    class NeedsSigma(Denoiser):
        blind = False

        def forward(self, y, sigma=None, **kwargs):
            return y * self.require_sigma(sigma)

    model = NeedsSigma()
    wrapped = with_sigma(model, 0.25)
    assert isinstance(wrapped, GivenSigma)
    y = torch.ones(1, 1, 3, 3, requires_grad=True)
    assert torch.equal(wrapped(y), y * 0.25)
    wrapped(y).sum().backward()  # differentiable through the wrapper
    assert torch.allclose(y.grad, torch.full_like(y, 0.25))
    blind = NeedsSigma()
    blind.blind = True
    assert with_sigma(blind, 0.25) is blind


# ----------------------------------------------------------------- bad models


#: Every command that takes a model, with MODEL in its place.
MODEL_COMMANDS = {
    "denoise": "denoise IMG -o OUT.png --model MODEL",
    "evaluate": "evaluate --model MODEL --data DATA --sigmas 25 --json OUT.json",
    "analyze filters": "analyze filters --model MODEL --image IMG --sigma 25 --pixels 3,4 "
    "--json OUT.json",
    "analyze spectrum": "analyze spectrum --model MODEL --image IMG --sigmas 25 --patch 6 "
    "--json OUT.json",
    "analyze dimension": "analyze dimension --model MODEL --image IMG --sigma 25 --probes 2 "
    "--json OUT.json",
    "analyze decomposition": "analyze decomposition --model MODEL --data DATA --sigmas 25 "
    "--patches 2 --patch 6 --json OUT.json",
    "demo": "demo --out OUT --model MODEL",
    "explore": "explore IMG --model MODEL --no-browser --port 0",
    "experiment restoration": "experiment restoration --bias-model MODEL --bias-free-model "
    "MODEL --test-dir DATA --sigmas 25 --blurs 0,2 --out OUT",
}


def _bad_model(kind: str, folder: Path) -> Path | str:
    if kind == "unknown name":
        return "no-such-model"
    if kind == "missing file":
        return folder / "missing.pt"
    path = folder / {"random .pt": "m.pt", "empty .safetensors": "m.safetensors",
                     "text .pt": "t.pt", "folder": "models"}[kind]  # fmt: skip
    if kind == "random .pt":
        path.write_bytes(np.random.default_rng(2).bytes(4096))
    elif kind == "empty .safetensors":
        path.write_bytes(b"")
    elif kind == "text .pt":
        path.write_text("not a checkpoint\n")
    else:
        path.mkdir()
    return path


@pytest.mark.parametrize(
    "kind", ["unknown name", "missing file", "random .pt", "empty .safetensors", "text .pt",
             "folder"]
)  # fmt: skip
@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_a_bad_model_is_one_line_in_every_command(work, capsys, command, kind):
    model = _bad_model(kind, work)
    argv = argv_of(MODEL_COMMANDS[command], IMG=work / "good.png", DATA=work / "data",
                   OUT=work / "out", MODEL=model)  # fmt: skip
    message = refused(capsys, argv, work)
    assert Path(str(model)).name in message
