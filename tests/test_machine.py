"""The machine module: flags read, paths chosen per CPU (faked), the measured-answer cache."""

import json
import time

import pytest
import torch

from filterscope import machine
from filterscope.errors import InputError

AVX2_ONLY = frozenset({"sse2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2_ONLY | {"avx512f", "avx512_bf16", "avx512_vnni"}
AMX = AVX512_BF16 | {"amx_bf16", "amx_int8", "amx_tile"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own cache folder and no decisions remembered from others."""
    monkeypatch.setenv("FILTERSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    machine.clear_memo()
    yield tmp_path / "cache"
    machine.clear_memo()


def fake_flags(monkeypatch, flags):
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)


def test_cpuinfo_is_parsed_for_model_and_flags(monkeypatch):
    text = "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 AVX2 avx512_bf16\n"
    monkeypatch.setattr(machine, "_read_cpuinfo", lambda: text)
    assert machine.cpu_model() == "Test CPU 9000"
    assert machine.cpu_flags() == {"fpu", "sse2", "avx2", "avx512_bf16"}
    info = machine.machine_info()
    assert info["flags"] == ["avx2", "avx512_bf16"]
    assert info["threads"] == torch.get_num_threads() and info["cores"] >= 1
    json.dumps(info)  # JSON-ready


def test_no_cpuinfo_means_unknown_flags(monkeypatch):
    monkeypatch.setattr(machine, "_read_cpuinfo", lambda: None)
    assert machine.cpu_flags() is None
    assert machine.machine_info()["flags"] is None
    assert machine.cpu_model()  # falls back to platform's name, never empty


def test_avx2_only_takes_float32_and_float_products(monkeypatch):
    fake_flags(monkeypatch, AVX2_ONLY)
    for op in ("train", "denoise", "dip", "evaluate", "explore", "demo"):
        assert machine.choose_precision(op) == "float32"
    assert machine.choose_int8("ntk") is False
    assert machine.numeric_paths()["ntk"] == {"products": "float32"}


def test_avx512_bf16_takes_bfloat16_but_analyze_stays_float32(monkeypatch):
    fake_flags(monkeypatch, AVX512_BF16)
    assert machine.choose_precision("train") == "bfloat16"
    assert machine.choose_precision("denoise", "cpu") == "bfloat16"
    assert machine.choose_precision("analyze") == "float32"
    assert machine.choose_precision("evaluate") == "float32"  # scores stay comparable
    assert machine.choose_precision("evaluate", requested="bfloat16") == "bfloat16"
    assert machine.choose_int8("ntk") is True  # avx512_vnni


def test_amx_allows_int8_and_bfloat16(monkeypatch):
    fake_flags(monkeypatch, AVX2_ONLY | {"amx_int8", "amx_bf16"})
    assert machine.choose_int8("ntk") is True
    assert machine.choose_precision("train") == "bfloat16"
    fake_flags(monkeypatch, AVX2_ONLY | {"avx_vnni"})
    assert machine.choose_int8("ntk") is True
    assert machine.choose_precision("train") == "float32"


def test_explicit_choice_wins(monkeypatch):
    fake_flags(monkeypatch, AVX2_ONLY)
    assert machine.choose_precision("train", requested="bfloat16") == "bfloat16"
    assert machine.choose_int8("ntk", requested=True) is True
    assert machine.choose_channels_last("train", requested=False) is False
    fake_flags(monkeypatch, AMX)
    assert machine.choose_precision("denoise", requested="float32") == "float32"
    assert machine.choose_int8("ntk", requested=False) is False


def test_cuda_path_follows_the_gpu(monkeypatch):
    fake_flags(monkeypatch, AMX)  # the CPU's flags do not matter for a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert machine.choose_precision("train-gpu", "cuda") == "float32"
    assert machine.choose_channels_last("train-gpu", "cuda") is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert machine.choose_precision("train-gpu", torch.device("cuda", 0)) == "bfloat16"
    assert machine.choose_channels_last("train", "cuda:0") is True
    assert machine.choose_int8("ntk", "cuda") is False


def test_unknown_names_are_refused():
    with pytest.raises(InputError, match="precision must be one of auto, float32, bfloat16"):
        machine.choose_precision("train", requested="float16")
    with pytest.raises(InputError, match="op must be one of"):
        machine.choose_precision("fly")
    with pytest.raises(InputError, match="channels_last"):
        machine.choose_channels_last("train", requested="yes")
    with pytest.raises(InputError, match="int8"):
        machine.choose_int8("ntk", requested="int4")


def test_unknown_flags_are_measured_once_and_cached(monkeypatch, private_cache):
    fake_flags(monkeypatch, None)
    calls = []
    monkeypatch.setattr(machine, "_bfloat16_is_faster", lambda: calls.append(1) or True)
    assert machine.choose_precision("train") == "bfloat16"
    assert machine.choose_precision("denoise") == "bfloat16"
    assert len(calls) == 1
    saved = json.loads((private_cache / "machine.json").read_text())
    assert list(saved.values()) == [{"bfloat16_faster": True}]
    machine.clear_memo()  # a new process: the answer comes from the file
    assert machine.choose_precision("train") == "bfloat16" and len(calls) == 1


def test_corrupt_cache_is_measured_again_and_mended(monkeypatch, private_cache):
    private_cache.mkdir()
    (private_cache / "machine.json").write_text("{not json")
    monkeypatch.setattr(machine, "_channels_last_is_faster", lambda *, backward: backward)
    assert machine.choose_channels_last("train") is True
    assert machine.choose_channels_last("denoise") is False
    saved = json.loads((private_cache / "machine.json").read_text())
    assert list(saved.values()) == [
        {"channels_last_training": True, "channels_last_inference": False}
    ]


def test_wrong_types_in_cache_are_ignored(monkeypatch, private_cache):
    private_cache.mkdir()
    key = machine._cache_key()
    (private_cache / "machine.json").write_text(json.dumps({key: {"int8_faster": "yes"}}))
    fake_flags(monkeypatch, None)
    monkeypatch.setattr(machine, "_int8_is_faster", lambda: False)
    assert machine.choose_int8("ntk") is False


def test_unwritable_cache_still_answers(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FILTERSCOPE_CACHE_DIR", str(blocker / "cache"))  # cannot be made
    monkeypatch.setattr(machine, "_channels_last_is_faster", lambda *, backward: True)
    assert machine.choose_channels_last("train") is True


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("FILTERSCOPE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert machine.cache_dir() == tmp_path / "filterscope"


def test_micro_benchmarks_are_quick_and_leave_threads_alone():
    threads = torch.get_num_threads()
    start = time.perf_counter()
    answers = [
        machine._channels_last_is_faster(backward=True),
        machine._channels_last_is_faster(backward=False),
        machine._int8_is_faster(),
    ]
    assert time.perf_counter() - start < 5.0  # well under 1 s on an idle core
    assert all(isinstance(a, bool) for a in answers)
    assert torch.get_num_threads() == threads


def test_numeric_paths_cover_every_operation_but_the_absent_gpu(monkeypatch):
    fake_flags(monkeypatch, AVX2_ONLY)
    monkeypatch.setattr(machine, "_channels_last_is_faster", lambda *, backward: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    paths = machine.numeric_paths()
    assert set(paths) == set(machine.OPERATIONS) - {"train-gpu"}
    assert paths["train"] == {"precision": "float32", "channels_last": True}
    record = machine.path_record("train", {"precision": "auto"}, paths["train"])
    assert record["capability"] == machine.cpu_capability() and record["torch"]


def test_report_is_built_once_then_read_from_the_cache(monkeypatch, private_cache):
    fake_flags(monkeypatch, AVX2_ONLY)
    monkeypatch.setattr(machine, "_channels_last_is_faster", lambda *, backward: True)
    first = machine.report()
    assert first["cached"] is False and first["flags"] == ["avx2"]
    assert first["paths"]["ntk"] == {"products": "float32"}
    assert first["paths"]["train"] == {"precision": "float32", "channels_last": True}
    assert "channels_last" not in first["paths"]["dip"]  # no layout choice there
    monkeypatch.setattr(machine, "machine_info", lambda: pytest.fail("measured again"))
    second = machine.report()
    assert second["cached"] is True
    assert {k: v for k, v in second.items() if k != "cached"} == {
        k: v for k, v in first.items() if k != "cached"
    }
    assert list(second["paths"]) == list(first["paths"])  # order kept
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # other threads: another report
    with pytest.raises(pytest.fail.Exception):
        machine.report()


def test_info_command_text_and_json(monkeypatch, tmp_path, capsys):
    from filterscope.cli.main import main

    fake_flags(monkeypatch, AVX2_ONLY)
    monkeypatch.setattr(machine, "_channels_last_is_faster", lambda *, backward: False)
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert f"capability  {machine.cpu_capability()}" in text and "ntk" in text
    assert main(["info", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cached"] is True and printed["paths"]["denoise"] == {"precision": "float32"}
    out = tmp_path / "info.json"
    assert main(["info", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["torch"] == torch.__version__
    assert main(["info", "--json", str(out)]) == 2  # never overwritten unasked
    assert "already exists" in capsys.readouterr().err


def test_info_answers_in_under_a_second_from_the_cache():
    import subprocess
    import sys

    run = [sys.executable, "-m", "filterscope", "info", "--json"]
    subprocess.run(run, check=True, capture_output=True)  # builds the cache
    start = time.perf_counter()
    done = subprocess.run(run, check=True, capture_output=True, text=True)
    assert time.perf_counter() - start < 1.0  # torch is not imported
    assert json.loads(done.stdout)["cached"] is True


def test_large_blocks_are_returned_on_glibc_only(monkeypatch):
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert machine.return_large_blocks() is True
        assert machine.return_large_blocks() is True  # idempotent
    monkeypatch.setenv(machine.MMAP_THRESHOLD_VARIABLE, "1048576")
    assert machine.return_large_blocks() is False  # the user's own threshold wins
    monkeypatch.delenv(machine.MMAP_THRESHOLD_VARIABLE)
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert machine.return_large_blocks() is False
