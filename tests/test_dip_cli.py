"""``filterscope dip``: a tiny run end to end, and every bad input as one line + exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from filterscope.cli.main import main
from filterscope.io import read_image, write_image


def _write(path, h=16, w=16, c=3, seed=0):
    rng = np.random.default_rng(seed)
    write_image(path, rng.random((h, w, c)), overwrite=True)
    return str(path)


@pytest.fixture
def images(tmp_path):
    return {
        "noisy": _write(tmp_path / "noisy.png", seed=0),
        "clean": _write(tmp_path / "clean.png", seed=1),
        "other": _write(tmp_path / "other.png", h=12, seed=2),
        "out": str(tmp_path / "out.png"),
        "json": str(tmp_path / "report.json"),
        "tmp": tmp_path,
    }


TINY = ["--width", "4", "--iters", "5"]


def test_dip_writes_the_estimate_and_a_json_trajectory(images, capsys):
    argv = ["dip", images["noisy"], "--arch", "unet", "--input", "image", *TINY]
    argv += ["--clean", images["clean"], "--sigma", "25", "--weight-log", "2"]
    assert main([*argv, "-o", images["out"], "--json", images["json"]]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"wrote {images['out']}") and "kept by oracle" in out
    assert "psnr=" in err  # the progress bar shows the current PSNR
    image, _ = read_image(images["out"])
    assert image.shape == (16, 16, 3)
    report = json.loads(open(images["json"]).read())
    traj = report["trajectory"]
    assert traj["iteration"] == [0, 1, 2, 3, 4, 5]
    assert len(traj["psnr"]) == 6 and len(traj["loss"]) == 6
    assert report["config"]["arch"] == "unet" and report["config"]["sigma_255"] == 25
    assert report["choices"]["oracle_psnr"] == max(traj["psnr"])
    assert [w["iteration"] for w in report["weights"]] == [0, 2, 4, 5]
    assert {"total_s", "forward_backward_s", "outside_share"} <= set(report["timing"])


def test_dip_sure_stopping_and_force(images, capsys):
    argv = ["dip", images["noisy"], "--arch", "vanilla", "--optimizer", "gd", *TINY]
    argv += ["--sigma", "25", "-o", images["out"]]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "kept by sure" in out and "sure=" in err
    assert main(argv) == 2  # exists now
    assert main([*argv, "--force"]) == 0


@pytest.mark.parametrize(
    "extra",
    [
        ["--lr", "0"],
        ["--lr", "-0.1"],
        ["--width", "0"],
        ["--width", "-2"],
        ["--iters", "0"],
        ["--iters", "-3"],
        ["--sigma", "0"],
        ["--stop", "sure"],  # no --sigma
        ["--stop", "oracle"],  # no --clean
        ["--clean", "{other}"],  # another size
        ["--clean", "{missing}"],
        ["--patience", "0"],
        ["--arch", "vanilla", "--stop", "none"],  # on an 8x8 image, below the 11x11 kernel
    ],
)
def test_dip_bad_input_is_one_line_and_exit_2(images, capsys, extra):
    names = {
        "other": images["other"],
        "clean": images["clean"],
        "missing": str(images["tmp"] / "missing.png"),
    }
    extra = [e.format(**names) for e in extra]
    noisy = images["noisy"]
    if "vanilla" in extra:
        noisy = _write(images["tmp"] / "small.png", h=8, w=8, seed=3)
    code = main(["dip", noisy, *TINY, *extra, "-o", images["out"]])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("filterscope: error:")
    assert not (images["tmp"] / "out.png").exists()


@pytest.mark.parametrize("arch", ["unet", "autoencoder"])
def test_dip_pads_images_smaller_than_the_encoder_decoders_downsampling(images, capsys, arch):
    # 5x3 pixels: not a multiple of 8 and below the 16-pixel minimum; padded, then cropped
    tiny = _write(images["tmp"] / "tiny.png", h=3, w=5, seed=4)
    argv = ["dip", tiny, "--arch", arch, *TINY, "--stop", "none", "-o", images["out"]]
    assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"wrote {images['out']}")
    image, _ = read_image(images["out"])
    assert image.shape == (3, 5, 3)


def test_dip_refuses_bad_files_before_work(images, capsys, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    existing_report = tmp_path / "exists.json"
    existing_report.write_text("{}")
    cases = [
        ["dip", str(broken), *TINY, "-o", images["out"]],
        ["dip", str(tmp_path / "nope.png"), *TINY, "-o", images["out"]],
        ["dip", images["noisy"], *TINY, "-o", images["noisy"]],  # exists, no --force
        ["dip", images["noisy"], *TINY, "-o", images["out"], "--json", str(existing_report)],
        ["dip", images["noisy"], *TINY, "-o", str(tmp_path / "no" / "dir" / "o.png")],
    ]
    for argv in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("filterscope: error:"), argv
