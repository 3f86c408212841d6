"""``auto`` numeric paths outside training (NTK, evaluate, demo), on faked CPUs."""

import json

import numpy as np
import pytest
import torch

from conftest import make_image_folder
from filterscope import machine
from filterscope.cli.main import main
from filterscope.errors import InputError
from filterscope.io import write_image
from filterscope.ntk import denoise as ntk_denoise
from filterscope.ntk.nystrom import resolve_precision

AVX2_ONLY = frozenset({"sse2", "avx", "avx2"})
VNNI = AVX2_ONLY | {"avx512f", "avx512_vnni"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FILTERSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    machine.clear_memo()
    yield
    machine.clear_memo()


def _noisy(channels=3, height=19, width=23):
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(channels, height, width, generator=gen, dtype=torch.float64)
    return clean + 0.1 * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)


@pytest.mark.parametrize(("flags", "expected"), [(AVX2_ONLY, "single"), (VNNI, "int8")])
def test_ntk_auto_takes_int8_only_where_fast(monkeypatch, flags, expected):
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    assert resolve_precision("auto") == expected
    _, info = ntk_denoise(_noisy(), sigma=0.1, stop=2.0, columns=0.3, kernel_size=5)
    assert info["precision"] == expected


def test_ntk_explicit_precision_wins_and_nlm_has_no_int8(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: AVX2_ONLY)
    y = _noisy(1)
    _, info = ntk_denoise(y, sigma=0.1, stop=2.0, columns=0.3, kernel_size=5, precision="int8")
    assert info["precision"] == "int8"
    _, info = ntk_denoise(
        y, method="nlm", sigma=0.1, stop=2.0, columns=0.3, kernel_size=3, precision="int8"
    )
    assert info["precision"] == "single"
    _, info = ntk_denoise(y, sigma=0.1, stop=2.0, columns=None, kernel_size=5)
    assert info["precision"] == "double"  # the full matrix
    with pytest.raises(InputError, match="precision must be one of"):
        resolve_precision("half")


def test_ntk_cli_json_records_the_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(machine, "cpu_flags", lambda: AVX2_ONLY)
    write_image(tmp_path / "in.png", _noisy().clamp(0, 1).permute(1, 2, 0).float().numpy())
    args = ["ntk", "denoise", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png")]
    args += ["--sigma", "25", "--kernel", "5", "--json", str(tmp_path / "r.json")]
    assert main(args) == 0
    assert json.loads((tmp_path / "r.json").read_text())["precision"] == "single"
    assert main([*args[:-2], "--precision", "int4", "--force"]) == 2
    assert "precision must be one of" in capsys.readouterr().err


def test_evaluate_auto_is_float32_and_recorded(tmp_path, monkeypatch, tiny_model_path):
    monkeypatch.setattr(machine, "cpu_flags", lambda: AVX2_ONLY | {"avx512_bf16", "amx_bf16"})
    data = make_image_folder(tmp_path / "data", count=1, size=(19, 17))
    out = tmp_path / "e.json"
    args = ["evaluate", "--model", str(tiny_model_path), "--data", str(data)]
    assert main([*args, "--sigmas", "25", "--json", str(out), "--no-progress"]) == 0
    protocol = json.loads(out.read_text())["protocol"]
    assert protocol["precision"] == "float32"  # even on a bfloat16 CPU: scores compare
    path = protocol["numeric_path"]
    assert path["requested"] == {"precision": "auto"} and path["capability"]


def test_demo_records_the_precision_taken(tmp_path, monkeypatch):
    from filterscope.demo import run_demo

    monkeypatch.setattr(machine, "cpu_flags", lambda: AVX2_ONLY)
    result = run_demo(tmp_path / "demo", sigma_255=50, device="cpu")
    assert result["precision"] == "float32"
    assert np.isfinite(result["psnr_out"])
