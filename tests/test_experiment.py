"""The generalization experiment end to end, on tiny data and a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from filterscope.cli.main import main


def _images(folder: Path, count: int, size=(45, 43)) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for index in range(count):
        Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(folder / f"{index}.png")
    return folder


def test_experiment_trains_both_networks_and_writes_table_json_and_figure(tmp_path, capsys):
    data = _images(tmp_path / "train", 3)
    test = _images(tmp_path / "test", 2, size=(37, 31))
    out = tmp_path / "out"
    args = ["experiment", "generalization", "--quick", "--out", str(out), "--steps", "2"]
    args += ["--data-dir", str(data), "--test-dir", str(test), "--val-dir", str(test)]
    args += ["--threads", "1", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "PSNR(bias-free) - PSNR(bias)" in printed
    result = json.loads((out / "generalization.json").read_text())
    models = {entry["model"] for entry in result["results"]}
    assert models == {
        str(out / "bias" / "model.safetensors"),
        str(out / "bias-free" / "model.safetensors"),
    }
    assert sorted({entry["sigma"] for entry in result["results"]}) == list(range(10, 101, 10))
    assert (out / "generalization.png").stat().st_size > 0
    card = json.loads((out / "bias-free" / "model.json").read_text())
    assert card["training"]["sigma_range_255"] == [0.0, 10.0]

    # A second run does not overwrite the first without --force.
    before = (out / "generalization.json").read_bytes()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "generalization.json").read_bytes() == before


def test_experiment_with_missing_data_fails_in_one_line(tmp_path, capsys):
    args = ["experiment", "generalization", "--quick", "--out", str(tmp_path / "o")]
    args += ["--data-dir", str(tmp_path / "nowhere")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err
