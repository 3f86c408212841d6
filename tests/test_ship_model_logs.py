"""``scripts/ship_model.py`` keeps every shipped run's training log: none is overwritten."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ship_model.py"


@pytest.fixture(scope="module")
def ship_model():
    spec = importlib.util.spec_from_file_location("ship_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_log(tmp_path: Path, run: str, text: str) -> Path:
    log = tmp_path / "runs" / run / "log.csv"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    return log


def test_a_second_run_of_one_stage_gets_its_own_file(ship_model, tmp_path):
    logs = tmp_path / "logs"
    first = run_log(tmp_path, "real27", "step,loss\n1,0.5\n")
    second = run_log(tmp_path, "real31", "step,loss\n1,0.4\n")
    assert ship_model.keep_log(first, "m.stage9", logs_dir=logs).endswith("m.stage9.csv")
    kept = ship_model.keep_log(second, "m.stage9", logs_dir=logs)
    assert kept.endswith("m.stage9-real31.csv")
    assert (logs / "m.stage9.csv").read_text() == first.read_text()
    assert (logs / "m.stage9-real31.csv").read_text() == second.read_text()


def test_the_same_run_resumed_updates_its_file(ship_model, tmp_path):
    logs = tmp_path / "logs"
    log = run_log(tmp_path, "real31", "step,loss\n1,0.4\n")
    ship_model.keep_log(log, "m.stage9", logs_dir=logs)
    log.write_text(log.read_text() + "2,0.3\n")
    assert ship_model.keep_log(log, "m.stage9", logs_dir=logs).endswith("m.stage9.csv")
    assert (logs / "m.stage9.csv").read_text() == log.read_text()


def test_a_third_log_for_both_names_stops_the_script(ship_model, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "m.stage9.csv").write_text("step,loss\n1,0.5\n")
    (logs / "m.stage9-real31.csv").write_text("step,loss\n1,0.4\n")
    log = run_log(tmp_path, "real31", "step,loss\n1,0.9\n")
    with pytest.raises(ship_model.ShipError, match="holds another log"):
        ship_model.keep_log(log, "m.stage9", logs_dir=logs)
    assert (logs / "m.stage9-real31.csv").read_text() == "step,loss\n1,0.4\n"


def test_a_run_folder_without_weights_is_one_line_and_exit_code_2(ship_model, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    code = ship_model.main([str(tmp_path / "run"), "m", "--recipe", "r.toml"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ship_model.py: error:") and err.count("\n") == 1
