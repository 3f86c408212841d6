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
    args += ["--threads", "1", "--no-progress", "--baselines", "nlm"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "PSNR(bias-free) - PSNR(bias)" in printed
    result = json.loads((out / "generalization.json").read_text())
    models = {entry["model"] for entry in result["results"]}
    assert models == {
        str(out / "bias" / "model.safetensors"),
        str(out / "bias-free" / "model.safetensors"),
        "nlm",
    }
    assert sorted({entry["sigma"] for entry in result["results"]}) == list(range(10, 101, 10))
    assert (out / "generalization.png").stat().st_size > 0
    summary = json.loads((out / "generalization_summary.json").read_text())
    assert set(summary["gap_db_bias_free_minus_bias"]) == {f"{s}" for s in range(10, 101, 10)}
    card = json.loads((out / "bias-free" / "model.json").read_text())
    assert card["training"]["sigma_range_255"] == [0.0, 10.0]

    # A second run does not overwrite the first without --force.
    before = (out / "generalization.json").read_bytes()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "generalization.json").read_bytes() == before


def test_experiment_with_unknown_baseline_fails_before_training(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["experiment", "generalization", "--quick", "--out", str(out), "--baselines", "nlm,bm4d"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bm4d" in err
    assert not out.exists()


def test_experiment_with_missing_data_fails_in_one_line(tmp_path, capsys):
    args = ["experiment", "generalization", "--quick", "--out", str(tmp_path / "o")]
    args += ["--data-dir", str(tmp_path / "nowhere")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err


def test_restoration_grid_json_figure_and_delta(tmp_path, tiny_model_path, capsys):
    import filterscope

    torch = __import__("torch")
    torch.manual_seed(1)
    bias_model = filterscope.create_model("dncnn", bias=True, num_layers=4, hidden=8).eval()
    bias_path = tmp_path / "bias.safetensors"
    card = {"training": {"sigma_range_255": [0, 55], "blur_range": [0, 4]}}
    filterscope.save_model(bias_model, bias_path, card=card)
    test = _images(tmp_path / "test", 1, size=(37, 31))
    out = tmp_path / "out"
    args = ["experiment", "restoration", "--bias-model", str(bias_path)]
    args += ["--bias-free-model", str(tiny_model_path), "--test-dir", str(test)]
    args += ["--out", str(out), "--sigmas", "10,60", "--blurs", "0,2", "--no-progress"]
    assert main(args) == 0
    assert "PSNR(bias-free) - PSNR(bias)" in capsys.readouterr().out
    grid = json.loads((out / "restoration.json").read_text())
    assert np.array(grid["delta_psnr"]).shape == (2, 2)
    np.testing.assert_allclose(
        np.array(grid["delta_psnr"]),
        np.array(grid["psnr"]["bias_free"]) - np.array(grid["psnr"]["bias"]),
    )
    # Blur lowers the input PSNR at a fixed noise level.
    assert grid["psnr_in"][1][0] < grid["psnr_in"][0][0]
    assert (out / "restoration.png").stat().st_size > 0
    assert main(args) == 2  # results exist: refused without --force
    assert main(args + ["--force", "--slice-blur", "3"]) == 2  # not a grid row
    assert "slice" in capsys.readouterr().err
    elsewhere = [a if a != str(out) else str(tmp_path / "new") for a in args]
    assert main(elsewhere + ["--slice-blur", "3"]) == 2
    assert not (tmp_path / "new").exists()  # a refused run leaves no folder behind
    unknown = [a if a != str(bias_path) else "no-such-model" for a in elsewhere]
    assert main(unknown) == 2  # found inside the grid run, after the folder was made
    assert not (tmp_path / "new").exists()


def test_experiment_library_names_the_overwrite_parameter(tmp_path):
    import pytest

    from filterscope.errors import InputError
    from filterscope.experiments.generalization import (
        existing_outputs,
        run_generalization_experiment,
    )

    (tmp_path / "generalization.json").write_text("{}")
    assert existing_outputs(tmp_path) == [tmp_path / "generalization.json"]
    with pytest.raises(InputError, match="overwrite=True") as info:
        run_generalization_experiment(tmp_path, quick=True)
    assert "--" not in str(info.value)
